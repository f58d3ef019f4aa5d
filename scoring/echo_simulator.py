"""The all-at-once LLM simulator: every position of a window read from one completions request, nothing generated.

    import asyncio
    from autointerp.testing.fake import FakeLLM
    from autointerp.scoring.echo_simulator import EchoSimulator

    fake = FakeLLM()                                          # or LLMClient(profile, "smol", sink)
    simulator = EchoSimulator(fake, fake.profile, windows_per_request=10)
    result = asyncio.run(simulator.simulate('the token "def"', [["def", " f", "(", ")"]]))
    result.predictions        # [[9.45, 0.05, 0.05, 0.05]]

OpenAI's reference simulator (Bills et al. 2023; ``ExplanationNeuronSimulator`` in neuron-explainer) lays the
prompt out so that every token line ends where its number would go, with a placeholder in its place::

    Explanation: <the explanation>
    Activations:
    <start>
    def<TAB>unknown
     f<TAB>unknown
    <end>

and sends it to ``/v1/completions`` with ``echo`` and ``logprobs``: the server returns every prompt token with the
most likely tokens at its position, so the distribution at each placeholder is what the model would have written
after that tab. The prediction is the expected value over the tokens "0".."10", renormalised over those
(``expected_value``, as the generate simulator). One request per ``windows_per_request`` windows; the windows' block
layout is the reference's ``format_sequences_for_simulation`` (pinned by tests/test_echo_simulator.py on cases
recorded from the reference code); the prose and the example around it are ours (``prompts/simulator_echo.j2``).

Choices where the reference is silent or does not fit every server (each recorded in ``details``):

- Nothing generated. vLLM and OpenAI return the prompt alone with ``max_tokens = 0``; llama-cpp-python reads 0 as
  "no limit", but takes a llama.cpp grammar that allows only the empty string (``grammar: root ::= ""``), after
  which the end of text is the one token it may sample, and it ends with 0 completion tokens. The probe below finds
  out which the endpoint does: the grammar (asked with ``max_tokens = 1``, so a server that ignores it generates one
  token at most), else ``max_tokens = 0`` (asked once with a stop at the first newline, in case the server reads 0
  as "no limit"), else one generated token, ignored (``details["generation"]``: grammar, max_tokens_0, one_token).
- Alignment: with echo, entry i of ``top_logprobs`` should be the distribution that predicted token i. llama-cpp-python
  shifts it by one for models without a BOS token (entry i predicts token i + 1). The simulator finds out once, with
  the probe below: the echoed tokens of a counting sequence are likelier under the right alignment
  (``autointerp.llm.check.echo_shift``; ``details["echo_shift"]``).
- A placeholder that does not start a token of the simulator's tokenizer (it merged with the tab) has no distribution
  of its own: its prediction is 0, counted in ``details["positions_unaligned"]``; a position whose alternatives hold
  no number gets 0, counted in ``positions_without_numeric_token`` (docs/methods.md §2).
- "10" as two tokens (tokenizers that write digits one at a time: SmolLM2, Llama 2, Qwen, Gemma): the position after
  the tab only sees "1", so 1 and 10 could not be told apart. The same probe (one echo request of about 50 tokens,
  once per simulator) shows how the endpoint tokenizes "10"; when it splits it, the prompt uses the scale 0..9 and
  the expected values are multiplied by 10/9 (``details["scale_top"]``). Pearson correlation does not change under
  that rescaling.
"""

from __future__ import annotations

import asyncio
from typing import Any

from autointerp.llm.check import echo_shift
from autointerp.llm.client import ChatModel, CompletionResult, LLMError
from autointerp.llm.profiles import ModelProfile
from autointerp.llm.tokens import Estimate, TokenCounter
from autointerp.prompts.render import render, show_token
from autointerp.scoring.llm_simulator import MAX_ACTIVATION, expected_value, in_groups, llm_simulator_config
from autointerp.scoring.simulator import SimulationResult

