"""What one explanation carries into the store: the explainer's text and outcome, the scoring stage's judgements of
it, and what both cost. The run owner (``autointerp.pipeline``) builds it from the explain stage's ``Explanation``
and the scoring stage's judgements; ``Store.save_unit_result`` and ``save_controls`` write it.

    scored = ScoredExplanation.build(explanation, explainer_config, False, scorer, simulation, usage)
    scored.status, scored.test.score, scored.simulations

Two outcomes, kept apart: the explainer's (``explanation.status``/``reason``: done, gave_up, failed) and the
scoring's (``scoring``: scored, failed when the test windows could not be judged, not_scored when there was no text;
``scoring_reason``). The explanation's outcome (``status``) is failed when either failed
(``autointerp.outcomes.unit_outcome``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from autointerp.agent.base import Explanation
from autointerp.llm.types import Totals
from autointerp.outcomes import ScoringOutcome, UnitOutcome, unit_outcome
from autointerp.scoring.score import ScoreResult
from autointerp.scoring.simulation import SimulationJudgement, SimulationScorer

Role = Literal["explanation", "control"]  # control: a floor (shuffled or empty text), never a unit's best


@dataclass(frozen=True)
class ScoredExplanation:
    """One explanation of one unit, how it was simulated and scored, and what it cost. A score's ``per_window``
    follows ``record.split(split)``, the windows the scorer judged, in order."""

    explanation: Explanation  # text, status, reason, explainer name, details
    explainer_config: dict[str, Any]  # everything that determines the explainer's output (never a key)
    is_baseline: bool  # the explainer is the non-LLM floor (False for controls: their role says what they are)
    simulator: str  # registry name of the simulator that scored it
    simulator_config: dict[str, Any]  # everything that determines the simulator's output (never a key)
    test: ScoreResult | None  # scored on record.split("test"); None when it was not scored (no text)
    # Window.index -> (predictions, error): one value per token on the 0..10 scale, or None and why
    simulations: dict[int, tuple[Sequence[float] | None, str | None]] = field(default_factory=dict)
    valid: ScoreResult | None = None  # scored on record.split("valid"), when it was scored there too
    llm_calls: int = 0  # LLM calls made for this explanation: explainer, validations, test judgements
    tokens_in: int = 0  # prompt tokens over those calls
    tokens_out: int = 0  # completion tokens over those calls
    cost_usd: float | None = 0.0  # None when the price is unknown
    scoring: ScoringOutcome = "scored"  # the test judgement's outcome
    scoring_reason: str | None = None  # why scoring failed or did not happen
    diagnostics: dict[str, Any] = field(default_factory=dict)  # the simulator's details of the test simulation
    role: Role = "explanation"
    judgements: tuple[Any, ...] = ()  # the other scorers' test judgements (detection, fuzzing)

    @property
    def status(self) -> UnitOutcome:
        """The explanation's outcome: the explainer's, unless scoring failed."""
        return unit_outcome(self.explanation.status, self.scoring)

    @property
    def reason(self) -> str | None:
        return self.scoring_reason if self.scoring == "failed" else self.explanation.reason

    @classmethod
    def build(cls, explanation: Explanation, explainer_config: dict[str, Any], is_baseline: bool,
              scorer: SimulationScorer, simulation: SimulationJudgement | None, usage: Totals,
              role: Role = "explanation", judgements: Sequence[Any] = ()) -> ScoredExplanation:
        """The record of ``explanation`` judged by ``scorer``'s ``simulation`` on test (None: nothing to judge, no
        text); ``judgements``: the other scorers'."""
        if simulation is None:
            scoring, why = "not_scored", "the explainer wrote no explanation"
        else:
            scoring, why = ("failed", simulation.failure) if simulation.failure else ("scored", None)
            broken = next((j for j in judgements if j.failure), None)  # a scorer that could judge nothing
            if broken is not None and scoring == "scored":
                scoring, why = "failed", f"{broken.scorer}: {broken.failure}"
        return cls(
            explanation=explanation, explainer_config=explainer_config, is_baseline=is_baseline,
            simulator=scorer.simulator.name, simulator_config=scorer.simulator.config(),
            test=simulation.score if simulation else None,
            simulations=dict(simulation.simulations) if simulation else {},
            llm_calls=usage.calls, tokens_in=usage.tokens_in, tokens_out=usage.tokens_out, cost_usd=usage.cost_usd,
            scoring=scoring, scoring_reason=why, diagnostics=dict(simulation.diagnostics) if simulation else {},
            role=role, judgements=tuple(judgements),
        )
