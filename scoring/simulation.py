"""The simulation scorer (Bills et al. 2023; docs/methods.md §2): a simulator predicts every token's activation from
the explanation alone, and the score is the Pearson r pooled over every token of the split's windows.

    scorer = SimulationScorer(BaselineSimulator())
    j = await scorer.judge(record, "Fires on the token ' class'.", "test")
    j.value, j.score.score_top, j.score.score_random, j.simulations      # r, r on top / random windows, per window
    j.worst_windows(record)                                              # for a revision prompt (valid only)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from autointerp.llm.types import RunStop
from autointerp.scoring.score import ScoreResult, score_windows
from autointerp.scoring.scorer import HeldOut
from autointerp.scoring.simulator import Simulator
from autointerp.subject.records import UnitRecord, Window

# Window.index -> (predictions on the 0..10 scale, one per token; or None and why)
Simulations = dict[int, tuple[Sequence[float] | None, str | None]]


@dataclass(frozen=True)
class SimulationJudgement:
    """One text simulated and scored on one split: the score, every window's predictions, the simulator's details."""

    split: HeldOut
    score: ScoreResult | None  # None when the simulator raised (see ``failure``)
    simulations: Simulations = field(default_factory=dict)  # in the order of record.split(split)
    diagnostics: dict[str, Any] = field(default_factory=dict)  # the simulator's details (failed requests, ...)
    failure: str | None = None  # why no window could be simulated; None when scored
    scorer: str = "simulation"

    @property
    def value(self) -> float | None:
        return None if self.failure or self.score is None else self.score.score

    @property
    def undefined_reason(self) -> str | None:
        return self.failure or (self.score.undefined_reason if self.score else "not scored")

    def worst_windows(self, record: UnitRecord, n: int = 4) -> list[dict[str, Any]]:
        """The ``n`` windows whose simulation was most wrong: largest |true - predicted| on the 0..10 scale, true
        activations normalised by the max over these windows (docs/methods.md §2's norm). For revision prompts."""
        windows = record.split(self.split)
        m = max((max(w.activations) for w in windows), default=0.0) or 1.0
        rows = []
        for w in windows:
            pred = self.simulations.get(w.index, (None, None))[0]
            if pred is None:
                continue
            err = max(abs(10 * max(a, 0.0) / m - p) for a, p in zip(w.activations, pred))
            rows.append((err, {"tokens": list(w.tokens), "activations": list(w.activations),
                               "predictions": list(pred), "source": w.source, "error": round(err, 3)}))
        return [row for _, row in sorted(rows, key=lambda t: -t[0])[:n]]

    @property
    def first_error(self) -> str | None:
        """The first window's simulation error, if any window failed."""
        return next((err for _, err in self.simulations.values() if err), None)


class SimulationScorer:
    """``Scorer`` over a ``Simulator`` (baseline, LLM, all-at-once)."""

    name = "simulation"

    def __init__(self, simulator: Simulator):
        self.simulator = simulator
        self.uses_llm = not simulator.is_baseline

    def config(self) -> dict[str, Any]:
        return {"simulator": self.simulator.name, **self.simulator.config()}

    async def judge(self, record: UnitRecord, text: str, split: HeldOut = "test") -> SimulationJudgement:
        windows: list[Window] = record.split(split)
        try:
            sim = await self.simulator.simulate(text, [list(w.tokens) for w in windows])
        except RunStop:
            raise
        except Exception as e:  # a bug or an unexpected error: the unit fails, with the reason
            return SimulationJudgement(split, None, failure=f"scoring failed: {type(e).__name__}: {e}")
        result = score_windows(windows, sim.predictions)
        sims = {w.index: s for w, s in zip(windows, zip(sim.predictions, sim.errors))}
        judgement = SimulationJudgement(split, result, sims, dict(sim.details))
        if result.n_windows == 0 and result.n_failed:
            why = judgement.first_error or "unknown error"
            return SimulationJudgement(split, result, sims, dict(sim.details),
                                       failure=f"scoring failed: no {split} window could be simulated ({why})")
        return judgement
