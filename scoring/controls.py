"""Controls beside every score: what an uninformative explanation gets under the same simulator, on the same test
windows, so that a reader sees the floor next to an explainer's mean score.

    partners = shuffled_partners([3, 5, 8, 13], seed=0)     # {3: 8, 8: 13, ...}: unit -> unit whose text it gets
    controls = await score_controls(record, simulator, texts[partners[unit]], partners[unit], explainer="local")
    [(c.explanation.explainer, c.test.score) for c in controls]
    # [('control:shuffled:local', 0.03), ('control:empty', None)]

Two controls per unit, each stored as an explanation of its own explainer kind (``role`` "control": never a unit's
best explanation on the leaderboard, never deciding a unit's outcome):

- ``control:shuffled:<explainer>``: the unit scored with another unit's explanation by the same explainer in the
  same run and layer. The pairing is a seeded derangement of the explained units (each gets the text of the next
  unit in a shuffled order, so no unit gets its own); it says how much of a score any explanation of this layer
  would get (shared tokens, the simulator's priors).
- ``control:empty``: the unit scored with the empty explanation: the simulator's prior alone. With the baseline
  simulator it predicts a constant, so its score is undefined (None, with the reason) by design.

Units that never fire get no controls (every score of theirs is undefined). Each control's LLM calls are counted on
it and logged with the unit, like any explanation's.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from autointerp.agent.base import Explanation
from autointerp.llm.scope import call_scope
from autointerp.scoring.scored import ScoredExplanation, score_text
from autointerp.scoring.simulator import Simulator
from autointerp.subject.records import UnitRecord

SHUFFLED = "control:shuffled"
EMPTY = "control:empty"


def shuffled_name(explainer: str) -> str:
    return f"{SHUFFLED}:{explainer}"


def shuffled_partners(units: Sequence[int], seed: int) -> dict[int, int]:
    """unit -> the unit whose explanation it is scored with: a seeded derangement (empty for fewer than 2 units)."""
    order = sorted(set(units))
    if len(order) < 2:
        return {}
    random.Random(seed).shuffle(order)
    return {order[i]: order[(i + 1) % len(order)] for i in range(len(order))}


async def score_controls(record: UnitRecord, simulator: Simulator, shuffled_text: str | None,
                         shuffled_from: int | None, *, explainer: str, seed: int = 0) -> list[ScoredExplanation]:
    """The unit's controls, simulated and scored on its test windows: the shuffled one (when ``shuffled_text`` is
    given: the explanation of unit ``shuffled_from``) and the empty one. ``BudgetExceeded`` propagates."""
    controls = [(shuffled_name(explainer), shuffled_text, {"from_unit": shuffled_from, "seed": seed})] \
        if shuffled_text is not None else []
    controls.append((EMPTY, "", {}))
    out = []
    for name, text, details in controls:
        with call_scope(str(record.id)) as usage:
            result, sims, diagnostics, failure = await score_text(record, text, simulator)
        out.append(ScoredExplanation(
            explanation=Explanation(text, status="done", explainer=name, details={"control": name, **details}),
            explainer_config={"kind": "control", "name": name, "of": explainer if name != EMPTY else None},
            is_baseline=True,
            simulator=simulator.name,
            simulator_config=simulator.config(),
            test=result,
            simulations={w.index: s for w, s in zip(record.split("test"), sims)},
            llm_calls=usage.calls, tokens_in=usage.tokens_in, tokens_out=usage.tokens_out, cost_usd=usage.cost_usd,
            scoring="failed" if failure else "scored",
            scoring_reason=failure,
            diagnostics=diagnostics,
            role="control",
        ))
    return out
