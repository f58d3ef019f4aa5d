"""The LLM estimate a run shows before it spends, from measurement where there is any.

    >>> estimate = estimate_run(store, record, explainer, simulator, n_units=64)
    >>> estimate["basis"]          # per component: how its tokens per call were found
    {'explainer': 'measured over 212 earlier calls', 'simulator': 'guess: counted from the prompts'}

``scoring.estimate.estimate_llm_usage`` predicts the calls and, by counting the prompts, the tokens of one unit. The
calls are a matter of the config (drafts, revisions, tool calls, windows per request), the tokens per call are not:
the replies' lengths depend on the model. So when the results DB holds successful calls of the same profile and model
for the same purposes (``MIN_CALLS`` or more), their mean tokens per call replace the counted ones; otherwise the
estimate says it is a guess. ``compare`` sets the estimate against what the run used (shown in its summary).
"""

from __future__ import annotations

from typing import Any

from autointerp.db import Store
from autointerp.scoring.estimate import estimate_llm_usage

MIN_CALLS = 5  # fewer earlier calls than this: the counted tokens are used
PURPOSES = {"explainer": ("explain", "revise"), "simulator": ("simulate",)}  # what each component's calls are for


class _NoLLM:
    """Stands in for the other component while one is estimated (keeps the explainer's limits, which decide how
    many candidate explanations the simulator scores)."""

    def __init__(self, like: Any = None):
        self.limits = getattr(like, "limits", None)


def estimate_run(store: Store | None, record, explainer, simulator, n_units: int,
                 tiktoken_file: str | None = None, controls: bool = False) -> dict[str, Any] | None:
    """Expected calls, tokens and cost of ``n_units`` units like ``record`` (None when no LLM is used); tokens per
    call measured from ``store`` where it can (see the module docstring). ``basis`` says how, per component;
    ``measured`` is True when every component's tokens were measured."""
    total: dict[str, Any] = {"units": n_units, "calls": 0, "tokens_in": 0, "tokens_out": 0, "cost_usd": 0.0,
                             "token_counting": None, "basis": {}}
    for role, pair in (("explainer", (explainer, _NoLLM())), ("simulator", (_NoLLM(explainer), simulator))):
        part = estimate_llm_usage(record, *pair, n_units, tiktoken_file, controls=controls)
        if part is None:
            continue
        component = explainer if role == "explainer" else simulator
        total["token_counting"] = part["token_counting"]
        tokens_in, tokens_out, cost = part["tokens_in"], part["tokens_out"], part["cost_usd"]
        seen = None if store is None else store.tokens_per_call(component.name, component.profile.model,
                                                                PURPOSES[role])
        if seen is not None and seen["calls"] >= MIN_CALLS:
            tokens_in, tokens_out = round(part["calls"] * seen["tokens_in"]), round(part["calls"] * seen["tokens_out"])
            cost = component.profile.cost_usd(tokens_in, tokens_out)
            total["basis"][role] = f"measured over {seen['calls']} earlier calls"
        else:
            total["basis"][role] = "guess: counted from the prompts"
        total["calls"] += part["calls"]
        total["tokens_in"] += tokens_in
        total["tokens_out"] += tokens_out
        total["cost_usd"] += cost
    if not total["basis"]:
        return None
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
