"""Streamed replies, assembled into the body of a plain chat completion, and stopped early on the caller's word.

    from autointerp.llm.streaming import StreamAssembler
    assembler = StreamAssembler(stop_when)          # stop_when(text so far) -> reason to stop, or None
    for chunk in chunks:                            # chat.completion.chunk objects, as dicts
        if assembler.add(chunk):                    # True: stop_when gave a reason; close the stream now
            break
    body = assembler.body()                         # {"choices": [{"message": ..., "logprobs": ...}], ...}

``stop_when`` is asked each time the reply gains a complete line (and once at the end), with the whole text so far;
when it answers a reason, the text is cut just after the line that broke the rule, and the body gets
``autointerp_stopped`` (that reason) and ``finish_reason`` "stopped". A stopped stream has no ``usage`` from the
server: its completion tokens are the number of streamed content pieces (servers send one token per chunk), or the
logprob entries when there are any.

``truncate_body`` does the same to a whole reply, for transports that cannot stream (the in-process fake): the
reply is cut where a stream would have been stopped, and its usage is scaled down to the part kept.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from autointerp.llm.tokens import TokenCounter

StopCheck = Callable[[str], "str | None"]


class StreamAssembler:
    """Collects ``chat.completion.chunk`` dicts into a completion body; see the module docstring."""

    def __init__(self, stop_when: StopCheck | None):
        self.stop_when = stop_when
        self.text = ""
        self.pieces = 0  # content chunks received
        self.logprobs: list[dict[str, Any]] = []
        self.tool_calls: dict[int, dict[str, Any]] = {}
        self.finish_reason: str | None = None
        self.usage: dict[str, Any] | None = None
        self.model: str | None = None
        self.stopped: str | None = None
        self.chunks = 0  # chunks that held choices or usage: 0 means the stream was not a chat completion
        self._checked = 0  # text up to here has been shown to stop_when

    def add(self, chunk: dict[str, Any]) -> bool:
        """Take one chunk; True when the stream should be closed now (``stop_when`` gave a reason)."""
        self.chunks += bool(chunk.get("choices") or chunk.get("usage"))
        self.model = chunk.get("model") or self.model
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        for choice in chunk.get("choices") or []:
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            if delta.get("content"):
                self.text += delta["content"]
                self.pieces += 1
            for call in delta.get("tool_calls") or []:
                slot = self.tool_calls.setdefault(call.get("index", 0), {"id": "", "name": "", "arguments": ""})
                slot["id"] = call.get("id") or slot["id"]
                function = call.get("function") or {}
                slot["name"] += function.get("name") or ""
                slot["arguments"] += function.get("arguments") or ""
            self.logprobs += (choice.get("logprobs") or {}).get("content") or []
            self.finish_reason = choice.get("finish_reason") or self.finish_reason
        if self.stop_when is not None and "\n" in self.text[self._checked :]:
            return self._check(self.text.rindex("\n") + 1)
        return False

    def finish(self) -> None:
        """The stream ended by itself: show ``stop_when`` the last, unterminated line too."""
        if self.stop_when is not None and self.stopped is None and self._checked < len(self.text):
            self._check(len(self.text))

    def _check(self, end: int) -> bool:
        self._checked = end
        reason = self.stop_when(self.text[:end])
        if reason is None:
            return False
        self.stopped = reason
        self.text = self.text[:end]
        self.logprobs = _cut_logprobs(self.logprobs, end)
        self.finish_reason = "stopped"
        return True

    def body(self) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": self.text or None}
        if self.tool_calls:
            message["tool_calls"] = [
                {"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}}
                for _, c in sorted(self.tool_calls.items())
            ]
        choice = {"index": 0, "message": message, "finish_reason": self.finish_reason,
                  "logprobs": {"content": self.logprobs} if self.logprobs else None}
        body: dict[str, Any] = {"object": "chat.completion", "model": self.model, "choices": [choice]}
        if self.stopped is not None:
            body["autointerp_stopped"] = self.stopped
            generated = len(self.logprobs) or self.pieces
            prompt = (self.usage or {}).get("prompt_tokens")
            body["usage"] = {"prompt_tokens": prompt, "completion_tokens": generated}
        elif self.usage:
            body["usage"] = self.usage
        return body


def _cut_logprobs(entries: list[dict[str, Any]], end: int) -> list[dict[str, Any]]:
    """The logprob entries whose tokens start before character ``end`` of the reply."""
    kept, position = [], 0
    for entry in entries:
        if position >= end:
            break
        kept.append(entry)
        position += len(entry.get("token") or "")
    return kept


def truncate_body(body: dict[str, Any], stop_when: StopCheck, counter: TokenCounter) -> dict[str, Any]:
    """``body`` cut where a stream of it would have been stopped (see the module docstring)."""
    try:
        choice = body["choices"][0]
        text = choice["message"].get("content") or ""
    except (KeyError, IndexError, TypeError, AttributeError):
        return body  # not a chat completion: the caller's parsing says so
    end = 0
    while True:
        newline = text.find("\n", end)
        end = len(text) if newline < 0 else newline + 1
        reason = stop_when(text[:end])
        if reason is not None or end >= len(text):
            break
    if reason is None:
        return body
    entries = (choice.get("logprobs") or {}).get("content") or []
    kept = _cut_logprobs(entries, end)
    usage = dict(body.get("usage") or {})
    full = usage.get("completion_tokens")
    if entries:
        usage["completion_tokens"] = len(kept)
    elif full and text:
        usage["completion_tokens"] = math.ceil(full * end / len(text))
    else:
        usage["completion_tokens"] = counter.count(text[:end])
    message = {**choice["message"], "content": text[:end] or None}
    logprobs = {**choice["logprobs"], "content": kept} if entries else choice.get("logprobs")
    new_choice = {**choice, "message": message, "logprobs": logprobs, "finish_reason": "stopped"}
    return {**body, "choices": [new_choice, *body["choices"][1:]], "usage": usage, "autointerp_stopped": reason}
