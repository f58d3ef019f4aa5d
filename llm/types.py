"""The records of the LLM seam: chat results and their logprobs, call records and their sink, the budget, errors.

    >>> budget = Budget(max_usd=2.0, max_calls=500)     # shared by every client of a run
    >>> result.text, result.tokens_in, result.logprobs[0].top_logprobs
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypedDict

Message = dict[str, Any]  # one chat message as the API takes it: {"role": ..., "content": ...}


class ToolCall(TypedDict):
    id: str
    name: str
    arguments: str  # JSON text exactly as the model wrote it (may not parse)


class MalformedLogprobs(ValueError):
    """A token's ``top_logprobs`` in the response are not a list of {token, logprob} objects."""


class TokenLogprob:
    """One generated token: its text, its logprob, and ``top_logprobs`` (the most likely tokens at this position:
    text -> natural-log probability; alternatives with the same text, different token ids, have their probabilities
    added).

    ``top_logprobs`` is read from the response entry on first use, which raises ``MalformedLogprobs`` when that
    entry is malformed: a simulator reply holds thousands of tokens and reads the alternatives of one in four.
    """

    __slots__ = ("token", "logprob", "_top", "_alternatives")

    def __init__(self, token: str, logprob: float, top_logprobs: dict[str, float] | None = None, *,
                 alternatives: list[dict[str, Any]] | None = None):
        self.token = token
        self.logprob = logprob
        self._top = top_logprobs
        self._alternatives = alternatives  # the raw ``top_logprobs`` list, parsed on first use

    @classmethod
    def from_entry(cls, entry: dict[str, Any]) -> TokenLogprob:
        try:
            return cls(entry["token"], float(entry["logprob"]), alternatives=entry.get("top_logprobs") or [])
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise MalformedLogprobs(f"malformed logprobs entry {str(entry)[:100]!r}: {exc!r}") from None

    @property
    def top_logprobs(self) -> dict[str, float]:
        if self._top is None:
            alternatives = self._alternatives or []
            try:
                top = {alt["token"]: float(alt["logprob"]) for alt in alternatives}
                if len(top) < len(alternatives):  # one text, several token ids: their probabilities added
                    top = {}
                    for alt in alternatives:
                        token, logprob = alt["token"], float(alt["logprob"])
                        top[token] = math.log(math.exp(top[token]) + math.exp(logprob)) if token in top else logprob
            except (KeyError, TypeError, ValueError) as exc:
                raise MalformedLogprobs(f"malformed top_logprobs after token {self.token!r}: {exc!r}") from None
            self._top, self._alternatives = top, None
        return self._top

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TokenLogprob):
            return NotImplemented
        return (self.token, self.logprob, self.top_logprobs) == (other.token, other.logprob, other.top_logprobs)

    def __repr__(self) -> str:
        return f"TokenLogprob(token={self.token!r}, logprob={self.logprob!r}, top_logprobs={self.top_logprobs!r})"


class TokenLogprobs(Sequence[TokenLogprob]):
    """The generated tokens of a reply with their logprobs: ``tokens`` (their texts) at once, and each
    ``TokenLogprob`` built when it is indexed (a simulator reply holds thousands; it reads one in four)."""

    def __init__(self, entries: list[dict[str, Any]]):
        tokens = [entry["token"] for entry in entries]  # KeyError / TypeError: not a logprobs list
        if not all(isinstance(token, str) for token in tokens):
            raise TypeError("a logprobs entry's token is not a string")
        self.tokens: list[str] = tokens
        self._entries = entries
        self._built: dict[int, TokenLogprob] = {}

    def __len__(self) -> int:
        return len(self.tokens)

    def __getitem__(self, index):  # type: ignore[override]
        built = self._built.get(index) if type(index) is int else None  # one read before: the common case
        if built is not None:
            return built
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        index = range(len(self))[index]  # IndexError, negative indices
        built = self._built.get(index)
        if built is None:
            built = self._built[index] = TokenLogprob.from_entry(self._entries[index])
        return built

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and list(self) == list(other)

    def __repr__(self) -> str:
        return f"TokenLogprobs({len(self)} tokens)"


@dataclass(frozen=True)
class ChatResult:
    text: str  # the assistant message's content ("" when it only called tools)
    tool_calls: list[ToolCall]
    logprobs: TokenLogprobs | None  # per generated token; None when not requested or not returned
    tokens_in: int  # prompt tokens (from the response's usage, else counted)
    tokens_out: int  # generated tokens
    latency_s: float  # wall time of the whole call, retries and backoff included
    cost_usd: float
    finish_reason: str | None  # "stop", "length", "tool_calls", ...
    raw: dict[str, Any]  # the response body as a plain dict
    stopped: str | None = None  # why the caller's ``stop_when`` cut a streamed reply short; None when it ran out


@dataclass(frozen=True)
class CompletionResult:
    """One legacy text completion (``/v1/completions``). With ``echo`` and ``logprobs``, ``tokens`` are the prompt's
    tokens then the generated ones, ``top_logprobs[i]`` the most likely tokens at position i (token text ->
    natural-log probability; None where the server gives none, e.g. the first token) and ``text_offset[i]`` where
    token i starts in the echoed text (None when the server leaves it out)."""

    text: str  # the echoed prompt (with echo) and the generated text
    tokens: list[str] | None  # None when logprobs were not asked for
    text_offset: list[int] | None
    top_logprobs: list[dict[str, float] | None] | None
    tokens_in: int
    tokens_out: int
    latency_s: float
    cost_usd: float
    finish_reason: str | None
    raw: dict[str, Any]


