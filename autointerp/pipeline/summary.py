"""What a run's session reports: every finished unit's outcome, timings, LLM usage and estimate, the floor."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

from autointerp.outcomes import RunState, StopReason, UnitOutcome as OutcomeWord
from autointerp.pipeline.estimate import compare


@dataclass
class UnitOutcome:
    unit: int
    explanation: str
    status: OutcomeWord  # done, gave_up or failed (autointerp.outcomes)
    score: float | None  # simulation: Pearson r on test
    detection: float | None = None  # balanced accuracy on test (None: not judged, or undefined)
    fuzzing: float | None = None

    def value(self, scorer: str) -> float | None:
        """The unit's test value under ``scorer``: simulation, detection or fuzzing."""
        return {"simulation": self.score, "detection": self.detection, "fuzzing": self.fuzzing}[scorer]


@dataclass
class RunSummary:
    """Written by the run's session (``pipeline.session.RunSession``) only."""

    run_id: str
    db: str
    layer: int
    explainer: str
    simulator: str
    baseline: bool  # the explainer is the offline baseline
    units_total: int
    units_skipped: int  # already finished by an earlier session of the same run (same key)
    outcomes: list[UnitOutcome] = field(default_factory=list)  # every finished unit, earlier sessions included
    n_tokens: int = 0
    capture_s: float = 0.0  # time of the capture pass in this session (0 when nothing was left to capture)
    explain_s: float = 0.0  # time of the explain + score phase in this session (every unit's LLM work)
    explain_cpu_s: float = 0.0  # CPU time (user + system, all threads) of this process in that phase
    wall_s: float = 0.0
    state: RunState = "running"  # done, stopped (with stop_reason) or failed once the session finished
    stop_reason: StopReason | None = None  # why it stopped: budget, interrupted, deadline, lease, endpoint
    stopped: str | None = None  # the stop, in words (e.g. the budget reached), when it stopped
    estimate: dict[str, Any] | None = None  # expected LLM usage of this session, made before spending
    llm_usage: dict[str, Any] | None = None  # what this session's LLM calls used: calls, tokens, cost, per unit
    unit_kind: str = "neuron"  # "neuron", or the dictionary's features: family:hash8 (subject.units)
    controls: list[dict[str, Any]] = field(default_factory=list)  # per control: units, scored, mean (the floor)
    dictionary_check: dict[str, Any] | None = None  # an SAE's reconstruction of its site: fvu, mean_l0, tokens
    classifiers: tuple[str, ...] = ()  # the run's scorers besides simulation: detection, fuzzing

    @property
    def interrupted(self) -> bool:
        return self.stop_reason == "interrupted"

    @property
    def estimate_vs_actual(self) -> dict[str, Any] | None:
        """The estimate, scaled to the units this session finished, against what they used (``measured.compare``)."""
        return compare(self.estimate, self.llm_usage, self.units_this_session)

    @property
    def units_this_session(self) -> int:
        return len(self.outcomes) - self.units_skipped

    @property
    def scores(self) -> list[float]:
        return [o.score for o in self.outcomes if o.score is not None]

    @property
    def mean_score(self) -> float | None:
        return statistics.fmean(self.scores) if self.scores else None

    def mean_of(self, scorer: str) -> float | None:
        """The mean of the units' defined ``detection`` or ``fuzzing`` scores (None when there is none)."""
        values = [v for o in self.outcomes if (v := o.value(scorer)) is not None]
        return statistics.fmean(values) if values else None

    @property
    def median_score(self) -> float | None:
        return statistics.median(self.scores) if self.scores else None