TEMPLATE = "simulator_echo.j2"
PLACEHOLDER = "unknown"  # the reference's UNKNOWN_ACTIVATION_STRING
_PROBE = "1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16\nx\t10\n"
_NOTHING = {"grammar": 'root ::= ""'}  # llama.cpp's grammar syntax: only the end of text may follow the prompt
GENERATION = {  # how a request asks for no generated token, by what the probe found the endpoint honours
    "grammar": {"max_tokens": 1, "extra_body": _NOTHING},
    "max_tokens_0": {"max_tokens": 0},
    "one_token": {"max_tokens": 1},
}


def format_windows(windows: list[list[str]], show=show_token) -> tuple[str, list[list[int]]]:
    """The windows as the reference lays them out (``"\\n<start>\\n"``, ``token<TAB>unknown`` lines joined by
    newlines, ``"\\n<end>\\n<start>\\n"`` between windows, ``"\\n<end>\\n"`` last), and per window the character
    offset of each token's placeholder in that text."""
    parts: list[str] = ["\n<start>\n"]
    length = len(parts[0])
    offsets: list[list[int]] = []
    for w, window in enumerate(windows):
        if w:
            parts.append("\n<end>\n<start>\n")
            length += len(parts[-1])
        window_offsets = []
        for t, token in enumerate(window):
            line = ("\n" if t else "") + show(token) + "\t"
            parts += [line, PLACEHOLDER]
            window_offsets.append(length + len(line))
            length += len(line) + len(PLACEHOLDER)
        offsets.append(window_offsets)
    parts.append("\n<end>\n")
    return "".join(parts), offsets


def echo_prompt(explanation: str, windows: list[list[str]], top: int = MAX_ACTIVATION) -> tuple[str, list[list[int]]]:
    """The whole prompt and the placeholder offsets in it (pinned by tests/test_prompts_golden.py)."""
    head = render(TEMPLATE, explanation=" ".join(explanation.split()), top=top).rstrip("\n")
    body, offsets = format_windows(windows)
    return head + body, [[len(head) + o for o in window] for window in offsets]


def read_positions(result: CompletionResult, offsets: list[list[int]], top: int = MAX_ACTIVATION, shift: int = 0
                   ) -> tuple[list[list[float] | None], list[str | None], dict[str, Any]]:
    """Expected values at the placeholders ``offsets`` of an echoed completion, reading the distribution of a token
    at ``top_logprobs[k - shift]`` (see the module doc); values on the scale 0..``top`` are mapped to 0..10."""
    windows = len(offsets)
    tokens, tops = result.tokens, result.top_logprobs
    if not tokens or tops is None or not any(tops[1:]):
        reason = ("the endpoint returned no echoed prompt logprobs; it does not serve the all-at-once simulator: set "
                  'simulator_method = "generate" in the model profile')
        return [None] * windows, [reason] * windows, {}
    starts = result.text_offset
    if starts is None or len(starts) != len(tokens):
        starts, position = [], 0
        for token in tokens:
            starts.append(position)
            position += len(token)
    index: dict[int, int] = {}
    for k, start in enumerate(starts):
        index.setdefault(start, k)
    scale = MAX_ACTIVATION / top
    predictions: list[list[float] | None] = []
    unaligned = missing = 0
    for window in offsets:
        values = []
        for offset in window:
            k = index.get(offset)
            dist = tops[k - shift] if k is not None and 0 <= k - shift < len(tops) else None
            value = expected_value(dist or {})
            if k is None:
                unaligned += 1
            elif value is None:
                missing += 1
            values.append(0.0 if value is None else min(float(MAX_ACTIVATION), value * scale))
        predictions.append(values)
    return predictions, [None] * windows, {"positions_unaligned": unaligned, "positions_without_numeric_token": missing}


