"""The seam's common half: the ``ChatModel`` protocol every caller depends on, and ``ChatModelBase``, which gives
every chat model (``autointerp.llm.client.LLMClient``, ``autointerp.testing.fake.FakeLLM``) the same budget,
concurrency bound, retries, parsing, accounting and scrubbing around a subclass's ``_send``. What a call does is
described in ``autointerp.llm.client``'s docstring.
"""

from __future__ import annotations

import asyncio
import random
import time
import weakref
from abc import ABC, abstractmethod
from datetime import datetime, timezone
from typing import Any, Protocol, runtime_checkable

from autointerp.errors import UsageError
from autointerp.llm.completions import CompletionsMixin
from autointerp.llm.failures import MismatchWatch, body_error, is_html, page_reason
from autointerp.llm.profiles import DEFAULT_CONCURRENCY, LOCAL_PLACEHOLDER_KEY, ModelProfile
from autointerp.llm.scope import current_scope
from autointerp.llm.secrets import escapes_may_hide, scrub_strings, scrub_text, shorten
from autointerp.llm.streaming import StopCheck, truncate_body
from autointerp.llm.tokens import TokenCounter
from autointerp.llm.types import (
    Budget,
    CallRecord,
    CallSink,
    ChatResult,
    CompletionResult,
    EndpointMismatch,
    LLMError,
    Message,
    ProtocolMismatch,
    RequestTimedOut,
    RetryableError,
    Totals,
)
from autointerp.llm.wire import logged_response, parse_body, sendable


@runtime_checkable
class ChatModel(Protocol):
    """What every caller of an LLM depends on; ``LLMClient`` and ``FakeLLM`` both satisfy it."""

    name: str
    profile: ModelProfile
    totals: Totals

    async def chat(
        self,
        messages: list[Message],
        *,
        purpose: str,
        tools: list[dict[str, Any]] | None = None,
        logprobs: bool = False,
        top_logprobs: int | None = None,
        unit: str | None = None,
        stop_when: StopCheck | None = None,
        **extra: Any,
    ) -> ChatResult: ...

    async def complete(self, prompt: str, *, purpose: str, logprobs: int | None = None, echo: bool = False,
                       max_tokens: int = 1, unit: str | None = None, **extra: Any) -> CompletionResult: ...


# (event loop, profile name) -> the semaphore bounding that profile's requests in flight
_SLOTS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Semaphore]] = (
    weakref.WeakKeyDictionary()
)


class _Scrubbed(dict):
    """A response body parsed from text that was scrubbed of the key before the parse (``ChatModelBase._cut``):
    ``_decode`` takes it as it is."""


