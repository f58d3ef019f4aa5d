"""The one LLM seam: ``ChatModel.chat``. ``LLMClient`` is the real one (OpenAI chat completions); fakes plug in here.

    import asyncio
    from autointerp.llm import LLMClient, ModelProfile

    profile = ModelProfile(model="gpt-4o-mini", price_in_per_mtok=0.15, price_out_per_mtok=0.6)
    async def main():
        async with LLMClient(profile, "mini") as client:      # reads OPENAI_API_KEY now, never stores it elsewhere
            result = await client.chat([{"role": "user", "content": "Say hi"}], purpose="smoke")
            print(result.text, result.tokens_in, result.tokens_out, result.cost_usd, client.totals)
    asyncio.run(main())

Every ``chat`` call, through any ``ChatModelBase`` subclass (``LLMClient``, ``autointerp.testing.fake.FakeLLM``):

- checks the optional shared ``Budget`` first (``BudgetExceeded`` when the call's worst case, prompt tokens plus
  ``max_tokens``, would pass ``max_usd``, or it would be call ``max_calls + 1``);
- waits for one of ``profile.concurrency`` slots, shared by every client of the same profile name in the event loop;
- retries 429, 5xx, connection errors and bodies that are not a chat completion, up to ``profile.max_retries``
  times, sleeping ``Retry-After`` (or ``retry-after-ms``) when the server sends it, else a jittered exponential
  backoff. It fails at once on any other 4xx, and on a 5xx whose body says the request itself was refused
  (``is_validation_error``: e.g. a chat template that cannot take a message shape; the same request would fail the
  same way). A timeout is not retried unless the profile sets ``retry_timeouts`` and its temperature is above 0: the
  server may still be generating the abandoned request, and at temperature 0 a retry would repeat the same output at
  the same cost; the error says so. A call that fails raises ``LLMError``;
- with ``stop_when`` (a callable taking the reply text so far and returning a reason to stop, or None), streams the
  reply and closes the request as soon as ``stop_when`` answers a reason: the result has the text so far and
  ``stopped`` set (the simulator stops a reply that has gone off format after its first bad line);
- hands one ``CallRecord`` per call (success or failure, with the number of attempts) to the ``CallSink``, and adds
  its tokens and cost to ``totals`` and to the enclosing ``call_scope`` (``autointerp.llm.scope``), whose unit it
  records when the call names none.

``latency_s`` is the wall time of the whole call, retries and waits included. Cost is tokens times the profile's
price per million tokens; a response without ``usage`` is counted with ``TokenCounter``. The API key never reaches a
record, a result or an error message: every string that leaves this module is scrubbed of it.
"""

from __future__ import annotations

import asyncio
import functools
import json
import random
import time
import weakref
from abc import ABC, abstractmethod
from datetime import datetime, timezone
from typing import Any, Protocol, runtime_checkable

import httpx
import openai

from autointerp.errors import UsageError
from autointerp.llm.failures import retry_after_s, status_failure
from autointerp.llm.parallelism import detect_parallelism
from autointerp.llm.profiles import DEFAULT_CONCURRENCY, LOCAL_PLACEHOLDER_KEY, ModelProfile
from autointerp.llm.scope import current_scope
from autointerp.llm.secrets import escapes_may_hide, scrub_strings, scrub_text, shorten
from autointerp.llm.streaming import StopCheck, StreamAssembler, truncate_body
from autointerp.llm.completions import CompletionsMixin
from autointerp.llm.tokens import TokenCounter
from autointerp.llm.types import (  # noqa: F401 (BudgetExceeded, MalformedLogprobs, TokenLogprob: imported from here)
    Budget,
    BudgetExceeded,
    CallRecord,
    CallSink,
    ChatResult,
    CompletionResult,
    LLMError,
    MalformedLogprobs,
    Message,
    RequestTimedOut,
    RetryableError,
    TokenLogprob,
    Totals,
)
from autointerp.llm.wire import logged_response, parse_body, rejected_hint, sendable, too_slow


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


