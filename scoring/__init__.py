"""Scoring: simulators (explanation -> predicted activations) and the pure math that scores them.

Public API: ``correlation_score``, ``pooled_correlation``, ``score_windows``, ``ScoreResult``, ``Simulator``,
``SimulationResult``, ``expected_value`` (from the LLM simulator).
"""

from autointerp.scoring.llm_simulator import LLMSimulator, expected_value
from autointerp.scoring.score import ScoreResult, correlation_score, pooled_correlation, score_windows
from autointerp.scoring.simulator import SimulationResult, Simulator

__all__ = [
    "LLMSimulator",
    "expected_value",
    "ScoreResult",
    "SimulationResult",
    "Simulator",
    "correlation_score",
    "pooled_correlation",
    "score_windows",
]
