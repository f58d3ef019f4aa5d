"""Controls beside every score: what an uninformative explanation gets under the same scorers, on the same test
windows, so that a reader sees the floor next to an explainer's mean score.

    partners = shuffled_partners([3, 5, 8, 13], seed=0)     # {3: 8, 8: 13, ...}: unit -> unit whose text it gets
    control_texts(texts, partners, unit, explainer="local", seed=0)
    # [('control:shuffled:local', '<unit 8's text>', {'from_unit': 8, 'seed': 0}), ('control:empty', '', {})]

Two controls per unit, each stored as an explanation of its own explainer kind (``role`` "control": never a unit's
best explanation on the leaderboard, never deciding a unit's outcome):

- ``control:shuffled:<explainer>``: the unit scored with another unit's explanation by the same explainer in the
  same run and layer. The pairing is a seeded derangement of the explained units (each gets the text of the next
  unit in a shuffled order, so no unit gets its own); it says how much of a score any explanation of this layer
  would get (shared tokens, the simulator's priors).
- ``control:empty``: the unit scored with the empty explanation: the simulator's prior alone. With the baseline
  simulator it predicts a constant, so its score is undefined (None, with the reason) by design.

Controls are judged on a seeded sample of the explained live units (``control_sample``; ``controls_units``, 16
by default: a floor with a 95% interval, at a fraction of the cost of controls on every unit). Units that never fire
get no controls (every score of theirs is undefined). The run owner
(``autointerp.pipeline.stages``) judges each control text with the run's scorers and counts its LLM calls on it.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from typing import Any

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


def control_sample(live: Sequence[int], already: set[int], n: int, seed: int) -> list[int]:
    """The units to judge with controls now: ``n`` units of ``live`` in a seeded order (``n`` 0: every one), those
    ``already`` controlled counted first, so a resumed run tops the sample up to ``n`` and never redoes one."""
    order = sorted(set(live))
    random.Random(f"controls:{seed}").shuffle(order)
    if n == 0:
        return [u for u in order if u not in already]
    need = n - len(already & set(order))
    return [u for u in order if u not in already][:max(need, 0)]


def control_texts(texts: dict[int, str], partners: dict[int, int], unit: int, *, explainer: str,
                  seed: int = 0) -> list[tuple[str, str, dict[str, Any]]]:
    """The unit's controls as (explainer name, text, details): the shuffled one (when the unit has a partner with
    a text: ``texts`` maps explained units to their texts) and the empty one."""
    partner = partners.get(unit)
    out: list[tuple[str, str, dict[str, Any]]] = []
    if partner is not None and texts.get(partner):
        out.append((shuffled_name(explainer), texts[partner], {"from_unit": partner, "seed": seed}))
    out.append((EMPTY, "", {}))
    return out
