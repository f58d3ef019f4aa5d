"""What a run's LLM components will spend, estimated before any call is made (shown by ``run`` before it spends).

    >>> estimate_llm_usage(record, explainer, simulator, n_units=64)
    {'units': 64, 'calls': ..., 'tokens_in': ..., 'tokens_out': ..., 'cost_usd': ..., 'token_counting': 'tiktoken'}
"""

from __future__ import annotations

from typing import Any

from autointerp.agent.base import Explainer
from autointerp.llm.profiles import ModelProfile
from autointerp.llm.tokens import Estimate, TokenCounter
from autointerp.scoring.simulator import Simulator
from autointerp.subject.records import UnitRecord


def estimate_llm_usage(record: UnitRecord, explainer: Explainer, simulator: Simulator, n_units: int,
                       tiktoken_file: str | None = None, controls: bool = False) -> dict[str, Any] | None:
    """Expected LLM calls, tokens and cost for ``n_units`` units like ``record``; None when no LLM is used.

    Each LLM component estimates one unit (``estimate`` methods); the test windows are simulated once per unit, and
    twice more with ``controls`` (a shuffled and an empty explanation, ``autointerp.scoring.controls``).
    """
    counter = TokenCounter(bpe_file=tiktoken_file)
    parts: dict[str, tuple[Estimate, ModelProfile]] = {}
    if hasattr(explainer, "estimate"):
        parts["explainer"] = (explainer.estimate(record, counter), explainer.profile)
    if hasattr(simulator, "estimate"):
        sample = "x" * 160  # a typical one-sentence explanation
        test = [list(w.tokens) for w in record.split("test")]
        sim = simulator.estimate(test, counter, sample)
        if controls:
            sim = sim * 2 + simulator.estimate(test, counter, "")  # the shuffled control: a typical text again
        limits = getattr(explainer, "limits", None)
        if limits is not None and (limits.best_of > 1 or limits.revise_rounds > 0):  # candidates scored on valid
            valid = simulator.estimate([list(w.tokens) for w in record.split("valid")], counter, sample)
            sim = sim + valid * (limits.best_of + limits.revise_rounds)
        parts["simulator"] = (sim, simulator.profile)
    if not parts:
        return None
    total = {"units": n_units, "calls": 0, "tokens_in": 0, "tokens_out": 0, "cost_usd": 0.0,
             "token_counting": counter.method}
    for est, profile in parts.values():
        est = est * n_units
        total["calls"] += est.calls
        total["tokens_in"] += est.tokens_in
        total["tokens_out"] += est.tokens_out
        total["cost_usd"] += profile.cost_usd(est.tokens_in, est.tokens_out)
    return total
