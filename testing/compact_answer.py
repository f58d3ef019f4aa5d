"""The test server's answer to a compact simulation prompt (``autointerp.scoring.compact``), token by token.

    from autointerp.testing.compact_answer import compact_answer, compact_windows, compact_reply
    before, windows = compact_windows(prompt)         # None when the prompt is not a compact simulation prompt
    compact_reply([[True, False]], high_top, low_top) # Reply "1:X0\\n", top logprobs on each character
    compact_answer(prompt, quoted_re, high_top, low_top)  # the two above: 'X' for the tokens quoted before window 1

``default_handler`` (``autointerp.testing.server``) predicts exactly as it does for the full format: the same tokens
high, with the same distributions, "10" spelled "X"; so both formats give the same expected values.
"""

from __future__ import annotations

import re
from typing import Any

from autointerp.testing.outcomes import Reply

_WINDOW_RE = re.compile(r"^(\d+) \((\d+) tokens?\):((?:\t[^\t\n]*)*)$", re.M)


def compact_windows(prompt: str) -> tuple[str, list[list[str]]] | None:
    """(the prompt's text before its first window line, each window's tokens as shown), or None when ``prompt`` has
    no window line of the compact format or a window's tokens do not match its count."""
    matches = list(_WINDOW_RE.finditer(prompt))
    if not matches:
        return None
    windows = [m.group(3).split("\t")[1:] for m in matches]
    if any(len(w) != int(m.group(2)) for w, m in zip(windows, matches)):
        return None
    return prompt[: matches[0].start()], windows


def compact_reply(high: list[list[bool]], high_top: dict[str, float], low_top: dict[str, float]) -> Reply:
    """One line per window: its number, a colon, then per token "X" with ``high_top`` or "0" with ``low_top`` (their
    "10" spelled "X"), one generated token per character."""
    def spelled(top: dict[str, float]) -> dict[str, float]:
        return {("X" if token == "10" else token): logprob for token, logprob in top.items()}

    high_spelled, low_spelled = spelled(high_top), spelled(low_top)
    tokens: list[tuple[str, dict[str, float]]] = []
    for label, flags in enumerate(high, 1):
        tokens += [(str(label), {}), (":", {})]
        tokens += [("X", high_spelled) if flag else ("0", low_spelled) for flag in flags]
        tokens.append(("\n", {}))
    return Reply(tokens=tokens)


def compact_answer(prompt: str, quoted_re: re.Pattern[str], high_top: dict[str, float], low_top: dict[str, float]
                   ) -> Reply | None:
    """The answer to a compact simulation ``prompt`` (None when it is not one): "X" on each token that, stripped and
    lower-cased, is quoted (``quoted_re``) in the text before the first window, else "0"."""
    found: Any = compact_windows(prompt)
    if found is None:
        return None
    quoted = {q.strip().lower() for q in quoted_re.findall(found[0])}
    return compact_reply([[t.strip().lower() in quoted for t in window] for window in found[1]], high_top, low_top)
