"""The LLM simulator: predict a unit's activation (0..10) on every token from an explanation (docs/methods.md §2).

    import asyncio
    from autointerp.testing.fake import FakeLLM
    from autointerp.scoring.llm_simulator import LLMSimulator

    fake = FakeLLM()                                             # or LLMClient(profile, "mini", sink)
    simulator = LLMSimulator(fake, fake.profile, windows_per_request=4)
    result = asyncio.run(simulator.simulate('the token "def"', [["def", " f", "(", ")"], ["x", " =", " 1"]]))
    result.predictions        # [[9.45, 0.05, 0.05, 0.05], [0.05, 0.05, 0.05]]

The prompt (``prompts/simulator_system.j2``, ``prompts/simulator_user.j2``) shows the explanation, then each window
as ``token<TAB>`` lines between ``<start>`` and ``<end>``, and asks the model to copy the lines, writing a number 0..10
after each tab. Several windows share one request (``windows_per_request``).

Reading the reply. Blocks ``<start> ... <end>`` of the reply are matched to the request's windows in order; in a
block every non-blank line must be ``anything<TAB>integer`` and there must be one per token, else the window's
predictions are None with the reason in ``errors`` (never a silent zero). The echoed token text is not compared
with the input: order and count align the lines.

- ``profile.supports_logprobs`` (preferred): the request asks for ``top_logprobs``; the reply is re-read from the
  concatenated logprob tokens, and at the generated token that holds each line's number the expected value
  ``E = sum_v v p(v)`` over the tokens "0".."10" (renormalised) is the prediction. A position whose top logprobs hold
  no numeric token gets 0, counted in ``details["positions_without_numeric_token"]``.
- otherwise: the integers written are the predictions (an integer above 10 is an error).

Spending little on a bad reply. The reply is streamed and watched line by line (``ReplyWatch``): it is stopped at
the first line the parser would reject (more than ``PREAMBLE_LINES`` lines before the first ``<start>``, a token line
that does not parse or has a value above 10, a block with more or fewer lines than its window has tokens, text
between blocks), and as soon as every window is answered. Windows answered before the stop keep their predictions;
the others get the parser's error and the reason the reply was stopped. ``max_tokens`` is the reply's real need:
the tokens of every token line as the prompt shows it plus a tab, a number (two tokens: "1" "0") and a newline
(``reply_budget``), with a 20% margin, instead of a fixed allowance per line.

``fmt="compact"`` (or ``simulator_format = "compact"`` in the profile): the reply is one line of characters per
window instead of a copy of every token line (``autointerp.scoring.compact``: its prompt, parser, watch and expected
values; the same expected values for a quarter of the output tokens or less). ``simulator_grammar = true`` in the
profile sends either format as a llama.cpp grammar (``autointerp.scoring.grammar``).

"10" split into "1", "0" (tokenizers that write digits one at a time): when the number's first token is "1", the
probability of "0" at the next position is the chance that the "1" goes on to be "10"; so p("1") is divided into
p(1) = p("1") (1 - p_next("0")) and p(10) += p("1") p_next("0"). With a tokenizer where "10" is one token, the next
position is the newline and p_next("0") is about 0, so nothing changes. When the written first digit is not "1",
the next position says nothing about "1" going on to "10", and all of p("1") counts as 1 (a small bias towards 1).
"""

from __future__ import annotations

import asyncio
import bisect
import math
import re
from collections.abc import Sequence
from typing import Any

from autointerp.llm.client import ChatModel, ChatResult, LLMError, MalformedLogprobs, TokenLogprob
from autointerp.llm.profiles import ModelProfile
from autointerp.llm.streaming import LineWatch
from autointerp.llm.tokens import Estimate, TokenCounter
from autointerp.prompts.render import render, show_token, templates_sha256
from autointerp.scoring import compact as cf
from autointerp.scoring.grammar import compact_grammar, full_grammar
from autointerp.scoring.simulator import SimulationResult

SYSTEM_TEMPLATE = "simulator_system.j2"
USER_TEMPLATE = "simulator_user.j2"
TEMPLATES = {"full": (SYSTEM_TEMPLATE, USER_TEMPLATE), "compact": (cf.SYSTEM_TEMPLATE, cf.USER_TEMPLATE)}
MAX_ACTIVATION = 10
_NUMERIC = {str(v): v for v in range(MAX_ACTIVATION + 1)}
_BLOCK_RE = re.compile(r"<start>[ \t\r]*\n(.*?)<end>", re.S)
_LINE_RE = re.compile(r"^(.*)\t *(\d+)\s*$")
LINE_EXTRA_TOKENS = 3  # after a token's own text, a line has a tab, a number (one token, or "1" "0") and a newline
TEN_EXTRA_TOKENS = 1  # the cap allows every number to be "1" "0" (SmolLM2 on llama.cpp was cut off without it)
WINDOW_EXTRA_TOKENS = 6  # the <start> and <end> lines of a window
REPLY_MARGIN = 1.2  # max_tokens = this times the reply's tokens, plus PREAMBLE_TOKENS
PREAMBLE_TOKENS = 16
PREAMBLE_LINES = 2  # lines a reply may write before its first <start> (e.g. "Here are my predictions:")


