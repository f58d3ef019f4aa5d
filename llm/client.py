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
- reads what endpoints do instead of the protocol (a JSON body in answer to a streamed request, a stream without
  ``[DONE]`` or cut mid-reply, HTTP 200 with an ``error`` object, a proxy's HTML error page, a usage-only final
  chunk, ``content: null``): each is used or a typed failure (docs/llm-servers.md has the table). An answer it cannot
  use (``ProtocolMismatch``) is tried again once, not more when it comes back the same; the same unusable answer
  (or final ``EndpointError``) on ``failures.MISMATCH_CALLS`` (3) calls in a row raises ``EndpointMismatch``, one
  line naming the endpoint and what it did, and so does every later call, without sending anything;
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
import logging
from typing import Any

import httpx
import openai

from autointerp.llm.base import _SLOTS, ChatModel, ChatModelBase  # noqa: F401 (imported from here)
from autointerp.llm.failures import body_error, is_html, page_reason, retry_after_s, status_failure  # noqa: F401
from autointerp.llm.parallelism import detect_parallelism
from autointerp.llm.profiles import DEFAULT_CONCURRENCY, ModelProfile  # noqa: F401
from autointerp.llm.secrets import shorten
from autointerp.llm.streaming import EventReader, StopCheck, StreamAssembler
from autointerp.llm.types import (  # noqa: F401 (the seam's records and errors: imported from here)
    Budget,
    BudgetExceeded,
    CallRecord,
    CallSink,
    ChatResult,
    CompletionResult,
    EndpointError,
    EndpointMismatch,
    LLMError,
    MalformedLogprobs,
    Message,
    ProtocolMismatch,
    RequestTimedOut,
    RetryableError,
    StreamCut,
    TokenLogprob,
    Totals,
)
from autointerp.llm.wire import dumps, parse_body, rejected_hint, too_slow  # noqa: F401


_log = logging.getLogger("autointerp.llm")
# Endpoints (base URL, model) seen answering a streamed request with one JSON body, in this process: not asked to
# stream again (``LLMClient.streams``).
_PLAIN_ENDPOINTS: set[tuple[str, str]] = set()


