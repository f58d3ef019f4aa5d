"""One unit, explained and scored: the explainer sees the train windows, its candidates are validated on valid, and
the final text is simulated and scored on test (METHODS.md §2). The record of the result is ``ScoredExplanation``.

    >>> scored = await process_unit(record, explainer, simulator, tools=None)
    >>> scored.explanation.text, scored.test.score, scored.test.top, scored.test.random

Two outcomes, kept apart: the explainer's (``explanation.status``/``reason``: done, gave_up, failed, as the explainer
said) and the scoring's (``scoring``: "scored", "failed" when the test windows could not be simulated, or
"not_scored" when there was no text; ``scoring_reason``). The unit's outcome (``status``) is failed when either
failed. An explainer failure ends the unit ``failed`` with its reason and the run goes on; ``BudgetExceeded``
propagates so that the run can stop cleanly and leave the unit to the next session.

Accounting. Every LLM call made for the explanation (the explainer's own, its validations and the test simulation)
is logged with the unit (``autointerp.llm.scope.call_scope``) and counted in ``llm_calls``, ``tokens_in``,
``tokens_out`` and ``cost_usd``, so that over a run these sum to the ``llm_calls`` rows the run logged. The
simulator's diagnostics of the test simulation (``SimulationResult.details``: failed requests, stopped replies,
positions without a numeric token, ...) are kept in ``diagnostics``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from autointerp.agent.base import Explainer, Explanation
from autointerp.llm.types import BudgetExceeded
from autointerp.llm.scope import call_scope
from autointerp.scoring.score import ScoreResult, score_windows
from autointerp.scoring.simulator import Simulator
from autointerp.subject.records import UnitRecord


@dataclass(frozen=True)
class ScoredExplanation:
    """One explanation of one unit, how it was simulated and scored, and what it cost: what ``save_unit_result``
    writes. A score's ``per_window`` follows ``record.split(split)``, the windows the pipeline simulated, in order."""

    explanation: Explanation  # text, status, reason, explainer name, details
    explainer_config: dict[str, Any]  # everything that determines the explainer's output (never a key)
    is_baseline: bool  # True for the non-LLM floor
    simulator: str  # registry name of the simulator that scored it
    simulator_config: dict[str, Any]  # everything that determines the simulator's output (never a key)
    test: ScoreResult | None  # scored on record.split("test"); None when it was not scored (no text)
    # Window.index -> (predictions, error): one value per token on the 0..10 scale, or None and why
    simulations: dict[int, tuple[Sequence[float] | None, str | None]] = field(default_factory=dict)
    valid: ScoreResult | None = None  # scored on record.split("valid"), when it was scored there too
    llm_calls: int = 0  # LLM calls made for this explanation: explainer, validations, test simulation
    tokens_in: int = 0  # prompt tokens over those calls
    tokens_out: int = 0  # completion tokens over those calls
    cost_usd: float | None = 0.0  # None when the price is unknown
    scoring: Literal["scored", "failed", "not_scored"] = "scored"  # the test simulation's outcome
    scoring_reason: str | None = None  # why scoring failed or did not happen
    diagnostics: dict[str, Any] = field(default_factory=dict)  # the simulator's details of the test simulation
    role: Literal["explanation", "control"] = "explanation"  # control: a floor, never a unit's best explanation

    @property
    def status(self) -> str:
        """The unit's outcome for this explanation: the explainer's, unless scoring failed."""
        return "failed" if self.scoring == "failed" else self.explanation.status

    @property
    def reason(self) -> str | None:
        return self.scoring_reason if self.scoring == "failed" else self.explanation.reason


async def score_explanation(simulator: Simulator, text: str, windows) -> tuple[ScoreResult, list, dict[str, Any]]:
    """Simulate ``windows`` from ``text`` and score; returns the score, per-window (predictions, error) and the
    simulator's details."""
    sim = await simulator.simulate(text, [list(w.tokens) for w in windows])
    return score_windows(windows, sim.predictions), list(zip(sim.predictions, sim.errors)), dict(sim.details)


def worst_windows(windows, predictions, n: int = 4) -> list[dict[str, Any]]:
    """The ``n`` windows whose simulation was most wrong: largest |true - predicted| on the 0..10 scale, with true
    activations normalised by the max over these windows (METHODS.md's norm). For revision prompts (valid only)."""
    m = max((max(w.activations) for w in windows), default=0.0) or 1.0
    rows = []
    for w, pred in zip(windows, predictions):
        if pred is None:
            continue
        err = max(abs(10 * max(a, 0.0) / m - p) for a, p in zip(w.activations, pred))
        rows.append((err, {"tokens": list(w.tokens), "activations": list(w.activations), "predictions": list(pred),
                           "source": w.source, "error": round(err, 3)}))
    return [row for _, row in sorted(rows, key=lambda t: -t[0])[:n]]


async def score_text(record: UnitRecord, text: str, simulator: Simulator) -> tuple[ScoreResult | None, list, dict,
                                                                                     str | None]:
    """Simulate and score ``text`` on the test windows: (score or None, per-window sims, diagnostics, why scoring
    failed or None). ``BudgetExceeded`` propagates."""
    test = record.split("test")
    try:
        result, sims, details = await score_explanation(simulator, text, test)
    except BudgetExceeded:
        raise
    except Exception as e:  # e.g. a bug or an unexpected error: the unit fails, with the reason
        return None, [], {}, f"scoring failed: {type(e).__name__}: {e}"
    if result.n_windows == 0 and result.n_failed:
        first_error = next((err for _, err in sims if err), "unknown error")
        return result, sims, details, f"scoring failed: no test window could be simulated ({first_error})"
    return result, sims, details, None


async def process_unit(record: UnitRecord, explainer: Explainer, simulator: Simulator,
                       tools: Any = None) -> ScoredExplanation:
    """Explain (train windows only; ``tools``: the unit's agent tools, for an explainer that uses them), then
    simulate and score on the test windows."""

    async def validate(text: str):
        valid = record.split("valid")
        result, sims, _ = await score_explanation(simulator, text, valid)
        first_error = next((err for _, err in sims if err), None)
        return result.score, worst_windows(valid, [p for p, _ in sims]), first_error

    with call_scope(str(record.id)) as usage:
        try:
            train = record.for_explainer()
            # tools only when there are any: explainers written before the keyword keep working
            explanation = await (explainer.explain(train, validate, tools=tools) if tools is not None
                                 else explainer.explain(train, validate))
        except BudgetExceeded:
            raise
        except Exception as e:  # an explainer failure ends this unit "failed"; the run goes on
            explanation = Explanation("", status="failed", reason=f"{type(e).__name__}: {e}",
                                      explainer=explainer.name)
        result, sims, diagnostics, failure = None, [], {}, None
        if explanation.text:
            result, sims, diagnostics, failure = await score_text(record, explanation.text, simulator)
    scoring = "not_scored" if not explanation.text else "failed" if failure else "scored"
    return ScoredExplanation(
        explanation=explanation,
        explainer_config=explainer.config(),
        is_baseline=explainer.is_baseline,
        simulator=simulator.name,
        simulator_config=simulator.config(),
        test=result,
        simulations={w.index: s for w, s in zip(record.split("test"), sims)},
        llm_calls=usage.calls,
        tokens_in=usage.tokens_in,
        tokens_out=usage.tokens_out,
        cost_usd=usage.cost_usd,
        scoring=scoring,
        scoring_reason=failure if scoring == "failed" else
        ("the explainer wrote no explanation" if scoring == "not_scored" else None),
        diagnostics=diagnostics,
    )
