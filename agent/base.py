"""The Explainer interface. Baseline, LLM agent and test fakes all implement it; the run owner only sees this.

    explanation = await explainer.explain(record.for_explainer(), judge, tools=tools, thread="run:13/7")
    explanation.text, explanation.status               # "done" | "gave_up" | "failed" (autointerp.outcomes)

An explainer may read ``record.split("train")`` and ``record.stats``; it must never read ``valid`` or ``test``
activations itself. Agents that choose between drafts or revise get a ``Judge`` from the run owner: it asks the
scoring stage to judge a candidate on ``valid`` and returns only the score and the worst windows (``Validation``).
The explainer never calls scoring code itself, and the scoring stage never sees an explainer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from autointerp.llm.profiles import ModelProfile
from autointerp.llm.tokens import Estimate, TokenCounter
from autointerp.outcomes import UnitOutcome
from autointerp.subject.records import UnitRecord

Status = UnitOutcome  # an explanation's outcome: done, gave_up or failed


@dataclass(frozen=True)
class Explanation:
    text: str  # one sentence; empty when failed, or gave_up before any acceptable sentence (not scored)
    status: Status = "done"
    reason: str | None = None  # why it gave up or failed; None when done
    explainer: str = ""  # registry name of the explainer that wrote it, e.g. "baseline" or a model profile
    details: dict[str, Any] = field(default_factory=dict)  # rounds, tool calls, valid scores of candidates, ...


@dataclass(frozen=True)
class Validation:
    """What a judge says of a candidate explanation on the ``valid`` split."""

    score: float | None  # the validating scorer's value on valid (pooled Pearson r); None when undefined
    worst: list[dict[str, Any]]  # the valid windows judged most wrong: tokens, activations, predictions, source, error
    error: str | None = None  # why no valid window could be judged (``worst`` is then empty); None otherwise


@runtime_checkable
class Judge(Protocol):
    """Judges one unit's candidate explanations on ``valid``: the explainer's only way to the scoring stage."""

    async def validate(self, text: str) -> Validation: ...


@runtime_checkable
class Explainer(Protocol):
    name: str  # "baseline", or a model profile name
    is_baseline: bool  # True for the non-LLM floor
    uses_tools: bool  # whether ``explain`` wants the unit's agent tools (``tools=``)
    profile: ModelProfile | None  # the LLM profile it calls (None: it calls none)
    validations: int  # candidates it has judged on valid per unit (drafts + revisions; 0: it never asks the judge)

    def config(self) -> dict[str, Any]:
        """Everything that determines its output, for the DB (never an API key)."""
        ...

    def estimate(self, record: UnitRecord, counter: TokenCounter) -> Estimate | None:
        """Expected LLM usage for one unit like ``record`` (None: it makes no LLM call)."""
        ...

    async def explain(self, record: UnitRecord, judge: Judge | None = None, *, tools: Any = None,
                      thread: str = "") -> Explanation:
        """One explanation from the train windows. ``tools``: the unit's agent tools, for explainers that use them;
        ``thread``: a name unique to this unit of this run (an agent keeps its checkpoint under it)."""
        ...

    async def aclose(self) -> None:
        """Release what the explainer holds for the run (a checkpoint file); called once, after the last unit."""
        ...
