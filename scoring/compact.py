"""The compact simulation reply (docs/methods.md §2c): one line of characters per window, the tokens never copied back.

    from autointerp.scoring.llm_simulator import LLMSimulator
    LLMSimulator(client, profile, fmt="compact")     # or simulator_format = "compact" in the model profile

The prompt (``prompts/simulator_compact_system.j2``, ``prompts/simulator_compact_user.j2``) shows each window once,
on one line: its number, its count of tokens, then its tokens, each after a tab (``show_token`` escapes tabs and
newlines inside tokens, so a tab on the line is always a separator)::

    2 (4 tokens):	def	 f	(	)

and the reply has one line per window: its number, a colon, then one character per token, nothing between them::

    2:X000

**Why one character per token, and which.** The prediction at a position is read from the logprobs of the generated
token that holds its character, so each character should be a token of its own and nothing else should be generated.
Tokenizers that write digits one at a time (SmolLM2, Llama 2, Mistral, Gemma, Qwen) make each digit one token: about
1.05 output tokens per predicted position for 64-token windows (the ``N:`` and the newline of each line included),
against about 7 for the full format, which copies every token with a tab, its number and a newline. A separator between
the numbers (a space, a comma) would double that: in these tokenizers and in tiktoken's, a digit never merges with the
space or comma before it. Without separators "10" cannot be told from "1" then "0", so ten is written ``X``: a letter
never merges with a neighbouring digit (letters and digits are separate pre-tokens in all of these tokenizers). The
eleven values are "0".."9" and "X" (lower-case "x" is read as ten too); the expected value ``E = sum_v v p(v)`` over
them, renormalised, is the expectation of docs/methods.md §2 over "0".."10" with "10" spelled ``X``. Capping the scale
at 0..9 instead would lose the 0..10 of docs/methods.md §2 and the equality with the full format.

**Tokenizers that group digits** (tiktoken's cl100k_base and o200k_base: GPT-4, GPT-4o, GPT-4o-mini, Llama 3) write up
to three digits per token ("000"), and a run of X's or a label's colon may merge with a following X (":X", "XX"). The
reply is then cheaper still (about 0.4 tokens per position), and a generated token may hold several positions. The
character at offset ``j`` of a generated token gets its distribution from that token's top alternatives that agree
with the token's first ``j`` characters and are longer than ``j``: for ``j = 0`` (every position of a one-digit
tokenizer) that is exactly the marginal of the character; for ``j > 0`` the alternatives that end before ``j`` (their
next character is decided at the next token) are left out, an estimate. Such positions are counted in
``details["positions_inside_merged_tokens"]``.

**Alignment.** Lines are matched to windows by their number, never by their order: a line whose count of characters is
not its window's count of tokens, a window answered twice, or a window without a line is an error on that window
(``predictions`` None, the reason in ``errors``), never a shifted guess. Other lines (a preamble) are ignored by the
parser; the stream is stopped (``CompactWatch``) at more than ``PREAMBLE_LINES`` lines before the first answer line, at
any off-format line after it, at the first error, and as soon as every window is answered.
"""

from __future__ import annotations

import bisect
import math
import re
from collections.abc import Sequence

from autointerp.llm.tokens import TokenCounter
from autointerp.llm.client import TokenLogprob
from autointerp.llm.streaming import LineWatch
from autointerp.prompts.render import render

SYSTEM_TEMPLATE = "simulator_compact_system.j2"
USER_TEMPLATE = "simulator_compact_user.j2"
TEN = "X"
VALUES = {**{str(v): v for v in range(10)}, TEN: 10, TEN.lower(): 10}  # character -> activation 0..10
CHARS = "".join(str(v) for v in range(10)) + TEN  # value -> character
_LINE_RE = re.compile(r"^[ \t]*(\d+)[ \t]*:[ \t]*([0-9Xx]*)[ \t\r]*$")
REPLY_MARGIN = 1.2  # max_tokens = this times the reply's characters, plus PREAMBLE_TOKENS
PREAMBLE_TOKENS = 16
PREAMBLE_LINES = 2  # lines a reply may write before its first answer line


def compact_messages(explanation: str, windows: list[list[str]]) -> list[dict[str, str]]:
    """The chat messages asking for compact predictions on ``windows`` (pinned by tests/test_prompts_golden.py)."""
    return [
        {"role": "system", "content": render(SYSTEM_TEMPLATE)},
        {"role": "user", "content": render(USER_TEMPLATE, explanation=explanation, windows=windows)},
    ]


def compact_line(label: int, values: Sequence[int]) -> str:
    """The answer line for window ``label`` (1-based) with integer ``values`` 0..10."""
    return f"{label}:" + "".join(CHARS[v] for v in values)


