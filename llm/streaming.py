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

``truncate_body`` does the same to a whole reply, for transports that cannot stream (the in-process fake, an endpoint
that answers a streamed request with one JSON body): the reply is cut where a stream would have been stopped, and its
usage is scaled down to the part kept.

``EventReader`` reads the server-sent events in whatever pieces the socket gives (tens of kilobytes when the server
is ahead of the client), and parses each piece's events at once: the ``data:`` lines found by one regular expression
and decoded as one JSON array (``wire.loads``), less the per-token ``bytes`` arrays (``wire.strip_bytes_fields``),
where a line iterator and a parse per chunk cost several times more.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

from autointerp.llm.tokens import TokenCounter
from autointerp.llm.wire import loads, strip_bytes_fields

StopCheck = Callable[[str], "str | None"]


class LineWatch:
    """A ``StopCheck`` that reads a reply one complete line at a time, each line once: subclasses say, in ``_line``,
    the reason to stop at a line (None: go on). Called with the reply so far, it reads only the lines that ended
    since the last call; once it gave a reason, it reads nothing more."""

    _read = 0  # the reply's characters read so far

    def __call__(self, text: str) -> str | None:
        end = text.rfind("\n") + 1
        for line in text[self._read : end].split("\n")[:-1]:
            reason = self._line(line)
            if reason is not None:
                self._read = len(text)
                return reason
        self._read = end
        return None

    def _line(self, line: str) -> str | None:
        raise NotImplementedError


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
        self.error: Any = None  # the ``error`` of an error event, which ends the stream
        self.chunks = 0  # chunks that held choices or usage: 0 means the stream was not a chat completion
        self._checked = 0  # text up to here has been shown to stop_when

    def add(self, chunk: dict[str, Any]) -> bool:
        """Take one chunk; True when the stream should be closed now (``stop_when`` gave a reason)."""
        return self.add_many((chunk,))

    def add_many(self, chunks: Any) -> bool:
        """Take chunks in order; True as soon as one makes ``stop_when`` give a reason (the rest are dropped).
        ``stop_when`` is still asked at every line's end, so the cut is where a chunk at a time would have put it."""
        pending: list[str] = []  # content not yet in self.text: joined when a line ends, or at the end
        logprobs = self.logprobs
        for chunk in chunks:
            if not isinstance(chunk, dict):
                continue
            if chunk.get("error"):  # an error event: the endpoint gave up on the request
                self.error = chunk["error"]
                break
            choices = chunk.get("choices")
            usage = chunk.get("usage")
            self.chunks += bool(choices or usage)
            if usage:
                self.usage = usage
            if chunk.get("model"):
                self.model = chunk["model"]
            line_ended = False
            for choice in choices or ():
                if choice.get("index", 0) != 0:
                    continue
                delta = choice.get("delta") or {}
                content = delta.get("content")
                if content:
                    pending.append(content)
                    self.pieces += 1
                    line_ended = "\n" in content
                if delta.get("tool_calls"):
                    self._add_tool_calls(delta["tool_calls"])
                entries = (choice.get("logprobs") or {}).get("content")
                if entries:
                    logprobs += entries
                if choice.get("finish_reason"):
                    self.finish_reason = choice["finish_reason"]
            if line_ended and self.stop_when is not None:
                self.text += "".join(pending)
                pending.clear()
                if self._check(self.text.rindex("\n") + 1):
                    return True
        if pending:
            self.text += "".join(pending)
        return self.error is not None

    def _add_tool_calls(self, calls: list[dict[str, Any]]) -> None:
        for call in calls:
            slot = self.tool_calls.setdefault(call.get("index", 0), {"id": "", "name": "", "arguments": ""})
            slot["id"] = call.get("id") or slot["id"]
            function = call.get("function") or {}
            slot["name"] += function.get("name") or ""
            slot["arguments"] += function.get("arguments") or ""

    @property
    def complete(self) -> bool:
        """Whether the reply ended as replies do (a ``finish_reason``), as opposed to being cut off mid-reply."""
        return self.finish_reason is not None

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


_DATA_LINE = re.compile(rb"^data:[ \t]?([^\r\n]*)", re.M)


class EventReader:
    """Server-sent events from the pieces of a response body, parsed a piece at a time (see the module docstring).

        reader = EventReader()
        for piece in pieces:                 # bytes, as they arrive
            chunks = reader.feed(piece)      # the JSON objects of the events completed so far
        chunks = reader.close()              # the last event, when the body did not end with a newline

    ``done``: ``data: [DONE]`` arrived (what came after it is ignored). ``plain``: the body is not an event stream
    but one JSON document (its first byte is ``{``): it is kept whole, in ``body()``, and ``feed`` returns nothing.
    A ``data:`` payload that is not JSON raises ``ValueError`` naming it."""

    def __init__(self) -> None:
        self.done = False
        self.plain: bool | None = None  # None until the body's first non-blank byte is seen
        self.events = 0  # data payloads read
        self._tail = b""
        self._whole: list[bytes] = []
        self.head = b""  # the body's first bytes, to say what it was when it was no event stream

    def feed(self, piece: bytes) -> list[Any]:
        if self.done or not piece:
            return []
        if len(self.head) < 2048:
            self.head += piece[: 2048 - len(self.head)]
        if self.plain is None:
            head = (self._tail + piece).lstrip()
            if not head:
                self._tail += piece
                return []
            self.plain = head[:1] in (b"{", b"[")
        if self.plain:
            self._whole.append(piece)
            return []
        data = self._tail + piece
        blank = data.rfind(b"\n\n")  # cut at an event's end when there is one, else at a line's
        end = blank + 2 if blank >= 0 else data.rfind(b"\n") + 1
        self._tail = data[end:]
        return self._parse(data[:end]) if end else []

    def close(self) -> list[Any]:
        if self.plain:
            return []
        tail, self._tail = self._tail, b""
        return self._parse(tail) if tail.strip() and not self.done else []

    def body(self) -> bytes:
        """The whole body, when it was one JSON document (``plain``)."""
        return self._tail + b"".join(self._whole)

    def _parse(self, block: bytes) -> list[Any]:
        block = strip_bytes_fields(block)
        events = block.count(b"\n\ndata: ") + 1
        if (block.startswith(b"data: ") and block.endswith(b"\n\n") and block.count(b"\n") == 2 * events
                and b"\r" not in block and b"[DONE]" not in block):
            # only "data: {...}\n\n" events, each on one line (every newline is in a separator): one array at once
            try:
                chunks = loads(b"[" + block[6:-2].replace(b"\n\ndata: ", b",") + b"]")
            except ValueError:
                chunks = None  # which event is not JSON: below
            if chunks is not None:
                self.events += events
                return chunks
        payloads = _DATA_LINE.findall(block)
        for i, payload in enumerate(payloads):
            if payload.strip() == b"[DONE]":
                self.done = True
                payloads = payloads[:i]
                break
        payloads = [p for p in payloads if p.strip()]
        self.events += len(payloads)
        if not payloads:
            return []
        try:
            return loads(b"[" + b",".join(payloads) + b"]")
        except ValueError:
            pass
        for payload in payloads:  # which one: its text in the error
            try:
                loads(payload)
            except ValueError:
                raise ValueError(f"{payload[:200]!r}") from None
        raise ValueError("the events do not join into JSON")  # pragma: no cover (each parsed alone)