def expected_value(top_logprobs: dict[str, float]) -> float | None:
    """Expected activation at one position: sum v p(v) over the tokens "0".."10", renormalised over those.

    ``top_logprobs`` maps token text -> natural-log probability. Tokens are compared stripped of whitespace, so
    " 7" and "7" both count as 7 (their probabilities add). None when no numeric token is present.
    """
    numeric, exp = _NUMERIC, math.exp
    mass = weighted = 0.0
    for token, logprob in top_logprobs.items():  # once per predicted position of a reply: kept lean
        value = numeric.get(token.strip())
        if value is not None:
            p = exp(logprob)
            mass += p
            weighted += value * p
    if mass <= 0.0:
        return None
    return weighted / mass


def split_ten(top_logprobs: dict[str, float], next_top_logprobs: dict[str, float]) -> dict[str, float]:
    """The number's distribution when its first token is "1": p("1") divided into 1 and 10 by p_next("0")."""
    p_zero_next = sum(math.exp(lp) for token, lp in next_top_logprobs.items() if token.strip() == "0")
    p_one = sum(math.exp(lp) for token, lp in top_logprobs.items() if token.strip() == "1")
    p_ten = sum(math.exp(lp) for token, lp in top_logprobs.items() if token.strip() == "10")
    merged = {token: lp for token, lp in top_logprobs.items() if token.strip() not in ("1", "10")}
    for token, p in (("1", p_one * (1.0 - min(p_zero_next, 1.0))), ("10", p_ten + p_one * p_zero_next)):
        if p > 0.0:
            merged[token] = math.log(p)
    return merged


def simulation_messages(explanation: str, windows: list[list[str]]) -> list[dict[str, str]]:
    """The chat messages asking for predictions on ``windows`` (pinned by tests/test_prompts_golden.py)."""
    return [
        {"role": "system", "content": render(SYSTEM_TEMPLATE)},
        {"role": "user", "content": render(USER_TEMPLATE, explanation=explanation, windows=windows)},
    ]


def reply_tokens(windows: list[list[str]], counter: TokenCounter) -> int:
    """Generated tokens of a reply to ``windows`` in the format asked for: each token line as shown plus its tab,
    number and newline (a token each: tokenizers keep a tab, a newline and a digit apart from the text around
    them), and each window's ``<start>``/``<end>`` lines."""
    need = sum(counter.count(show_token(t)) + LINE_EXTRA_TOKENS for w in windows for t in w)
    return need + WINDOW_EXTRA_TOKENS * len(windows)


def reply_budget(windows: list[list[str]], counter: TokenCounter) -> int:
    """``max_tokens`` for a reply to ``windows``: ``reply_tokens``, plus a token a line for numbers spelled "1" "0"
    by tokenizers that write digits one at a time, with a 20% margin (see the module docstring)."""
    need = reply_tokens(windows, counter) + TEN_EXTRA_TOKENS * sum(len(w) for w in windows)
    return math.ceil(REPLY_MARGIN * need) + PREAMBLE_TOKENS


class ReplyWatch(LineWatch):
    """``stop_when`` for a streamed simulator reply to windows of ``sizes`` tokens: the reason to stop at the first
    line that breaks the format (or once every window is answered), else None. Reads each line once."""

    def __init__(self, sizes: list[int]):
        self.sizes = sizes
        self.window = 0  # the window being answered (or awaited)
        self.lines: int | None = None  # token lines of that window so far; None outside a block
        self.outside = 0  # non-blank lines outside blocks before the first <start>
        self.complete = False  # every window answered: the reason to stop is not an error

    def _line(self, line: str) -> str | None:
        where = f"window {self.window + 1}"
        if self.lines is None:  # outside a block
            if line.rstrip(" \t\r").endswith("<start>"):
                self.lines = 0
            elif line.strip():
                self.outside += 1
                if self.window > 0 or self.outside > PREAMBLE_LINES:
                    return f"off format before {where}'s <start> line: {line[:80]!r}"
            return None
        if "<end>" in line:
            if line.split("<end>")[0].strip() or self.lines != self.sizes[self.window]:
                return f"{where} ended after {self.lines} token lines of {self.sizes[self.window]}"
            self.window, self.lines = self.window + 1, None
            if self.window == len(self.sizes):
                self.complete = True
                return "every window answered"
            return None
        if not line.strip():
            return None
        match = _LINE_RE.match(line)
        if match is None or int(match.group(2)) > MAX_ACTIVATION:
            return f"{where}, line {self.lines + 1} is off format: {line[:80]!r}"
        self.lines += 1
        if self.lines > self.sizes[self.window]:
            return f"{where} has more token lines than its {self.sizes[self.window]} tokens"
        return None