class ChatModelBase(CompletionsMixin, ABC):
    """Budget, concurrency bound, retries, parsing, accounting and scrubbing; subclasses only ``_send`` requests."""

    backoff_max_s = 30.0  # the longest wait between two tries of a call

    def __init__(
        self,
        profile: ModelProfile,
        name: str,
        sink: CallSink | None = None,
        budget: Budget | None = None,
        *,
        backoff_base_s: float = 0.5,
        token_counter: TokenCounter | None = None,
        secret: str | None = None,
        log_logprobs: bool = False,
    ):
        self.profile = profile
        self.name = name
        self.sink = sink
        self.budget = budget
        self.totals = Totals()
        self.backoff_base_s = backoff_base_s
        self.token_counter = token_counter or TokenCounter()
        self._secrets = (secret,) if secret and secret != LOCAL_PLACEHOLDER_KEY else ()  # what is scrubbed
        self.log_logprobs = log_logprobs  # keep per-token logprobs in the sink's records (see _logged_response)
        self._rng = random.Random()
        where = profile.resolved_base_url() or "the OpenAI API"
        self.mismatch = MismatchWatch(f"{where} (model {profile.model}, profile {name})")  # EndpointMismatch
        self.kept_format = 0  # replies in a row that a caller's check read whole (``stream_trust``)

    @abstractmethod
    async def _send(self, params: dict[str, Any]) -> dict[str, Any] | str:
        """Send one request; return the response body (parsed, or its JSON text), or raise RetryableError / LLMError.
        A body returned as text is parsed after the request's concurrency slot is released."""

    async def _send_stream(self, params: dict[str, Any], stop_when: StopCheck) -> dict[str, Any] | str:
        """Send one request, streaming the reply and closing it when ``stop_when`` gives a reason; return a body as
        ``_send`` does (key ``autointerp_stopped``: that reason). This default, for transports that cannot stream,
        sends the whole request and cuts the reply where a stream would have been stopped."""
        return self._cut(await self._send(params), stop_when)

    def _cut(self, body: dict[str, Any] | str, stop_when: StopCheck) -> dict[str, Any] | str:
        """A whole reply cut where a stream of it would have been stopped; a body as text is scrubbed of the key
        whole first, then cut and handed back as text (``_decode`` parses it)."""
        if isinstance(body, str):
            body = scrub_text(body, self._secrets, patterns=False)
            try:
                parsed = parse_body(body)
            except ValueError:
                return body  # not JSON: ``_decode`` says so
            if not isinstance(parsed, dict):
                return body
            if escapes_may_hide(body, self._secrets):
                parsed = scrub_strings(parsed, self._secrets)
            # handed over parsed and scrubbed: encoding it again for ``_decode`` to parse cost more than the parse
            return _Scrubbed(truncate_body(parsed, stop_when, self.token_counter))
        return truncate_body(body, stop_when, self.token_counter)

    async def chat(
        self,
        messages: list[Message],
        *,
        purpose: str,
        tools: list[dict[str, Any]] | None = None,
        logprobs: bool = False,
        top_logprobs: int | None = None,
        unit: str | None = None,
        stop_when: StopCheck | None = None,
        **extra: Any,
    ) -> ChatResult:
        """One chat completion. ``extra`` goes to the API as is (e.g. ``tool_choice``, ``seed``, ``max_tokens``);
        ``stop_when``: stream the reply and stop it early (see the module docstring)."""
        params = self._params(messages, tools, logprobs, top_logprobs, extra)
        tokens_in = self.token_counter.count_messages(messages)
        params["timeout"] = self.profile.request_timeout_s(tokens_in, params["max_tokens"])
        send = (lambda: self._send(params)) if stop_when is None else (lambda: self._send_stream(params, stop_when))
        result = await self._call(send, params, messages, purpose, unit, tokens_in, self._result)
        if stop_when is not None:
            self._note_format(stop_when, result)
        return result

    def _note_format(self, stop_when: StopCheck, result: ChatResult) -> None:
        """Count the replies in a row that kept the format: ended by themselves, or stopped by a check that says it
        read everything it asked for (``complete``, as the simulator's watches do). Any other stop starts again."""
        complete = getattr(stop_when, "complete", None)
        kept = bool(complete) if complete is not None else result.stopped is None and result.finish_reason == "stop"
        self.kept_format = self.kept_format + 1 if kept else 0

    async def _call(self, send, params: dict[str, Any], log_messages: list[Message], purpose: str,
                    unit: str | None, tokens_in_estimate: int, parse) -> Any:
        """Budget, concurrency slot, retries, parsing and logging around ``send()`` (one request, returning a body);
        ``parse(body, tokens_in_estimate, started)`` turns a body into the result (RetryableError when it is none)."""
        if self.mismatch.tripped is not None:
            raise EndpointMismatch(self.mismatch.tripped)
        worst_case = self.profile.cost_usd(tokens_in_estimate, params["max_tokens"])
        if self.budget is not None:
            self.budget.reserve(worst_case)
        cost = 0.0
        started = time.monotonic()  # latency counts from the send: waiting for a slot or a retry is not the server's
        try:
            slot = await self._slot()
            attempts, last_what = 0, None
            while True:
                attempts += 1
                failure, retry_after, what = None, None, None
                try:
                    async with slot:
                        started = time.monotonic()
                        body = await send()
                    result = parse(self._decode(body), tokens_in_estimate, started)
                    cost = result.cost_usd
                    self._log(log_messages, purpose, unit, attempts, result.latency_s, result=result)
                    self.mismatch.success()
                    return result
                except RequestTimedOut as exc:
                    failure = self._timeout_failure(exc, params, attempts)
                except RetryableError as exc:
                    what = getattr(exc, "what", None)
                    if what is not None and what == last_what:  # the endpoint does it every time
                        failure = f"{exc}; the same answer {attempts} times in a row, not retried further"
                    elif attempts > self.profile.max_retries:
                        failure = f"{exc}; gave up after {attempts} tries"
                    retry_after, last_what = exc.retry_after_s, what
                except LLMError as exc:
                    failure, what = str(exc), getattr(exc, "what", None)
                if failure is not None:  # raised here, outside the handler, so no exception chain is attached
                    failure = scrub_text(f"{self.name} ({self.profile.model}), {purpose}: {failure}", self._secrets)
                    self._log(log_messages, purpose, unit, attempts, time.monotonic() - started, error=failure)
                    stop = self.mismatch.failure(what)
                    if stop is not None:
                        raise EndpointMismatch(scrub_text(stop, self._secrets))
                    raise LLMError(failure)
                await asyncio.sleep(self._backoff(attempts, retry_after))
        finally:
            if self.budget is not None:
                self.budget.settle(worst_case, cost)

    async def concurrency(self) -> int:
        """Requests this profile may have in flight: the profile's ``concurrency``, else 8 (subclasses detect)."""
        return self.profile.concurrency or DEFAULT_CONCURRENCY

    def _timeout_failure(self, exc: RequestTimedOut, params: dict[str, Any], attempts: int) -> str | None:
        """Why a timed-out request is not retried, or None to retry it (see the module docstring)."""
        tries = f"{attempts} tries" if attempts > 1 else "1 try"
        if not self.profile.retry_timeouts:
            return (f"{exc}; not retried ({tries}): the server may still be generating it; raise timeout_s, lower "
                    "concurrency, or set retry_timeouts = true in the model profile")
        if not params.get("temperature"):
            return (f"{exc}; not retried ({tries}): at temperature 0 a retry would generate the same output again; "
                    "raise timeout_s")
        if attempts > self.profile.max_retries:
            return f"{exc}; gave up after {tries}"
        return None

    def _params(
        self,
        messages: list[Message],
        tools: list[dict[str, Any]] | None,
        logprobs: bool,
        top_logprobs: int | None,
        extra: dict[str, Any],
    ) -> dict[str, Any]:
        if tools and not self.profile.supports_tools:
            raise UsageError(f"model profile {self.name!r} does not support tools (supports_tools: false)")
        if logprobs and not self.profile.supports_logprobs:
            raise UsageError(f"model profile {self.name!r} does not support logprobs (supports_logprobs: false)")
        params: dict[str, Any] = {
            "model": self.profile.model,
            "messages": [sendable(m) for m in messages],
            "temperature": self.profile.temperature,
            "max_tokens": self.profile.max_tokens,
            **extra,
        }
        if tools:
            params["tools"] = tools
        if logprobs:
            params["logprobs"] = True
            if top_logprobs is not None:
                params["top_logprobs"] = top_logprobs
        return params

    async def _slot(self) -> asyncio.Semaphore:
        per_loop = _SLOTS.setdefault(asyncio.get_running_loop(), {})
        if self.name not in per_loop:
            n = await self.concurrency()
            per_loop.setdefault(self.name, asyncio.Semaphore(n))
        return per_loop[self.name]

    def _backoff(self, attempt: int, retry_after_s: float | None) -> float:
        if retry_after_s is not None:
            return retry_after_s
        return min(self.backoff_max_s, self.backoff_base_s * 2 ** (attempt - 1)) * self._rng.uniform(0.5, 1.0)

    def _decode(self, received: dict[str, Any] | str) -> dict[str, Any]:
        """The body as it enters, scrubbed of the key and of every piece of it, once: what the parsers, the result
        and the sink get. A body that arrives as text is scrubbed whole, before anything is parsed or cut; its parsed
        strings are scrubbed instead only when a JSON escape in it may spell a character of the key. A body handed
        over parsed (the in-process fakes) has its strings scrubbed."""
        if isinstance(received, _Scrubbed):  # parsed from text that was scrubbed whole (``_cut``)
            return self._check_body(received)
        if not isinstance(received, str):
            return self._check_body(scrub_strings(received, self._secrets))
        text = scrub_text(received, self._secrets, patterns=False)
        try:
            body = parse_body(text)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            shape = page_reason(text) if is_html(text) else "a body that is not a JSON object"
            raise ProtocolMismatch(f"response body is not a JSON object ({shape}): "
                                   f"{shorten(repr(text), 200, self._secrets)}", f"answered HTTP 200 with {shape}")
        body = scrub_strings(body, self._secrets) if escapes_may_hide(text, self._secrets) else body
        return self._check_body(body)

    @staticmethod
    def _check_body(body: dict[str, Any]) -> dict[str, Any]:
        """``body``, unless it is an error object sent with HTTP 200 and no completion: then that error
        (``failures.body_error``: retried when it says the server is busy, else final with the endpoint's message)."""
        if body.get("error") and not body.get("choices"):
            raise body_error(body["error"])
        return body

    def _log(
        self,
        messages: list[Message],
        purpose: str,
        unit: str | None,
        attempts: int,
        latency_s: float,
        result: ChatResult | CompletionResult | None = None,
        error: str | None = None,
    ) -> None:
        """Add the call to ``totals`` and to the enclosing call scope, and hand its record to the sink."""
        scope = current_scope()
        record = CallRecord(
            profile=self.name,
            model=self.profile.model,
            purpose=purpose,
            unit=unit if unit is not None or scope is None else scope.unit,
            messages=scrub_strings(list(messages), self._secrets),
            response=None if result is None else logged_response(result.raw, self.log_logprobs),
            tokens_in=0 if result is None else result.tokens_in,
            tokens_out=0 if result is None else result.tokens_out,
            latency_s=latency_s,
            cost_usd=0.0 if result is None else result.cost_usd,
            error=error,
            attempts=attempts,
            created_at=datetime.now(timezone.utc).isoformat(),
        )
        self.totals.add(record)
        if scope is not None:
            scope.usage.add(record)
        if self.sink is not None:
            self.sink.record_call(record)

    def _clean(self, message: str) -> str:
        return scrub_text(message, self._secrets)  # an error message: the key, its pieces, credential shapes
