"""The LLM estimate a run shows before it spends, from measurement where there is any.

    >>> estimate = estimate_run(store, record, explainer, stages, n_units=64)
    >>> estimate["basis"]          # per component: how its tokens per call were found
    {'explainer': 'measured over 212 earlier calls', 'simulator': 'guess: counted from the prompts'}

``counted_usage`` predicts the calls and, by counting the prompts, the tokens of one unit. The
calls are a matter of the config (drafts, revisions, tool calls, windows per request), the tokens per call are not:
the replies' lengths depend on the model. So when the results DB holds successful calls of the same profile and model
for the same purposes (``MIN_CALLS`` or more), their mean tokens per call replace the counted ones; otherwise the
estimate says it is a guess. ``compare`` sets the estimate against what the run used (shown in its summary).
"""

from __future__ import annotations

from typing import Any

from autointerp.agent.base import Explainer
from autointerp.db import Store
from autointerp.llm.profiles import ModelProfile
from autointerp.llm.tokens import Estimate, TokenCounter
from autointerp.pipeline.stages import Stages
from autointerp.subject.records import UnitRecord

MIN_CALLS = 5  # fewer earlier calls than this: the counted tokens are used
# what each purpose's calls are, in llm_calls: the explainer's (explain, revise), the simulator's (simulate) and the
# classification judge's (detection, fuzzing); "controls ..." are the same judgements of the control texts
PURPOSES = {"explain": ("explain", "revise"), "validate": ("simulate",), "score": ("simulate",),
            "detection": ("detection",), "fuzzing": ("fuzzing",), "controls": ("simulate",),
            "controls detection": ("detection",), "controls fuzzing": ("fuzzing",)}
TYPICAL_TEXT = "x" * 160  # a typical one-sentence explanation, for the simulations of candidates and controls


def counted_usage(record: UnitRecord, explainer: Explainer, stages: Stages, counter: TokenCounter
                  ) -> dict[str, tuple[Estimate, ModelProfile, str]]:
    """Per purpose, the expected usage of ONE unit like ``record`` (prompts counted), the profile that pays for it
    and the component's name: ``explain`` (the explainer's own calls, ``Explainer.estimate``), ``validate`` (the
    valid windows simulated once per candidate the explainer validates), ``score`` (the test windows, once),
    ``detection`` and ``fuzzing`` (the test examples judged once, with an LLM judge), and ``controls`` (the test
    windows twice more: a shuffled explanation and the empty one; ``controls detection`` / ``controls fuzzing``
    their judgements; for a unit that has them)."""
    parts: dict[str, tuple[Estimate, ModelProfile, str]] = {}
    explained = explainer.estimate(record, counter)
    if explained is not None and explainer.profile is not None:
        parts["explain"] = (explained, explainer.profile, explainer.name)
    scoring = stages.scoring
    simulator = scoring.simulation.simulator
    test = [list(w.tokens) for w in record.split("test")]
    sim = simulator.estimate(test, counter, TYPICAL_TEXT)
    if sim is not None and simulator.profile is not None:
        if explainer.validations:
            valid = [list(w.tokens) for w in record.for_validation(stages.validate_windows).split("valid")]
            parts["validate"] = (simulator.estimate(valid, counter, TYPICAL_TEXT) * explainer.validations,
                                 simulator.profile, simulator.name)
        parts["score"] = (sim, simulator.profile, simulator.name)
        parts["controls"] = (sim + simulator.estimate(test, counter, ""), simulator.profile, simulator.name)
    for scorer in scoring.classifiers:
        judged = scorer.estimate(record, counter, TYPICAL_TEXT)
        if judged is not None and scorer.profile is not None:
            parts[scorer.name] = (judged, scorer.profile, scorer.judger.name)
            parts[f"controls {scorer.name}"] = (judged + scorer.estimate(record, counter, ""), scorer.profile,
                                                scorer.judger.name)
    return parts


def estimate_run(store: Store | None, record: UnitRecord, explainer: Explainer, stages: Stages,
                 n_units: int, tiktoken_file: str | None = None, controlled: int = 0) -> dict[str, Any] | None:
    """Expected calls, tokens and cost of ``n_units`` units like ``record``, ``controlled`` of which get controls
    (None when no LLM is used); tokens per call measured from ``store`` where it can (see the module docstring).
    ``by_purpose`` splits the totals (explain, validate, score, controls); ``basis`` says how each purpose's tokens
    were found; ``measured`` is True when every purpose's were measured."""
    counter = TokenCounter(bpe_file=tiktoken_file)
    parts = counted_usage(record, explainer, stages, counter)
    if not parts:
        return None
    total: dict[str, Any] = {"units": n_units, "controlled_units": controlled, "calls": 0, "tokens_in": 0,
                             "tokens_out": 0, "cost_usd": 0.0, "token_counting": counter.method, "basis": {},
                             "by_purpose": {}}
    for purpose, (one, profile, name) in parts.items():
        est = one * (controlled if purpose.startswith("controls") else n_units)
        if est.calls == 0:
            continue
        tokens_in, tokens_out = est.tokens_in, est.tokens_out
        seen = None if store is None else store.tokens_per_call(name, profile.model, PURPOSES[purpose])
        if seen is not None and seen["calls"] >= MIN_CALLS:
            tokens_in, tokens_out = round(est.calls * seen["tokens_in"]), round(est.calls * seen["tokens_out"])
            total["basis"][purpose] = f"measured over {seen['calls']} earlier calls"
        else:
            total["basis"][purpose] = "guess: counted from the prompts"
        cost = profile.cost_usd(tokens_in, tokens_out)
        total["by_purpose"][purpose] = {"calls": est.calls, "tokens_in": tokens_in, "tokens_out": tokens_out,
                                        "cost_usd": cost}
        total["calls"] += est.calls
        total["tokens_in"] += tokens_in
        total["tokens_out"] += tokens_out
        total["cost_usd"] += cost
    total["per_unit"] = {k: round(total[k] / max(n_units, 1), 6) for k in ("calls", "tokens_in", "tokens_out",
                                                                           "cost_usd")}
    total["measured"] = all(b.startswith("measured") for b in total["basis"].values())
    return total


def compare(estimate: dict[str, Any] | None, usage: dict[str, Any] | None, units_done: int) -> dict[str, Any] | None:
    """Estimate against actual for the units this session finished: per quantity, the estimate scaled to those
    units, what was used, and the relative error of the estimate ((estimate - actual) / actual; None when actual
    is 0)."""
    if not estimate or not usage or not estimate["units"] or not units_done:
        return None
    scale = units_done / estimate["units"]
    out: dict[str, Any] = {"units": units_done, "measured": estimate.get("measured", False)}
    for key in ("calls", "tokens_in", "tokens_out", "cost_usd"):
        expected, actual = estimate[key] * scale, usage[key]
        out[key] = {"estimate": round(expected, 6), "actual": actual,
                    "error": None if not actual else round((expected - actual) / actual, 4)}
    return out