def parse_reply(text: str, sizes: list[int]) -> list[list[tuple[int, int]] | str]:
    """Per window of ``sizes`` tokens: [(integer written, its offset in ``text``), ...] per token, or an error."""
    blocks = list(_BLOCK_RE.finditer(text))
    parsed: list[list[tuple[int, int]] | str] = []
    for i, size in enumerate(sizes):
        if i >= len(blocks):
            parsed.append(f"the reply has {len(blocks)} <start>...<end> blocks; window {i + 1} is missing")
            continue
        parsed.append(_parse_block(blocks[i].group(1), blocks[i].start(1), size))
    return parsed


def _parse_block(block: str, offset: int, size: int) -> list[tuple[int, int]] | str:
    values: list[tuple[int, int]] = []
    for line in block.split("\n"):
        if line.strip():
            match = _LINE_RE.match(line)
            if match is None:
                return f"line {len(values) + 1} does not parse: {line[:80]!r}"
            if int(match.group(2)) > MAX_ACTIVATION:
                return f"line {len(values) + 1} has a value above {MAX_ACTIVATION}: {line[:80]!r}"
            values.append((int(match.group(2)), offset + match.start(2)))
        offset += len(line) + 1
    if len(values) != size:
        return f"expected {size} token lines, got {len(values)}"
    return values


