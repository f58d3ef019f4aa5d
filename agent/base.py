"""The Explainer interface. Baseline, LLM agent and test fakes all implement it; the pipeline only sees this.

    explanation = await explainer.explain(record)     # record: autointerp.subject.records.UnitRecord
    explanation.text, explanation.status               # "done" | "gave_up" | "failed"

An explainer may read ``record.split("train")`` and ``record.stats``; it must never read ``valid`` or ``test``
activations itself. Agents that revise on ``valid`` get a ``validate`` callback from the pipeline, which simulates
and scores a candidate on ``valid`` and returns only the score and the worst windows.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from autointerp.subject.records import UnitRecord

Status = Literal["done", "gave_up", "failed"]


@dataclass(frozen=True)
class Explanation:
    text: str  # one sentence; empty when failed, or gave_up before any acceptable sentence (not scored)
    status: Status = "done"
    reason: str | None = None  # why it gave up or failed; None when done
    explainer: str = ""  # registry name of the explainer that wrote it, e.g. "baseline" or a model profile
    details: dict[str, Any] = field(default_factory=dict)  # rounds, tool calls, valid scores of candidates, ...


# validate(text) -> (pooled Pearson on valid or None, list of the worst valid windows with predictions), optionally
# with a third element: why no window could be simulated (the worst list is then empty), or None
Validator = Callable[[str], Awaitable[tuple[Any, ...]]]


@runtime_checkable
class Explainer(Protocol):
    name: str  # "baseline", or a model profile name
    is_baseline: bool  # True for the non-LLM floor

    def config(self) -> dict[str, Any]:
        """Everything that determines its output, for the DB (never an API key)."""
        ...

    async def explain(self, record: UnitRecord, validate: Validator | None = None, *, tools: Any = None
                      ) -> Explanation:
        """One explanation from the train windows; ``tools``: the unit's agent tools, for explainers that use them."""
        ...