class ChatModelBase(CompletionsMixin, ABC):
    """Budget, concurrency bound, retries, parsing, accounting and scrubbing; subclasses only ``_send`` requests."""

    def __init__(
        self,
        profile: ModelProfile,
        name: str,
        sink: CallSink | None = None,
        budget: Budget | None = None,
        *,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 30.0,
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
        self.backoff_max_s = backoff_max_s
        self.token_counter = token_counter or TokenCounter()
        self._secrets = (secret,) if secret and secret != LOCAL_PLACEHOLDER_KEY else ()  # what is scrubbed
        self.log_logprobs = log_logprobs  # keep per-token logprobs in the sink's records (see _logged_response)
        self._rng = random.Random()

    @abstractmethod
    async def _send(self, params: dict[str, Any]) -> dict[str, Any] | str:
        """Send one request; return the response body (parsed, or its JSON text), or raise RetryableError / LLMError.
        A body returned as text is parsed after the request's concurrency slot is released."""

    async def _send_stream(self, params: dict[str, Any], stop_when: StopCheck) -> dict[str, Any] | str:
        """Send one request, streaming the reply and closing it when ``stop_when`` gives a reason; return a body as
        ``_send`` does (key ``autointerp_stopped``: that reason). This default, for transports that cannot stream,
        sends the whole request and cuts the reply where a stream would have been stopped."""
        body = await self._send(params)
        if isinstance(body, str):  # cut, then handed back as text for ``_call`` to scrub whole, as a stream is
            try:
                return json.dumps(truncate_body(parse_body(body), stop_when, self.token_counter))
            except ValueError:
                return body  # not JSON: ``_decode`` says so
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
        return await self._call(send, params, messages, purpose, unit, tokens_in, self._result)

    async def _call(self, send, params: dict[str, Any], log_messages: list[Message], purpose: str,
                    unit: str | None, tokens_in_estimate: int, parse) -> Any:
        """Budget, concurrency slot, retries, parsing and logging around ``send()`` (one request, returning a body);
        ``parse(body, tokens_in_estimate, started)`` turns a body into the result (RetryableError when it is none)."""
        worst_case = self.profile.cost_usd(tokens_in_estimate, params["max_tokens"])
        if self.budget is not None:
            self.budget.reserve(worst_case)
        cost = 0.0
        started = time.monotonic()  # latency counts from the send: waiting for a slot or a retry is not the server's
        try:
            slot = await self._slot()
            attempts = 0
            while True:
                attempts += 1
                failure, retry_after = None, None
                try:
                    async with slot:
                        started = time.monotonic()
                        body = await send()
                    result = parse(self._decode(body), tokens_in_estimate, started)
                    cost = result.cost_usd
                    self._log(log_messages, purpose, unit, attempts, result.latency_s, result=result)
                    return result
                except RequestTimedOut as exc:
                    failure = self._timeout_failure(exc, params, attempts)
                except RetryableError as exc:
                    if attempts > self.profile.max_retries:
                        failure = f"{exc}; gave up after {attempts} tries"
                    retry_after = exc.retry_after_s
                except LLMError as exc:
                    failure = str(exc)
                if failure is not None:  # raised here, outside the handler, so no exception chain is attached
                    failure = scrub_text(f"{self.name} ({self.profile.model}), {purpose}: {failure}", self._secrets)
                    self._log(log_messages, purpose, unit, attempts, time.monotonic() - started, error=failure)
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
        if not isinstance(received, str):
            return scrub_strings(received, self._secrets)
        text = scrub_text(received, self._secrets, patterns=False)
        try:
            body = parse_body(text)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise RetryableError(f"response body is not a JSON object: {shorten(repr(text), 200, self._secrets)}")
        return scrub_strings(body, self._secrets) if escapes_may_hide(text, self._secrets) else body

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


@functools.cache
def _tls_context() -> Any:
    """One TLS context for every client of the process, as httpx builds it (``SSL_CERT_FILE`` honoured): building
    one reads the CA bundle, about 30 ms, and a sweep or the test suite opens a client per run."""
    return httpx.create_ssl_context()


class LLMClient(ChatModelBase):
    """The real chat model: an OpenAI-compatible endpoint through ``openai.AsyncOpenAI`` (SDK retries off)."""

    def __init__(
        self,
        profile: ModelProfile,
        name: str,
        sink: CallSink | None = None,
        budget: Budget | None = None,
        **options: Any,
    ):
        key = profile.api_key()
        super().__init__(profile, name, sink, budget, secret=key, **options)
        self._openai = openai.AsyncOpenAI(
            api_key=key, base_url=profile.resolved_base_url(), max_retries=0, timeout=profile.timeout_s,
            http_client=openai.DefaultAsyncHttpxClient(verify=_tls_context()),
        )
        self._detected: int | None = None  # the local server's parallelism, once found

    async def __aenter__(self) -> LLMClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._openai.close()

    async def _send(self, params: dict[str, Any]) -> str:
        """One request; returns the body's text. Failures are raised outside the ``except`` blocks: the SDK's exceptions hold the request,
        Authorization header included, and must not ride along as ``__context__``."""
        return await self._request(self._openai.chat.completions, "chat", params)

    async def _send_completion(self, params: dict[str, Any]) -> str:
        return await self._request(self._openai.completions, "completions", params)

    async def _request(self, api: Any, endpoint: str, params: dict[str, Any]) -> str:
        failure: Exception | None = None
        timeout_s = params.get("timeout", self.profile.timeout_s)
        try:
            response = await api.with_raw_response.create(**{**params, "timeout": timeout_s})
        except openai.APIStatusError as exc:
            reason = self._clean(str(exc)) + rejected_hint(exc.status_code, endpoint, params)
            failure = status_failure(exc.status_code, reason, retry_after_s(exc.response.headers))
        except openai.APITimeoutError:
            failure = RequestTimedOut(too_slow(self.profile, self.name, timeout_s))
        except openai.APIConnectionError as exc:
            failure = RetryableError(self._clean(f"connection error: {exc} {exc.__cause__ or ''}".strip()))
        except openai.OpenAIError as exc:
            failure = LLMError(self._clean(f"{type(exc).__name__}: {exc}"))
        if failure is not None:
            raise failure
        return response.http_response.text

    async def _send_stream(self, params: dict[str, Any], stop_when: StopCheck) -> str:
        """One streamed request, closed as soon as ``stop_when`` gives a reason (the server sees the connection
        close and stops generating). The first chunk is the server's report that it has started on the request: the
        wait for it (time queued behind other requests, and reading the prompt) and the generation after it each get
        ``timeout_s``, so queue time is not counted against the request's own. The server-sent events are read as
        raw lines and parsed with ``parse_body`` (the SDK's typed chunks cost ten times the CPU)."""
        assembler = StreamAssembler(stop_when)
        failure: Exception | None = None
        timeout_s = params.get("timeout", self.profile.timeout_s)
        loop = asyncio.get_running_loop()
        started = False
        try:
            async with asyncio.timeout(timeout_s) as deadline:
                async with self._openai.chat.completions.with_streaming_response.create(
                    **{**params, "timeout": timeout_s}, stream=True, stream_options={"include_usage": True}
                ) as response:
                    async for line in response.iter_lines():
                        if not line.startswith("data:"):
                            continue
                        data = line[5:].strip()
                        if data == "[DONE]":
                            break
                        chunk = parse_body(data)
                        if not started:  # the server has started: the generation gets its own timeout_s
                            started = True
                            deadline.reschedule(loop.time() + timeout_s)
                        if isinstance(chunk, dict) and chunk.get("error"):
                            reason = shorten(str(chunk["error"]), 300, self._secrets)
                            failure = RetryableError(f"error in the stream: {reason}")
                            break
                        if isinstance(chunk, dict) and assembler.add(chunk):
                            break
                    if assembler.stopped is None and failure is None:
                        assembler.finish()
        except (TimeoutError, openai.APITimeoutError):
            phase = "after the first token" if started else "waiting for the first token"
            failure = RequestTimedOut(too_slow(self.profile, self.name, timeout_s, f"no complete answer ({phase})"))
        except openai.APIStatusError as exc:
            failure = status_failure(exc.status_code, self._clean(str(exc)), retry_after_s(exc.response.headers))
        except (openai.APIConnectionError, httpx.HTTPError) as exc:
            failure = RetryableError(self._clean(f"connection error: {exc} {exc.__cause__ or ''}".strip()))
        except ValueError as exc:
            failure = RetryableError(self._clean(f"a streamed chunk is not JSON: {exc}"))
        except openai.OpenAIError as exc:
            failure = LLMError(self._clean(f"{type(exc).__name__}: {exc}"))
        if failure is None and not assembler.chunks:
            failure = RetryableError("response body is not a JSON object stream (no chat completion chunk arrived)")
        if failure is not None:
            raise failure
        return json.dumps(assembler.body())  # as text, so that chat() scrubs it whole (a stream may cut a key)

    async def concurrency(self) -> int:
        """The profile's ``concurrency``; when unset, 8 for a remote endpoint and, for a local one, the parallelism
        the server reports (``autointerp.llm.parallelism.detect_parallelism``), found once per client."""
        if self.profile.concurrency is not None:
            return self.profile.concurrency
        if not self.profile.is_local():
            return DEFAULT_CONCURRENCY
        if self._detected is None:
            self._detected, _ = await detect_parallelism(self.profile.resolved_base_url() or "")
        return self._detected
