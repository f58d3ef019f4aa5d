"""The baseline simulator: predicts activations from an explanation's text and the tokens alone (no LLM).

    >>> sim = BaselineSimulator()
    >>> sim.predict('Fires on the tokens "def" and " self".', ["def", " f", "(", " self", ")"])
    [10.0, 0.0, 0.0, 6.0, 0.0]

It reads the grammar the baseline explainer writes (``autointerp.agent.baseline``), and anything else that quotes
tokens the same way:

- every double-quoted string is a trigger token (JSON string syntax); the i-th of n listed tokens predicts
  ``10 - 8 * i / n`` (first = strongest) where a window token equals it exactly, or 70% of that where they are
  equal after stripping whitespace and lower-casing;
- ``after "X"``: the trigger prediction applies only when the previous token is X (a token right after X
  that is no trigger gets 3);
- ``at positions P-Q``: predictions outside positions P..Q are multiplied by 0.2; with no quoted token, positions
  P..Q predict 10.

It is a floor, not a reader of free prose: an LLM's explanation without quoted tokens gets constant predictions
and therefore an undefined (None) score from this simulator.
"""

from __future__ import annotations

import json
import re
from typing import Any

from autointerp.llm.tokens import Estimate, TokenCounter

from autointerp.scoring.simulator import SimulationResult

_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')
_AFTER = re.compile(r'after ("(?:[^"\\]|\\.)*")')
_POSITIONS = re.compile(r"positions (\d+)-(\d+)")


def _parse(explanation: str) -> tuple[list[str], str | None, tuple[int, int] | None]:
    after_m = _AFTER.search(explanation)
    after = json.loads(after_m.group(1)) if after_m else None
    tokens: list[str] = []
    for m in _QUOTED.finditer(explanation):
        if after_m and m.start() == after_m.start(1):
            continue
        try:
            tok = json.loads(f'"{m.group(1)}"')
        except json.JSONDecodeError:
            continue
        if tok not in tokens:
            tokens.append(tok)
    pos_m = _POSITIONS.search(explanation)
    positions = (int(pos_m.group(1)), int(pos_m.group(2))) if pos_m else None
    return tokens, after, positions


class BaselineSimulator:
    """Rule-based simulator for the baseline grammar. See the module docstring."""

    name = "baseline"
    is_baseline = True
    profile = None  # no LLM

    def config(self) -> dict[str, Any]:
        return {"kind": "baseline"}

    def estimate(self, windows: list[list[str]], counter: TokenCounter, explanation: str) -> Estimate | None:
        return None  # no LLM call

    def predict(self, explanation: str, tokens: list[str]) -> list[float]:
        triggers, after, positions = _parse(explanation)
        n = len(triggers)
        exact = {t: 10 - 8 * i / n for i, t in enumerate(triggers)}
        loose: dict[str, float] = {}
        for t, v in exact.items():
            if t.strip():  # whitespace-only tokens match exactly or not at all
                loose.setdefault(t.strip().lower(), 0.7 * v)
        preds = []
        for i, tok in enumerate(tokens):
            key = tok.strip().lower()
            v = exact.get(tok) or (loose.get(key, 0.0) if key else 0.0)
            if after is not None:
                prev_ok = i > 0 and tokens[i - 1] == after
                v = (v or 3.0) if prev_ok else 0.0
            if positions is not None:
                lo, hi = positions
                inside = lo <= i <= hi
                v = (10.0 if inside else 0.0) if not triggers else (v if inside else 0.2 * v)
            preds.append(float(v))
        return preds

    async def simulate(self, explanation: str, windows: list[list[str]]) -> SimulationResult:
        return SimulationResult(predictions=[self.predict(explanation, w) for w in windows], errors=[None] * len(windows))
