"""Every outcome word, in one place: what an explanation, a unit, a run, a sweep and a sweep's item can end as.

    from autointerp.outcomes import UnitOutcome, RunState, StopReason, worst_outcome
    worst_outcome(["done", "gave_up"])          # 'gave_up'

The words, and what each entity may be:

- **A unit's outcome** (``UnitOutcome``), also each explanation's (``explanations.status``, ``unit_runs.status``):
  ``done`` (explained and judged), ``gave_up`` (the explainer found no acceptable sentence: a result, with its
  reason), ``failed`` (an error of the explainer or of the scoring, with its reason; the next session does it
  again). A unit's outcome is the worst of its explanations' (``worst_outcome``). Scoring's own part of that is
  ``ScoringOutcome``: ``scored``, ``failed``, ``not_scored`` (no text to judge).
- **A run's state** (``RunState``, ``runs.status``): ``running``, then ``done`` (every unit has an outcome),
  ``stopped`` (it stopped before that, for a ``StopReason``, stored apart in ``runs.stop_reason``) or ``failed`` (an
  error stopped it; finished units stay and the same command resumes).
- **A stop reason** (``StopReason``): ``budget`` (a run's or a sweep's spending cap), ``interrupted`` (Ctrl-C or a
  signal), ``deadline`` (a sweep's stop time), ``lease`` (another process took the run or sweep over),
  ``endpoint`` (the LLM endpoint fails the same way on every call).
- **A sweep session and a sweep item attempt** (``SweepState``): ``done``, ``stopped`` (with its stop reason),
  ``failed``, and ``held`` (another process holds the sweep: nothing was done).

Databases written before these words (``complete``, ``interrupted`` as a state) are rewritten by migration
``m010_outcome_words``; ``tests/test_outcomes.py`` checks that the code and the SQL views use only the words here.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal, get_args

UnitOutcome = Literal["done", "gave_up", "failed"]
ScoringOutcome = Literal["scored", "failed", "not_scored"]
RunState = Literal["running", "done", "stopped", "failed"]
StopReason = Literal["budget", "interrupted", "deadline", "lease", "endpoint"]
SweepState = Literal["running", "done", "stopped", "failed", "held"]

UNIT_OUTCOMES: tuple[str, ...] = get_args(UnitOutcome)  # best first: the worst is last
FINISHED: tuple[str, ...] = ("done", "gave_up")  # a unit with one of these is not done again on resume
SCORING_OUTCOMES: tuple[str, ...] = get_args(ScoringOutcome)
RUN_STATES: tuple[str, ...] = get_args(RunState)
STOP_REASONS: tuple[str, ...] = get_args(StopReason)
SWEEP_STATES: tuple[str, ...] = get_args(SweepState)
ALL_WORDS: frozenset[str] = frozenset(UNIT_OUTCOMES + SCORING_OUTCOMES + RUN_STATES + STOP_REASONS + SWEEP_STATES)


def worst_outcome(outcomes: Iterable[str]) -> UnitOutcome:
    """The least finished of a unit's outcomes (failed > gave_up > done); ``failed`` when there are none."""
    return max(outcomes, key=UNIT_OUTCOMES.index, default="failed")  # type: ignore[return-value]


def unit_outcome(explainer: UnitOutcome, scoring: ScoringOutcome) -> UnitOutcome:
    """One explanation's outcome: the explainer's, unless its scoring failed."""
    return "failed" if scoring == "failed" else explainer


def stop_reason_of(reason_text: str, default: StopReason = "interrupted") -> StopReason:
    """The stop reason word of an exception's reason ``reason`` attribute or of a sweep's stop message."""
    word = reason_text.split(":", 1)[0].strip()
    return word if word in STOP_REASONS else default  # type: ignore[return-value]
