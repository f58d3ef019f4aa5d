"""The chat-completion bodies the fake models send, one encoder for both (``autointerp.testing.server`` over HTTP,
``autointerp.testing.fake`` in process): ``completion_dict`` (a ``Reply`` as the response JSON of the current
chat-completions API, logprobs included), ``completion_json`` (the same, encoded fast) and ``stream_chunks`` (the
same as the ``chat.completion.chunk`` objects of a stream)."""

from __future__ import annotations

import json
import math
import re
import time
import uuid
from typing import Any

from autointerp.llm.tokens import MESSAGE_OVERHEAD_TOKENS, message_text
from autointerp.testing.outcomes import Reply

_TOKEN_RE = re.compile(r"\d+|[^\W\d]+|\s|[^\w\s]+")


def estimate_tokens(text: str) -> int:
    """About four characters per token: the server's stand-in for a tokenizer in ``usage``."""
    return math.ceil(len(text) / 4)


def completion_dict(reply: Reply | str, request: dict[str, Any]) -> dict[str, Any]:
    """The chat-completion response JSON for ``reply`` to ``request`` (logprobs only when the request asks)."""
    reply = Reply(text=reply) if isinstance(reply, str) else reply
    tokens = list(reply.tokens) if reply.tokens is not None else [(t, {t: 0.0}) for t in _TOKEN_RE.findall(reply.text)]
    text = reply.text or "".join(token for token, _ in tokens)
    message: dict[str, Any] = {"role": "assistant", "content": text or None, "refusal": None}
    if reply.tool_calls:
        message["tool_calls"] = [
            {
                "id": f"call_{i}",
                "type": "function",
                "function": {"name": name, "arguments": args if isinstance(args, str) else json.dumps(args)},
            }
            for i, (name, args) in enumerate(reply.tool_calls)
        ]
    logprobs = None
    if request.get("logprobs") and text:
        n_top = int(request.get("top_logprobs") or 0)
        cache: dict[tuple, dict[str, Any]] = {}  # a simulation reply repeats its (token, alternatives) pairs
        content = []
        for token, top in tokens:
            key = (token, *top.items())
            entry = cache.get(key)
            if entry is None:
                entry = cache[key] = _token_logprob(token, top, n_top)
            content.append(entry)
        logprobs = {"content": content, "refusal": None}
    prompt_tokens = sum(estimate_tokens(message_text(m)) + MESSAGE_OVERHEAD_TOKENS for m in request.get("messages", []))
    completion_tokens = len(tokens) + sum(estimate_tokens(str(args)) for _, args in reply.tool_calls)
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": request.get("model", "fake-model"),
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": logprobs,
                "finish_reason": reply.finish_reason or ("tool_calls" if reply.tool_calls else "stop"),
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def completion_json(reply: Reply | str, request: dict[str, Any]) -> str:
    """``json.dumps(completion_dict(reply, request))``, faster for long replies with logprobs: each distinct
    per-token entry is encoded once and the content list is joined from those pieces. (A simulation reply has
    thousands of tokens; encoding them one by one made the server a bottleneck of benchmarks/bench_llm.py.)"""
    body = completion_dict(reply, request)
    logprobs = body["choices"][0]["logprobs"]
    if not logprobs or not logprobs["content"]:
        return json.dumps(body)
    pieces: dict[int, str] = {}  # id(entry) -> its JSON; completion_dict shares one dict per distinct entry
    content = ",".join(pieces.get(id(e)) or pieces.setdefault(id(e), json.dumps(e)) for e in logprobs["content"])
    placeholder = f"logprobs-content-{uuid.uuid4().hex}"
    logprobs["content"] = placeholder
    return json.dumps(body).replace(f'"{placeholder}"', f"[{content}]", 1)


def stream_chunks(body: dict[str, Any], include_usage: bool = False) -> list[dict[str, Any]]:
    """A chat completion ``body`` as the ``chat.completion.chunk`` dicts of a stream: the role, one chunk per token
    (its logprobs entry with it), the tool calls, the finish reason, then usage when asked. Each token chunk carries
    ``"tokens": 1`` (extra, ignored by clients) so the server can count what it wrote."""
    choice = body["choices"][0]
    message, logprobs = choice["message"], (choice.get("logprobs") or {}).get("content")
    base = {"id": body["id"], "object": "chat.completion.chunk", "created": body["created"], "model": body["model"]}

    def chunk(delta: dict[str, Any], **extra: Any) -> dict[str, Any]:
        return {**base, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": None, **extra}]}

    chunks = [chunk({"role": "assistant", "content": ""})]
    if logprobs:
        chunks += [{**chunk({"content": e["token"]}, logprobs={"content": [e]}), "tokens": 1} for e in logprobs]
    elif message.get("content"):
        chunks += [{**chunk({"content": t}), "tokens": 1} for t in _TOKEN_RE.findall(message["content"])]
    for i, call in enumerate(message.get("tool_calls") or []):
        chunks.append(chunk({"tool_calls": [{"index": i, **call}]}))
    chunks.append(chunk({}, finish_reason=choice["finish_reason"]))
    if include_usage:
        chunks.append({**base, "choices": [], "usage": body["usage"]})
    return chunks


# Alternatives that fill a token's ``top_logprobs`` up to the count asked, below the ones the reply gives: real
# endpoints (OpenAI, vLLM, llama.cpp) return that many for every generated token, the copied text of a simulation
# reply included, so a client reads (and a benchmark times) replies of their real size. None is a number "0".."10",
# so no expected activation changes.
FILLER_TOKENS = (" the", ",", ".", " a", " of", " and", " to", " in", "\n", " is", "s", " that", " for", "-", " (",
                 ")", ":", " =", "_", "'")


def _token_logprob(token: str, top: dict[str, float], n_top: int) -> dict[str, Any]:
    ranked = sorted(top.items(), key=lambda item: -item[1])[:n_top]
    if len(ranked) < n_top:
        floor = min((lp for _, lp in ranked), default=0.0) - 8.0
        have = {t for t, _ in ranked}
        fillers = [t for t in FILLER_TOKENS if t not in have][: n_top - len(ranked)]
        ranked += [(t, floor - 0.5 * i) for i, t in enumerate(fillers)]
    return {
        "token": token,
        "logprob": top.get(token, 0.0),
        "bytes": list(token.encode()),
        "top_logprobs": [{"token": t, "logprob": lp, "bytes": list(t.encode())} for t, lp in ranked],
    }
