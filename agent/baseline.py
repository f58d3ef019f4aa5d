"""The baseline explainer: a non-LLM floor that any LLM explainer must beat.

    >>> explanation = await BaselineExplainer().explain(record)
    >>> explanation.text
    'Fires on the tokens "def" and " self", most strongly on "def".'

It reads only the unit's ``train`` windows and its corpus-wide statistics (never ``valid``/``test`` activations) and
writes one sentence in a small fixed grammar that the baseline simulator (``autointerp.scoring.baseline``) reads
back. The grammar is plain English, so an LLM simulator can read it too:

- ``Fires on the tokens "A", "B" and "C"`` — the tokens carrying the unit's activation mass on its top windows,
  strongest first; token strings are JSON-quoted so whitespace and newlines are exact.
- ``, mostly after "X"`` — added when one preceding token accounts for most of the strong activations.
- ``at positions P-Q of the window`` — added when the strong activations sit in a narrow position range;
  ``Fires at positions P-Q of the window, whatever the token`` when, besides, no token holds 30% of the mass.
- ``Never fires (dead on N tokens).`` for a dead unit.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from autointerp.agent.base import Explanation, Judge
from autointerp.llm.tokens import Estimate, TokenCounter
from autointerp.subject.records import UnitRecord

STRONG = 0.5  # a token is "strong" when its activation is at least this fraction of the max over train windows
MASS_COVERAGE = 0.8  # list tokens until they cover this fraction of the strong activation mass
MAX_TOKENS = 6
DIFFUSE = 0.3  # when no single token holds this share of the strong mass, tokens do not explain the unit


def q(token: str) -> str:
    """JSON-quote a token string (the grammar's token literal)."""
    return json.dumps(token, ensure_ascii=False)


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


class BaselineExplainer:
    """Token-frequency baseline explainer (no LLM). See the module docstring."""

    name = "baseline"
    is_baseline = True
    uses_tools = False
    profile = None  # no LLM
    validations = 0

    def config(self) -> dict[str, Any]:
        return {"kind": "baseline", "strong": STRONG, "mass_coverage": MASS_COVERAGE, "max_tokens": MAX_TOKENS}

    def estimate(self, record: UnitRecord, counter: TokenCounter) -> Estimate | None:
        return None  # no LLM call

    async def explain(self, record: UnitRecord, judge: Judge | None = None, *, tools: Any = None,
                      thread: str = "") -> Explanation:
        return self.explain_sync(record)

    async def aclose(self) -> None:
        return None

    def explain_sync(self, record: UnitRecord) -> Explanation:
        train = record.split("train")
        if record.stats.dead:
            text = f"Never fires (dead on {record.stats.n_tokens} tokens)."
            return Explanation(text, explainer=self.name, details={"dead": True})
        m = max((max(w.activations) for w in train), default=0.0)
        if m <= 0:
            text = "Rarely fires; no token in its top examples activates it."
            return Explanation(text, explainer=self.name, details={"max_train_activation": m})
        mass: Counter[str] = Counter()
        prev: Counter[str] = Counter()
        positions: list[int] = []
        for w in train:
            for i, (tok, act) in enumerate(zip(w.tokens, w.activations)):
                if act >= STRONG * m:
                    mass[tok] += act / m
                    positions.append(i)
                    if i > 0:
                        prev[w.tokens[i - 1]] += 1
        total = sum(mass.values())
        chosen, covered = [], 0.0
        for tok, weight in mass.most_common(MAX_TOKENS):
            chosen.append(tok)
            covered += weight
            if covered >= MASS_COVERAGE * total:
                break
        n_strong = len(positions)
        window = len(train[0].tokens)
        lo, hi = _position_range(positions)
        narrow = n_strong >= 3 and (hi - lo + 1) <= max(2, window // 4)
        if narrow and mass.most_common(1)[0][1] < DIFFUSE * total:
            # no token stands out but the positions do: a positional unit
            text = f"Fires at positions {lo}-{hi} of the window, whatever the token"
            return Explanation(text + ".", explainer=self.name, details={"positions": [lo, hi], "strong_tokens": n_strong})
        text = "Fires on the token" + ("s " if len(chosen) > 1 else " ") + _join([q(t) for t in chosen])
        if prev:
            ctx, count = prev.most_common(1)[0]
            if count >= 0.6 * n_strong and n_strong >= 3 and ctx not in chosen:
                text += f", mostly after {q(ctx)}"
        if narrow:
            text += f", at positions {lo}-{hi} of the window"
        if len(chosen) > 1:
            text += f", most strongly on {q(chosen[0])}"
        return Explanation(
            text + ".",
            explainer=self.name,
            details={"tokens": chosen, "coverage": round(covered / total, 3), "strong_tokens": n_strong},
        )


def _position_range(positions: list[int]) -> tuple[int, int]:
    """The narrowest range holding 90% of the strong positions."""
    if not positions:
        return 0, 0
    ps = sorted(positions)
    need = max(1, int(0.9 * len(ps) + 0.5))
    best = min(range(len(ps) - need + 1), key=lambda i: ps[i + need - 1] - ps[i])
    return ps[best], ps[best + need - 1]