class EchoSimulator:
    """Simulator (autointerp.scoring.simulator) reading echoed prompt logprobs from ``ChatModel.complete``."""

    is_baseline = False
    method = "all_at_once"

    def __init__(self, client: ChatModel, profile: ModelProfile, windows_per_request: int = 10,
                 top_logprobs: int = 15):
        assert windows_per_request >= 1 and 1 <= top_logprobs <= 20
        self.client = client
        self.profile = profile
        self.name = client.name
        self.windows_per_request = windows_per_request
        self.top_logprobs = top_logprobs
        self._probed: tuple[int, int, str] | None = None  # (scale top: 10, or 9 when "10" is two tokens; echo
        # shift; how to ask for nothing generated: a key of GENERATION)
        self._probe_lock: asyncio.Lock | None = None

    def config(self) -> dict[str, Any]:
        return llm_simulator_config(self, self.top_logprobs, TEMPLATE)

    def estimate(self, windows: list[list[str]], counter: TokenCounter, explanation: str) -> Estimate:
        """Calls and tokens that simulating ``windows`` for one explanation takes (at most one generated token a
        request: none once the probe has found how to ask for none)."""
        step = self.windows_per_request
        groups = [windows[i : i + step] for i in range(0, len(windows), step)]
        tokens_in = sum(counter.count(echo_prompt(explanation, g)[0]) for g in groups)
        return Estimate(len(groups), tokens_in, len(groups), counter.method)

    async def probe(self) -> tuple[int, int, str]:
        """(10, or 9 when the endpoint writes "10" as two tokens; the echo shift; the ``GENERATION`` key), asked once:
        one short echo request, and one more of a single token when the endpoint ignores the grammar."""
        if self._probe_lock is None:
            self._probe_lock = asyncio.Lock()
        async with self._probe_lock:
            if self._probed is None:
                reply = await self.client.complete(_PROBE, purpose="simulate-probe", echo=True, logprobs=5,
                                                   **GENERATION["grammar"])
                tokens = reply.tokens or []
                tab = max((i for i, t in enumerate(tokens) if t.endswith("\t")), default=len(tokens))
                whole = tab + 1 < len(tokens) and tokens[tab + 1].strip() == "10"
                shift = echo_shift(tokens, reply.top_logprobs or []) if tokens else 0
                generation = "grammar" if reply.tokens_out == 0 else await self._zero_honoured()
                self._probed = (MAX_ACTIVATION if whole else MAX_ACTIVATION - 1, shift, generation)
        return self._probed

    async def _zero_honoured(self) -> str:
        """"max_tokens_0" when a request with ``max_tokens = 0`` comes back with nothing generated, else "one_token"
        (stopped at the first newline: a server that reads 0 as "no limit" writes a line at most)."""
        try:
            reply = await self.client.complete("1, 2, 3,", purpose="simulate-probe", max_tokens=0, stop=["\n"])
        except LLMError:
            return "one_token"
        return "max_tokens_0" if reply.tokens_out == 0 else "one_token"

    async def simulate(self, explanation: str, windows: list[list[str]]) -> SimulationResult:
        try:
            top, shift, generation = await self.probe()
        except LLMError as exc:
            reason = f"request failed: {exc}"
            return SimulationResult([None] * len(windows), [reason] * len(windows),
                                    {"method": self.method, "requests": 1, "failed_requests": 1})
        result = await in_groups(windows, self.windows_per_request,
                                 lambda g: self._simulate_group(explanation, g, top, shift, generation),
                                 ("failed_requests", "positions_without_numeric_token", "positions_unaligned",
                                  "tokens_in", "tokens_out", "cost_usd"))
        result.details.update(method=self.method, scale_top=top, echo_shift=shift, generation=generation)
        return result

    async def _simulate_group(self, explanation: str, windows: list[list[str]], top: int, shift: int,
                              generation: str):
        prompt, offsets = echo_prompt(explanation, windows, top)
        try:
            result = await self.client.complete(prompt, purpose="simulate", echo=True, logprobs=self.top_logprobs,
                                                **GENERATION[generation])
        except LLMError as exc:
            return [None] * len(windows), [f"request failed: {exc}"] * len(windows), {"failed_requests": 1}
        predictions, errors, details = read_positions(result, offsets, top, shift)
        details.update(tokens_in=result.tokens_in, tokens_out=result.tokens_out, cost_usd=result.cost_usd)
        return predictions, errors, details
