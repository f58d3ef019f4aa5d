"""The scoring room, the judging stage: scorers judge an explanation's text on held-out windows (``Scorer``,
``scoring/scorer.py``): the simulation scorer over a simulator (explanation -> predicted activations) and the pure
math that scores it. Imports errors, outcomes, corpus, llm, prompts and subject; never agent (it sees texts, not
explainers).

Public API: ``Scorer``, ``SimulationScorer``, ``correlation_score``, ``pooled_correlation``, ``score_windows``,
``ScoreResult``, ``Simulator``,
``SimulationResult``, ``LLMSimulator`` and ``expected_value`` (the generate LLM simulator), ``EchoSimulator`` (the
all-at-once one); the classification scorers ``DetectionScorer``, ``FuzzingScorer`` (``ClassificationScorer``,
``ClassificationJudgement``) and their judges ``QuotedJudge``, ``LLMJudge``. Names are loaded on first use,
so that ``autointerp.scoring.score`` (pure math) imports no LLM client or template engine.
"""

from __future__ import annotations

import importlib

_WHERE = {
    "Scorer": "scorer",
    "Judgement": "scorer",
    "SimulationScorer": "simulation",
    "SimulationJudgement": "simulation",
    "ClassificationJudgement": "classify",
    "ClassificationScorer": "classify",
    "DetectionScorer": "classify",
    "FuzzingScorer": "classify",
    "LLMJudge": "judges",
    "QuotedJudge": "judges",
    "EchoSimulator": "echo_simulator",
    "LLMSimulator": "llm_simulator",
    "expected_value": "llm_simulator",
    "ScoreResult": "score",
    "correlation_score": "score",
    "pooled_correlation": "score",
    "score_windows": "score",
    "SimulationResult": "simulator",
    "Simulator": "simulator",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module 'autointerp.scoring' has no attribute {name!r}")
    return getattr(importlib.import_module(f"autointerp.scoring.{_WHERE[name]}"), name)