def compact_reply_tokens(windows: list[list[str]], counter: TokenCounter) -> int:
    """Generated tokens of a compact reply to ``windows`` as ``counter`` counts them (a line of zeros each). Without
    a real tokenizer (``counter.method == "estimate"``, four characters a token) a character is a token: digits are
    one token each in the tokenizers the format is meant for (and in the test server's replies), never four."""
    lines = [compact_line(i, [0] * len(w)) + "\n" for i, w in enumerate(windows, 1)]
    if counter.method == "estimate":
        return sum(map(len, lines))
    return sum(counter.count(line) for line in lines)


def compact_reply_budget(windows: list[list[str]]) -> int:
    """``max_tokens`` for a compact reply: one token per character (the most any tokenizer takes for a digit), with
    a 20% margin."""
    need = sum(len(compact_line(i, [0] * len(w))) + 1 for i, w in enumerate(windows, 1))
    return math.ceil(REPLY_MARGIN * need) + PREAMBLE_TOKENS


class CompactWatch(LineWatch):
    """``stop_when`` for a streamed compact reply to windows of ``sizes`` tokens: the reason to stop at the first line
    that breaks the format (or once every window is answered), else None. Reads each line once."""

    def __init__(self, sizes: list[int]):
        self.sizes = sizes
        self.answered: set[int] = set()
        self.outside = 0  # non-blank lines before the first answer line
        self.complete = False  # every window answered: the reason to stop is not an error

    def _line(self, line: str) -> str | None:
        if not line.strip():
            return None
        match = _LINE_RE.match(line)
        if match is None:
            self.outside += 1
            if self.answered or self.outside > PREAMBLE_LINES:
                return f"off format: {line[:80]!r}"
            return None
        label, chars = int(match.group(1)), match.group(2)
        if not 1 <= label <= len(self.sizes) or label in self.answered:
            return f"line {line[:80]!r} names no window left to answer"
        if len(chars) != self.sizes[label - 1]:
            return f"window {label} has {len(chars)} characters for its {self.sizes[label - 1]} tokens"
        self.answered.add(label)
        if len(self.answered) == len(self.sizes):
            self.complete = True
            return "every window answered"
        return None


def parse_compact(text: str, sizes: list[int]) -> list[list[tuple[int, int]] | str]:
    """Per window of ``sizes`` tokens: [(value written, its character's offset in ``text``), ...] per token, or an
    error. Lines are matched to windows by their number (see the module docstring)."""
    found: dict[int, list[tuple[int, int]] | str] = {}
    offset = 0
    for line in text.split("\n"):
        match = _LINE_RE.match(line)
        if match is not None and 1 <= int(match.group(1)) <= len(sizes):
            label, chars = int(match.group(1)), match.group(2)
            if label in found:
                found[label] = f"window {label} is answered by more than one line"
            elif len(chars) != sizes[label - 1]:
                found[label] = f"expected {sizes[label - 1]} characters (one per token), got {len(chars)}"
            else:
                start = offset + match.start(2)
                found[label] = [(VALUES[c], start + i) for i, c in enumerate(chars)]
        offset += len(line) + 1
    return [found.get(i, f"the reply has no line for window {i} ('{i}:...')") for i in range(1, len(sizes) + 1)]


def char_expected_value(top_logprobs: dict[str, float], prefix: str) -> float | None:
    """Expected activation of the character that follows ``prefix`` inside a generated token: over the alternatives
    that start with ``prefix`` and go on, the probabilities of their next character "0".."9", "X" (ten),
    renormalised over those. None when no alternative has such a character."""
    j, values, exp = len(prefix), VALUES, math.exp
    mass = weighted = 0.0
    for token, logprob in top_logprobs.items():  # once per predicted position of a reply: kept lean
        value = values.get(token[j:j + 1]) if not j or token.startswith(prefix) else None
        if value is not None:
            p = exp(logprob)
            mass += p
            weighted += value * p
    if mass <= 0.0:
        return None
    return weighted / mass


def compact_expected_values(tokens: Sequence[TokenLogprob], starts: list[int], offsets: list[int]
                            ) -> tuple[list[float], int, int]:
    """Expected values at the characters at ``offsets`` of the reply (``starts``: each generated token's offset);
    how many positions had no numeric alternative (0 for them), and how many sat inside a merged token (j > 0)."""
    values, missing, inside = [], 0, 0
    find = bisect.bisect_right
    for offset in offsets:
        k = find(starts, offset) - 1
        j = offset - starts[k]
        token = tokens[k]
        inside += j > 0
        value = char_expected_value(token.top_logprobs, token.token[:j])
        missing += value is None
        values.append(0.0 if value is None else value)
    return values, missing, inside
