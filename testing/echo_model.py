"""The legacy ``/v1/completions`` endpoint of the test server: ``echo`` with ``logprobs``, as llama.cpp and vLLM serve it.

    from autointerp.testing.echo_model import EchoModel
    from autointerp.testing.server import FakeOpenAIServer
    with FakeOpenAIServer(completion_handler=EchoModel(split_digits=True, shift=1, grammars=True, zero_is_unlimited=True)) as srv:  # llama.cpp-like
        ...

The wire format is OpenAI's legacy one, which both servers keep: ``choices[0].text`` (the prompt, then the
generated text, with ``echo``) and ``choices[0].logprobs`` = ``{tokens, text_offset, token_logprobs,
top_logprobs}``, one entry per token, ``top_logprobs[i]`` a dict token -> logprob of the ``logprobs`` most likely
tokens at position i and None for the first token. What the servers do (read in their code, and checked against a
real llama.cpp server by ``tests/test_real_llamacpp.py``):

- vLLM: ``echo`` with ``logprobs = N`` turns on ``prompt_logprobs = N``; ``max_tokens = 0`` returns the prompt alone
  (nothing generated). ``top_logprobs[i]`` is the distribution that predicted token i. ``--max-logprobs`` (default 20)
  caps N.
- llama-cpp-python: needs ``logits_all`` (its server's default); ``max_tokens = 0`` means *no limit*; a llama.cpp
  ``grammar`` field that allows only the empty string (``root ::= ""``) makes it generate nothing. For a model whose tokenizer adds no BOS token (SmolLM2), ``top_logprobs[i]`` is
  the distribution that predicts token i + 1: the list is shifted by one. Each ``top_logprobs[i]`` also holds token i
  itself. It serves one request at a time.

``EchoModel`` (the default handler) plays a deterministic simulator over such prompts: after a tab inside a
``<start> ... <end>`` block, it predicts a high value when the token of the line (stripped, lower-cased) is quoted in
the last line mentioning an explanation before the block, else 0. ``split_digits`` tokenizes numbers one digit at a
time (as SmolLM2, Llama 2 and Qwen do), ``shift = 1`` shifts the logprobs as llama-cpp-python does without BOS;
``grammars`` honours the empty grammar and ``zero_is_unlimited`` reads ``max_tokens = 0`` as llama-cpp-python does.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field
from typing import Any

_WORD_RE = r"[^\W\d]+|\s|[^\w\s]+"
_TOKEN_RE = re.compile(r"\d+|" + _WORD_RE)
_DIGIT_TOKEN_RE = re.compile(r"\d|" + _WORD_RE)
_QUOTED_RE = re.compile(r"[\"'\u201c\u2018]([^\"'\u201d\u2019]+)[\"'\u201d\u2019]")
_SCALE_RE = re.compile(r"\b0 (?:to|and|-|through) (\d+)\b")


@dataclass(frozen=True)
class TextReply:
    """A text completion as the server answers it: the tokens (prompt ones first when echoed), where each starts in
    ``text``, the logprob of each and the top alternatives at each (None: not given)."""

    text: str
    tokens: list[str] = field(default_factory=list)
    text_offset: list[int] = field(default_factory=list)
    token_logprobs: list[float | None] = field(default_factory=list)
    top_logprobs: list[dict[str, float] | None] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str = "length"


def text_completion_dict(reply: TextReply, request: dict[str, Any]) -> dict[str, Any]:
    """The ``/v1/completions`` response JSON for ``reply`` (logprobs only when the request asks for them)."""
    logprobs = None
    if request.get("logprobs") is not None:
        logprobs = {"tokens": reply.tokens, "text_offset": reply.text_offset,
                    "token_logprobs": reply.token_logprobs, "top_logprobs": reply.top_logprobs}
    return {
        "id": "cmpl-fake",
        "object": "text_completion",
        "created": int(time.time()),
        "model": request.get("model", "fake-model"),
        "choices": [{"text": reply.text, "index": 0, "logprobs": logprobs, "finish_reason": reply.finish_reason}],
        "usage": {"prompt_tokens": reply.prompt_tokens, "completion_tokens": reply.completion_tokens,
                  "total_tokens": reply.prompt_tokens + reply.completion_tokens},
    }


class EchoModel:
    """The default ``/v1/completions`` handler: a deterministic simulator that reads its prompt (see module doc)."""

    high = {"10": math.log(0.9), "9": math.log(0.05), "0": math.log(0.05)}
    low = {"0": math.log(0.95), "1": math.log(0.05)}

    def __init__(self, *, split_digits: bool = False, shift: int = 0, grammars: bool = False,
                 zero_is_unlimited: bool = False):
        assert shift in (0, 1)
        self.split_digits = split_digits
        self.shift = shift
        self.grammars = grammars  # honours llama.cpp's ``grammar`` field: 'root ::= ""' generates nothing
        self.zero_is_unlimited = zero_is_unlimited  # max_tokens 0 generates (llama-cpp-python), not nothing (vLLM)

    def tokenize(self, text: str) -> list[str]:
        return (_DIGIT_TOKEN_RE if self.split_digits else _TOKEN_RE).findall(text)

    def __call__(self, request: dict[str, Any]) -> TextReply:
        prompt = request.get("prompt") or ""
        if isinstance(prompt, list):
            prompt = prompt[0] if prompt else ""
        tokens = self.tokenize(prompt)
        n_top = int(request.get("logprobs") or 0)
        dists = self._predictions(prompt, tokens)  # dists[i]: what the model predicts at position i
        generate = int(request.get("max_tokens") if request.get("max_tokens") is not None else 16) > 0 \
            or self.zero_is_unlimited
        if self.grammars and request.get("grammar") == 'root ::= ""':
            generate = False
        generated = ["\n"] if generate else []
        dists.append({"\n": 0.0})  # the prediction after the prompt
        echo = bool(request.get("echo"))
        shown = (tokens if echo else []) + generated
        first = 0 if echo else len(tokens)
        offsets, position = [], 0 if echo else len(prompt)
        for token in shown:
            offsets.append(position)
            position += len(token)
        top: list[dict[str, float] | None] = []
        token_logprobs: list[float | None] = []
        for j, token in enumerate(shown):
            i = first + j
            dist = dists[min(i + self.shift, len(dists) - 1)]
            token_logprobs.append(dist.get(token, -20.0))
            ranked = sorted(dist.items(), key=lambda item: -item[1])[:n_top]
            top.append(dict(ranked))
        if echo and shown:
            top[0], token_logprobs[0] = None, None
        text = (prompt if echo else "") + "".join(generated)
        return TextReply(text=text, tokens=shown, text_offset=offsets, token_logprobs=token_logprobs,
                         top_logprobs=top, prompt_tokens=len(tokens), completion_tokens=len(generated))

    def _predictions(self, prompt: str, tokens: list[str]) -> list[dict[str, float]]:
        """Per prompt token, the distribution that predicts it: a number's after a tab in a block, else certainty."""
        dists: list[dict[str, float]] = []
        quoted: set[str] = set()
        top_value = 10
        in_block, line = False, ""
        for token in tokens:
            dist = {token: 0.0}
            if in_block and line.endswith("\t"):
                dist = self._value(line[:-1].strip().lower() in quoted, top_value)
            dists.append(dist)
            line = "" if token == "\n" else line + token
            if line == "<start>":
                in_block = True
            elif line == "<end>":
                in_block = False
            if not in_block and token != "\n" and "xplanation" in line:
                quoted = {q.strip().lower() for q in _QUOTED_RE.findall(line)}
            scale = _SCALE_RE.search(line)
            if scale and not in_block:
                top_value = int(scale.group(1))
        return dists

    def _value(self, high: bool, top_value: int) -> dict[str, float]:
        if not high:
            return dict(self.low)
        values = {str(top_value): math.log(0.9), str(top_value - 1): math.log(0.05), "0": math.log(0.05)}
        if not self.split_digits:
            return values
        out: dict[str, float] = {}
        for value, logprob in values.items():  # a digit-splitting tokenizer only predicts the first digit
            digit = value[0]
            out[digit] = math.log(math.exp(out[digit]) + math.exp(logprob)) if digit in out else logprob
        return out