@dataclass(frozen=True)
class CallRecord:
    """One ``chat`` call, as a sink stores it. Holds no API key."""

    profile: str  # the client's profile name
    model: str
    purpose: str  # what the call was for, e.g. "simulate", "explain"
    unit: str | None  # the unit it was about, e.g. "L3/N1024", when known
    messages: list[Message]
    response: dict[str, Any] | None  # the response body; None when the call failed
    tokens_in: int
    tokens_out: int
    latency_s: float
    cost_usd: float
    error: str | None  # why the call failed; None on success
    attempts: int  # tries made (1 = no retry)
    created_at: str  # ISO 8601, UTC, when the call ended


class CallSink(Protocol):
    def record_call(self, record: CallRecord) -> None: ...


class LLMError(Exception):
    """A call failed for good: a non-retryable HTTP error, or retries exhausted. The message says which."""


class RetryableError(Exception):
    """A failure worth another try (429, 5xx, timeout, bad body); raised by transports, never leaves ``chat``."""

    def __init__(self, reason: str, retry_after_s: float | None = None):
        super().__init__(reason)
        self.retry_after_s = retry_after_s


class ProtocolMismatch(RetryableError):
    """The endpoint answered in a shape the client cannot use (a body that is not a chat completion, a stream with no
    completion chunk). ``what`` says what the endpoint did, in a few words; a call that gets the same ``what`` twice in
    a row is not retried further (the endpoint does it every time), and ``EndpointMismatch`` counts it across calls."""

    def __init__(self, reason: str, what: str, retry_after_s: float | None = None):
        super().__init__(reason, retry_after_s)
        self.what = what


class StreamCut(RetryableError):
    """A streamed reply ended mid-reply: the connection closed with neither a ``finish_reason`` nor ``[DONE]``."""


class EndpointError(LLMError):
    """The endpoint answered HTTP 200 with an ``{"error": {...}}`` object and no completion, and the error is not a
    transient one (``what``: the endpoint's own message, in a few words; counted by ``EndpointMismatch``)."""

    def __init__(self, reason: str, what: str):
        super().__init__(reason)
        self.what = what


class RequestTimedOut(RetryableError):
    """No answer within the request's timeout. The server may still be generating the abandoned request, so it is
    retried only when the profile allows it (``retry_timeouts``) and a retry could differ (temperature > 0)."""


class RunStop(Exception):
    """An LLM error after which the run's next calls cannot succeed either: the run owner stops the run cleanly
    (its stop reason from ``reason``), leaves the unit in hand to the next session, and never records it as the
    unit's outcome. Subclasses: ``BudgetExceeded``; an endpoint that fails the same way on every call."""

    reason = "endpoint"  # the run's stop reason (autointerp.outcomes.StopReason)


class BudgetExceeded(RunStop):
    """The next call would pass the budget; nothing was sent."""

    reason = "budget"


class EndpointMismatch(RunStop):
    """The endpoint answered the same unusable way on ``MISMATCH_CALLS`` calls in a row (a deterministic protocol
    mismatch, not a transient error): the client stops calling it. The message is one line naming the endpoint (its
    base URL, never a key) and what it did. Not an ``LLMError``: the code that turns a failed call into a failed unit
    or window lets it through, so the run owner stops the run at once (stop reason ``endpoint``) instead of failing
    unit after unit. Every later call of the same client raises it again without sending anything."""

    reason = "endpoint"


@dataclass
class Budget:
    """A spending cap shared by any number of clients. ``None`` means no cap."""

    max_usd: float | None = None
    max_calls: int | None = None
    spent_usd: float = 0.0  # cost of finished calls
    calls: int = 0  # calls started
    reserved_usd: float = 0.0  # worst-case cost of calls in flight

    def reserve(self, worst_case_usd: float) -> None:
        """Count one more call and hold its worst-case cost, or raise BudgetExceeded."""
        if self.max_calls is not None and self.calls + 1 > self.max_calls:
            raise BudgetExceeded(f"call budget of {self.max_calls} calls reached; raise max_calls to go on")
        if self.max_usd is not None and self.spent_usd + self.reserved_usd + worst_case_usd > self.max_usd:
            raise BudgetExceeded(
                f"spending budget of ${self.max_usd:.4f} reached (spent ${self.spent_usd:.4f}, next call up to "
                f"${worst_case_usd:.4f}); raise max_usd to go on"
            )
        self.calls += 1
        self.reserved_usd += worst_case_usd

    def settle(self, worst_case_usd: float, cost_usd: float) -> None:
        """Replace a call's reservation by what it cost."""
        self.reserved_usd -= worst_case_usd
        self.spent_usd += cost_usd


@dataclass
class Totals:
    calls: int = 0  # calls sent, failed ones included
    errors: int = 0  # calls that raised LLMError
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0

    def add(self, record: CallRecord) -> None:
        self.calls += 1
        self.errors += record.error is not None
        self.tokens_in += record.tokens_in
        self.tokens_out += record.tokens_out
        self.cost_usd += record.cost_usd