async def in_groups(windows: list[list[str]], step: int, simulate_group: Any,
                    counters: Sequence[str]) -> SimulationResult:
    """``windows`` simulated ``step`` at a time, every group's request at once (``simulate_group(group)`` returns its
    predictions, errors and details); the groups joined in order, the ``counters`` of their details summed, and
    ``requests`` the number of groups. An exception (BudgetExceeded, UsageError, a bug) is raised after every request
    has finished."""
    groups = [windows[i : i + step] for i in range(0, len(windows), step)]
    outcomes = await asyncio.gather(*(simulate_group(g) for g in groups), return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
    predictions: list[list[float] | None] = []
    errors: list[str | None] = []
    details: dict[str, Any] = dict.fromkeys(counters, 0)
    for group_predictions, group_errors, group_details in outcomes:  # type: ignore[misc]
        predictions += group_predictions
        errors += group_errors
        for key, value in group_details.items():
            details[key] += value
    details["requests"] = len(groups)
    return SimulationResult(predictions=predictions, errors=errors, details=details)


class LLMSimulator:
    """Simulator (autointerp.scoring.simulator) backed by any ``ChatModel``."""

    is_baseline = False

    def __init__(self, client: ChatModel, profile: ModelProfile, windows_per_request: int = 4, top_logprobs: int = 15,
                 counter: TokenCounter | None = None, fmt: str | None = None):
        assert windows_per_request >= 1 and 1 <= top_logprobs <= 20
        self.format = fmt or profile.simulator_format  # "full" or "compact" (the reply format)
        assert self.format in ("full", "compact"), self.format
        self.client = client
        self.counter = counter or TokenCounter()  # sizes max_tokens (reply_budget)
        self.profile = profile
        self.name = client.name
        self.windows_per_request = windows_per_request
        self.top_logprobs = top_logprobs
        self.method = "logprobs" if profile.supports_logprobs else "parse"

    def config(self) -> dict[str, Any]:
        templates = TEMPLATES[self.format]
        config = llm_simulator_config(self, self.top_logprobs if self.method == "logprobs" else None, *templates)
        return {**config, "format": self.format}

    def messages(self, explanation: str, windows: list[list[str]]) -> list[dict[str, str]]:
        """The chat messages of one request, in this simulator's format."""
        compact = self.format == "compact"
        return (cf.compact_messages if compact else simulation_messages)(explanation, windows)

    def estimate(self, windows: list[list[str]], counter: TokenCounter, explanation: str) -> Estimate:
        """Calls and tokens that simulating ``windows`` for one explanation takes: the prompts as rendered, and
        replies that echo each token line with a number (``reply_tokens``), or compact ones (a line per window)."""
        step = self.windows_per_request
        groups = [windows[i : i + step] for i in range(0, len(windows), step)]
        tokens_in = sum(counter.count_messages(self.messages(explanation, g)) for g in groups)
        if self.format == "compact":
            tokens_out = sum(cf.compact_reply_tokens(g, counter) for g in groups)
        else:
            tokens_out = reply_tokens(windows, counter)
        return Estimate(len(groups), tokens_in, tokens_out, counter.method)

    async def simulate(self, explanation: str, windows: list[list[str]]) -> SimulationResult:
        result = await in_groups(windows, self.windows_per_request, lambda g: self._simulate_group(explanation, g),
                                 ("failed_requests", "stopped_replies", "positions_without_numeric_token",
                                  "positions_inside_merged_tokens", "tokens_in", "tokens_out", "cost_usd"))
        result.details["method"] = self.method
        return result

    async def _simulate_group(
        self, explanation: str, windows: list[list[str]]
    ) -> tuple[list[list[float] | None], list[str | None], dict[str, Any]]:
        sizes = [len(window) for window in windows]
        logprobs = self.method == "logprobs"
        compact = self.format == "compact"
        watch = cf.CompactWatch(sizes) if compact else ReplyWatch(sizes)
        extra: dict[str, Any] = {}
        if self.profile.simulator_grammar:  # llama.cpp: the reply held to the format (autointerp.scoring.grammar)
            extra["extra_body"] = {"grammar": compact_grammar(sizes) if compact else full_grammar(windows)}
        try:
            result = await self.client.chat(
                self.messages(explanation, windows),
                purpose="simulate",
                logprobs=logprobs,
                top_logprobs=self.top_logprobs if logprobs else None,
                max_tokens=cf.compact_reply_budget(windows) if compact else reply_budget(windows, self.counter),
                stop_when=watch,
                **extra,
            )
        except LLMError as exc:
            return [None] * len(windows), [f"request failed: {exc}"] * len(windows), {"failed_requests": 1}
        details = {"tokens_in": result.tokens_in, "tokens_out": result.tokens_out, "cost_usd": result.cost_usd,
                   "stopped_replies": int(result.stopped is not None and not watch.complete)}
        if logprobs and not result.logprobs:
            reason = "the endpoint returned no logprobs; set supports_logprobs: false in the model profile"
            return [None] * len(windows), [reason] * len(windows), details
        tokens = result.logprobs.tokens if logprobs and result.logprobs else []
        text = "".join(tokens) if logprobs else result.text
        predictions: list[list[float] | None] = []
        errors: list[str | None] = []
        without_numeric = inside = 0
        starts = _token_starts(tokens)
        for parsed in (cf.parse_compact if compact else parse_reply)(text, sizes):
            if isinstance(parsed, str):
                predictions.append(None)
                errors.append(parsed + _cut_off_note(result))
            elif logprobs:
                offsets = [off for _, off in parsed]
                try:
                    if compact:
                        values, missing, merged = cf.compact_expected_values(result.logprobs or [], starts, offsets)
                        inside += merged
                    else:
                        values, missing = _expected_values(result.logprobs or [], starts, offsets)
                except MalformedLogprobs as exc:
                    predictions.append(None)
                    errors.append(str(exc))
                    continue
                predictions.append(values)
                errors.append(None)
                without_numeric += missing
            else:
                predictions.append([float(value) for value, _ in parsed])
                errors.append(None)
        details["positions_without_numeric_token"] = without_numeric
        details["positions_inside_merged_tokens"] = inside
        return predictions, errors, details


def _token_starts(tokens: list[str]) -> list[int]:
    """Character offset of each generated token in the reply text (once per reply, for every window in it)."""
    starts, position = [], 0
    for token in tokens:
        starts.append(position)
        position += len(token)
    return starts


def _expected_values(tokens: Sequence[TokenLogprob], starts: list[int], offsets: list[int]) -> tuple[list[float], int]:
    """Expected values at the generated tokens covering ``offsets`` (``starts``: ``_token_starts(tokens)``); and how
    many positions had no numeric token."""
    values, missing = [], 0
    for offset in offsets:
        k = bisect.bisect_right(starts, offset) - 1
        token = tokens[k]
        top = token.top_logprobs
        if token.token.strip() == "1" and k + 1 < len(tokens):
            top = split_ten(top, tokens[k + 1].top_logprobs)
        value = expected_value(top)
        if value is None:
            missing += 1
        values.append(0.0 if value is None else value)
    return values, missing


def _cut_off_note(result: ChatResult) -> str:
    if result.stopped is not None:
        return f" (the reply was stopped early: {result.stopped})"
    return " (the reply was cut off at max_tokens)" if result.finish_reason == "length" else ""


def llm_simulator_config(sim: Any, top_logprobs: int | None, *templates: str) -> dict[str, Any]:
    """What determines an LLM simulator's predictions (both methods): its profile's identity (not its operational
    settings: ``autointerp.llm.profiles.OPERATIONAL``), method, batching, the logprobs it reads and its prompt files;
    part of the run key."""
    return {
        "simulator": "llm",
        "name": sim.name,
        "profile": sim.profile.identity(),
        "method": sim.method,
        "windows_per_request": sim.windows_per_request,
        "top_logprobs": top_logprobs,
        "prompt_sha256": templates_sha256(*templates),
    }