def _endpoint_key(profile: ModelProfile) -> tuple[str, str]:
    return profile.resolved_base_url() or "", profile.model


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
        self.notes: list[str] = []  # what this client adapted to, once each (also logged as a warning)

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
        """One request; returns the body's text (see ``_send``)."""
        failure: Exception | None = None
        timeout_s = params.get("timeout", self.profile.timeout_s)
        try:
            response = await api.with_raw_response.create(**{**params, "timeout": timeout_s})
        except openai.APIStatusError as exc:
            failure = self._status_failure(exc, endpoint, params)
        except openai.APITimeoutError:
            failure = RequestTimedOut(too_slow(self.profile, self.name, timeout_s))
        except openai.APIConnectionError as exc:
            failure = RetryableError(self._clean(f"connection error: {exc} {exc.__cause__ or ''}".strip()))
        except openai.OpenAIError as exc:
            failure = LLMError(self._clean(f"{type(exc).__name__}: {exc}"))
        if failure is not None:
            raise failure
        return response.http_response.text

    def _status_failure(self, exc: openai.APIStatusError, endpoint: str, params: dict[str, Any]) -> Exception:
        """An HTTP error status as ``status_failure`` classes it; an HTML error page (a proxy's 502 or 504) is named
        in one short line (its title), never copied whole."""
        try:
            text = exc.response.text
        except (httpx.HTTPError, RuntimeError):  # a streamed body not read
            text = ""
        reason = page_reason(text) if is_html(text) else self._clean(str(exc))
        reason += rejected_hint(exc.status_code, endpoint, params)
        return status_failure(exc.status_code, reason, retry_after_s(exc.response.headers))

    @property
    def streams(self) -> bool:
        """Whether a reply the caller may stop early is asked for as a stream: when the endpoint may stream
        (``_may_stream``), unless the last ``stream_trust`` replies all kept the format (streaming pays for itself
        only when a reply goes off format: it stops the generation there; otherwise it only costs the client CPU)."""
        return self._may_stream and not self._trusted

    @property
    def _may_stream(self) -> bool:
        """The profile's ``stream``, unless this process has seen the endpoint answer a streamed request with one JSON
        body (``_PLAIN_ENDPOINTS``)."""
        return self.profile.stream and _endpoint_key(self.profile) not in _PLAIN_ENDPOINTS

    @property
    def _trusted(self) -> bool:
        """The last ``stream_trust`` replies kept the format: the next is asked for whole instead of streamed."""
        return bool(self.profile.stream_trust) and self.kept_format >= self.profile.stream_trust

    async def _send_stream(self, params: dict[str, Any], stop_when: StopCheck) -> dict[str, Any] | str:
        """One streamed request, closed as soon as ``stop_when`` gives a reason (the server sees the connection
        close and stops generating). The first bytes are the server's report that it has started on the request: the
        wait for them (time queued behind other requests, and reading the prompt) and the generation after them each
        get ``timeout_s``, so queue time is not counted against the request's own. The body is read in the pieces the
        socket gives and parsed a piece at a time (``EventReader``); the SDK's typed chunks cost ten times the CPU.
        What endpoints do instead of a proper stream (see ``_PLAIN_ENDPOINTS`` and docs/llm-servers.md): one JSON
        body is read as the reply; a stream without ``[DONE]`` is used when its reply ended (a ``finish_reason``);
        one cut mid-reply is a ``StreamCut``; an error event is the endpoint's error (``failures.body_error``)."""
        if not self._may_stream:
            return await super()._send_stream(params, stop_when)
        if self._trusted:  # a plain request in place of the stream keeps the stream's allowance: timeout_s for the
            # wait before the server starts (queued behind other requests), and timeout_s for the generation
            timeout_s = params.get("timeout", self.profile.timeout_s)
            return await super()._send_stream({**params, "timeout": 2 * timeout_s}, stop_when)
        assembler, reader = StreamAssembler(stop_when), EventReader()
        failure: Exception | None = None
        timeout_s = params.get("timeout", self.profile.timeout_s)
        loop = asyncio.get_running_loop()
        started = False
        try:
            async with asyncio.timeout(timeout_s) as deadline:
                async with self._openai.chat.completions.with_streaming_response.create(
                    **{**params, "timeout": timeout_s}, stream=True, stream_options={"include_usage": True}
                ) as response:
                    async for piece in response.http_response.aiter_bytes():
                        if not started:  # the server has started: the generation gets its own timeout_s
                            started = True
                            deadline.reschedule(loop.time() + timeout_s)
                        if assembler.add_many(reader.feed(piece)) or reader.done:
                            break
                    else:
                        assembler.add_many(reader.close())
        except (TimeoutError, openai.APITimeoutError):
            phase = "after the first token" if started else "waiting for the first token"
            failure = RequestTimedOut(too_slow(self.profile, self.name, timeout_s, f"no complete answer ({phase})"))
        except openai.APIStatusError as exc:
            failure = self._status_failure(exc, "chat", params)
        except (openai.APIConnectionError, httpx.HTTPError) as exc:
            failure = RetryableError(self._clean(f"connection error: {exc} {exc.__cause__ or ''}".strip()))
        except ValueError as exc:
            failure = ProtocolMismatch(self._clean(f"a streamed event is not JSON: {exc}"),
                                       "sent a streamed event that is not JSON")
        except openai.OpenAIError as exc:
            failure = LLMError(self._clean(f"{type(exc).__name__}: {exc}"))
        if failure is None and reader.plain:
            return self._plain_reply(reader.body(), stop_when)
        if failure is None:
            failure = self._stream_failure(assembler, reader)
        if failure is not None:
            raise failure
        if not self._secrets:
            return assembler.body()  # nothing to scrub: handed over parsed
        return dumps(assembler.body())  # as text, so that chat() scrubs it whole (a stream may cut a key)

    def _stream_failure(self, assembler: StreamAssembler, reader: EventReader) -> Exception | None:
        """Why a stream read to its end is no reply, or None when it is one (see ``_send_stream``)."""
        if assembler.error is not None:
            return body_error(assembler.error)
        if assembler.stopped is not None:
            return None
        if not assembler.chunks:
            if reader.events:
                what = "answered a streamed request with events that hold no chat completion chunk"
            elif is_html(reader.head):
                what = f"answered a streamed request with {page_reason(reader.head)}"
            else:
                what = "answered a streamed request with a body that is neither an event stream nor JSON"
            return ProtocolMismatch(f"response body is not a JSON object stream ({what}): "
                                    f"{shorten(repr(reader.head[:300]), 200, self._secrets)}", what)
        assembler.finish()
        if assembler.stopped is None and not assembler.complete and not reader.done:
            return StreamCut(f"the stream was cut mid-reply: {assembler.chunks} chunks, then the connection closed "
                             "with no finish_reason and no [DONE]")
        return None

    def _plain_reply(self, data: bytes, stop_when: StopCheck) -> dict[str, Any] | str:
        """One JSON body in answer to a streamed request: read as the reply (cut where a stream would have been
        stopped), and, when it is a chat completion, the endpoint is no longer asked to stream, said once."""
        text = data.decode("utf-8", "replace")
        reply = self._cut(text, stop_when)
        usable = isinstance(reply, dict) and bool(reply.get("choices"))  # parsed by _cut, or text that is no JSON
        key = _endpoint_key(self.profile)
        if usable and key not in _PLAIN_ENDPOINTS:
            _PLAIN_ENDPOINTS.add(key)
            note = (f"{self.profile.resolved_base_url() or 'the OpenAI API'} (profile {self.name}) answers a "
                    "streamed request with one JSON body: read as the reply; not asked to stream again in this "
                    f"process (stream = false in [models.{self.name}] says so up front)")
            self.notes.append(note)
            _log.warning("%s", note)
        return reply

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
