"""The scoring stage's interface: one scorer judges one explanation text of one unit on one held-out split.

    scorer = SimulationScorer(simulator)                    # scoring.simulation; detection and fuzzing alike
    judgement = await scorer.judge(record, "Fires on the token ' class'.", "test")
    judgement.value, judgement.undefined_reason, judgement.failure

Every scorer implements ``Scorer``: a registry ``name`` ("simulation", "detection", "fuzzing"), its ``config()``
(everything that determines its output: it enters the run key) and ``judge``. A judgement carries the headline
``value`` (the pooled Pearson r for simulation, the balanced accuracy for detection and fuzzing; ``None`` when
undefined, with ``undefined_reason``), and ``failure``: why the scorer could not judge at all (no window could be
simulated, every request failed), which makes the unit's outcome ``failed``. Scorer-specific results (per-window
simulations, the examples shown and the judge's answers) are fields of each judgement class.

The scoring stage never sees an explainer: the run owner (``autointerp.pipeline.session``) hands it texts, and the
explainer's revision step reaches it only through the ``Judge`` interface of ``autointerp.agent.base``, which the run
owner implements with a scorer on the ``valid`` split. ``RunStop`` (a budget, an endpoint that cannot answer)
propagates out of ``judge``; any other error of a scorer is its judgement's ``failure``.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol, runtime_checkable

from autointerp.subject.records import UnitRecord

HeldOut = Literal["valid", "test"]  # the splits a scorer may judge on; never train
ScorerName = Literal["simulation", "detection", "fuzzing"]
SCORER_NAMES: tuple[ScorerName, ...] = ("simulation", "detection", "fuzzing")


@runtime_checkable
class Judgement(Protocol):
    """What every scorer's result has; each scorer's class adds its own fields."""

    scorer: str  # the scorer's registry name
    split: HeldOut

    @property
    def value(self) -> float | None:
        """The headline number; None when undefined (see ``undefined_reason``) or when judging failed."""
        ...

    @property
    def undefined_reason(self) -> str | None: ...

    @property
    def failure(self) -> str | None:
        """Why nothing could be judged (the unit's outcome is then ``failed``); None when it was judged."""
        ...


@runtime_checkable
class Scorer(Protocol):
    name: str  # "simulation", "detection" or "fuzzing"
    uses_llm: bool  # False for the non-LLM floor (the baseline simulator, the quoted-token judge)

    def config(self) -> dict[str, Any]:
        """Everything that determines its output (never an API key): part of the run key."""
        ...

    async def judge(self, record: UnitRecord, text: str, split: HeldOut = "test") -> Judgement:
        """Judge ``text`` as an explanation of ``record``'s unit on ``split``'s windows."""
        ...
