"""A local OpenAI-compatible HTTP server for tests and benchmarks, on the standard library's http.server.

    from autointerp.llm import ModelProfile
    from autointerp.testing.server import FakeOpenAIServer, FaultInjector, HTTPFailure, scripted
    with FakeOpenAIServer(latency_s=0.0) as srv:         # default_handler: a deterministic simulator/explainer
        profile = ModelProfile(model="fake-model", base_url=srv.base_url)   # http://127.0.0.1:<free port>/v1
    flaky = FaultInjector(rate_429=0.2, rate_500=0.1, rate_garbage=0.05, seed=0)       # a handler
    busy_twice = scripted(HTTPFailure(429, retry_after_s=0.2), HTTPFailure(500))       # then default_handler

    python -m autointerp.testing.server --port 8765 --latency 0.05     # serve in the foreground until Ctrl-C

It listens on 127.0.0.1 only, and serves ``POST /v1/chat/completions``, ``POST /v1/completions`` (``echo`` and
``logprobs`` as llama.cpp and vLLM serve them; ``autointerp.testing.echo_model``) and ``GET /v1/models``; ``GET /props``
answers ``total_slots`` as llama.cpp's server does when ``parallel`` is given. ``escape_html`` makes the chat
endpoint see message text HTML-escaped, as llama-cpp-python's function-calling chat formats do;
``response_formats`` names the ``response_format`` dialects it honours (``outcomes.constrained``). A *handler* receives the parsed request JSON and
returns what to do: a ``Reply`` (text, tool calls, per-token top logprobs) or a plain string, an ``HTTPFailure``
(status, optional Retry-After), a ``Hang`` (no answer for longer than the client waits) or ``Garbage`` (a body that
is not JSON). ``completion_dict`` turns a ``Reply`` into the response JSON of the current chat-completions API,
``choices[0].logprobs.content[i].top_logprobs`` included; ``autointerp.testing.fake.FakeLLM`` uses it too, so the fake
server and the in-process fake speak exactly the same wire format.

A request with ``"stream": true`` is answered as server-sent events, one ``chat.completion.chunk`` per token (with
its logprobs when asked; then a usage chunk when ``stream_options.include_usage``), ``token_latency_s`` apart, as a
server generating them would; when the client closes the connection the server stops, and ``streamed_tokens`` says
how many token chunks each streamed request got written before it ended or was abandoned.

``quirks`` makes the server bend the protocol as some real endpoints do (tests/test_llm_quirks.py plays each):
"no_stream" answers a ``"stream": true`` request with one plain JSON body; "no_done" ends streams without
``data: [DONE]``; "usage_without_choices" sends the final usage chunk with no ``choices`` key at all. Per request, a
handler can also answer ``CutStream`` (a stream cut mid-reply), ``BodyError`` (HTTP 200 with an ``error`` object) or
``ProxyPage`` (an HTML error page with a 502 or 504).

The server records every request body in ``requests`` and the most requests it had in flight in ``max_in_flight``.
It never records, logs or echoes request headers (so never the Authorization header).
"""

from __future__ import annotations

import html
import json
import math
import random
import re
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from autointerp.testing.echo_model import EchoModel, TextReply, text_completion_dict
from autointerp.testing.compact_answer import compact_answer
from autointerp.testing.replies import completion_dict, completion_json, estimate_tokens, stream_chunks  # noqa: F401
from autointerp.testing.outcomes import (  # noqa: F401 (re-exported)
    BodyError,
    CutStream,
    Garbage,
    Handler,
    Hang,
    HTTPFailure,
    Outcome,
    ProxyPage,
    Reply,
)
from autointerp.testing.outcomes import constrained
from autointerp.testing.judge_answers import classify_reply
from autointerp.llm.tokens import message_text

HOST = "127.0.0.1"


def dumps(value: Any) -> bytes:
    """``value`` as JSON bytes: orjson (a streamed simulator reply is thousands of events: json.dumps made the server
    the bottleneck of benchmarks/bench_llm.py), else json."""
    return _orjson.dumps(value) if _orjson is not None else json.dumps(value).encode()


try:
    import orjson as _orjson
except ImportError:  # pragma: no cover
    _orjson = None

QUIRKS = frozenset({"no_stream", "no_done", "usage_without_choices"})  # see the module docstring


# --- the default handler: a deterministic simulator (for simulation prompts) and explainer (for the rest) -------

_BLOCK_RE = re.compile(r"<start>\n(.*?)\n?<end>", re.S)
_QUOTED_RE = re.compile(r"[\"'\u201c\u2018]([^\"'\u201d\u2019]+)[\"'\u201d\u2019]")
_VALUE_LINE_RE = re.compile(r"^(.*)\t(\d+)$", re.M)
# The distribution the default simulator puts on the number it writes: mostly sure, a little hedging.
HIGH_TOP_LOGPROBS = {"10": math.log(0.9), "9": math.log(0.05), "0": math.log(0.05)}
LOW_TOP_LOGPROBS = {"0": math.log(0.95), "1": math.log(0.05)}


def default_handler(request: dict[str, Any]) -> Reply:
    """Simulate or explain, deterministically, from the last user message.

    Detection and fuzzing prompts (``Explanation of the neuron:`` then ``Example N:`` lines): see
    ``autointerp.testing.judge_answers``.
    Simulation prompt (windows of ``token<TAB>`` lines between <start> and <end>): predict 10 for a token that, stripped
    and lower-cased, is quoted in the explanation before the first window, else 0; echo ``token<TAB>N`` lines, with top
    logprobs on each number (a compact prompt: the same, as ``N:`` lines). Any other prompt: explain the
    ``token<TAB>value`` lines it shows by the token with the highest value, as ``Fires on the token "X".``
    """
    users = [m for m in request.get("messages", []) if m.get("role") == "user"]
    prompt = message_text(users[-1]) if users else ""
    judged = classify_reply(prompt)
    if judged is not None:
        return judged
    if (compact := compact_answer(prompt, _QUOTED_RE, HIGH_TOP_LOGPROBS, LOW_TOP_LOGPROBS)) is not None:
        return compact  # the compact format (autointerp.scoring.compact): the same predictions, "10" spelled "X"
    blocks = [block.split("\n") for block in _BLOCK_RE.findall(prompt)]
    if blocks and all(line.endswith("\t") for block in blocks for line in block):
        explanation = prompt[: prompt.index("<start>")]
        quoted = {q.strip().lower() for q in _QUOTED_RE.findall(explanation)}
        return _simulate(blocks, quoted)
    lines = [(token.strip(), int(value)) for token, value in _VALUE_LINE_RE.findall(prompt)]
    if not lines:
        return Reply(text="Fires on no particular token.")
    best = max(lines, key=lambda line: line[1])[0]
    return Reply(text=f'Fires on the token "{best}".')


def _simulate(blocks: list[list[str]], quoted: set[str]) -> Reply:
    tokens: list[tuple[str, dict[str, float]]] = []
    for block in blocks:
        tokens += [("<start>", {}), ("\n", {})]
        for line in block:
            shown = line[:-1]
            high = shown.strip().lower() in quoted
            value, top = ("10", HIGH_TOP_LOGPROBS) if high else ("0", LOW_TOP_LOGPROBS)
            tokens += [(shown, {}), ("\t", {}), (value, top), ("\n", {})]
        tokens += [("<end>", {}), ("\n", {})]
    return Reply(tokens=tokens)


class FaultInjector:
    """A handler that fails a seeded-random fraction of requests (429 / 500 / garbage), else asks ``inner``."""

    def __init__(
        self,
        inner: Handler = default_handler,
        *,
        rate_429: float = 0.0,
        rate_500: float = 0.0,
        rate_garbage: float = 0.0,
        retry_after_s: float | None = None,
        seed: int = 0,
    ):
        assert rate_429 + rate_500 + rate_garbage <= 1.0
        self.inner = inner
        self.rates = (rate_429, rate_500, rate_garbage)
        self.retry_after_s = retry_after_s
        self.injected = {"429": 0, "500": 0, "garbage": 0}
        self._rng = random.Random(seed)
        self._lock = threading.Lock()

    def __call__(self, request: dict[str, Any]) -> Outcome | str:
        with self._lock:
            draw = self._rng.random()
            rate_429, rate_500, rate_garbage = self.rates
            if draw < rate_429:
                self.injected["429"] += 1
                return HTTPFailure(429, retry_after_s=self.retry_after_s, message="rate limited (injected)")
            if draw < rate_429 + rate_500:
                self.injected["500"] += 1
                return HTTPFailure(500, message="server error (injected)")
            if draw < rate_429 + rate_500 + rate_garbage:
                self.injected["garbage"] += 1
                return Garbage()
        return self.inner(request)


def scripted(*outcomes: Outcome | str, then: Handler = default_handler) -> Handler:
    """A handler that answers the first requests with ``outcomes`` in order, and every later one with ``then``."""
    queue = list(outcomes)
    lock = threading.Lock()

    def handler(request: dict[str, Any]) -> Outcome | str:
        with lock:
            if queue:
                return queue.pop(0)
        return then(request)

    return handler


# --- the server ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Traits:
    """Which kind of endpoint the fake server plays, beyond its answers: ``parallel`` slots announced by ``GET
    /props`` (llama.cpp's; None: 404, as most servers), ``escape_html`` (unicode-escaped ``<``, ``>``, ``&`` in JSON,
    as some servers write), the ``response_formats`` dialects it honours (``outcomes.constrained``) and the protocol
    ``quirks`` it shows (``QUIRKS``)."""

    parallel: int | None = None
    escape_html: bool = False
    response_formats: tuple[str, ...] = ()
    quirks: tuple[str, ...] | frozenset[str] = ()


class FakeOpenAIServer:
    """An OpenAI-compatible server on 127.0.0.1 and an ephemeral port, in a background thread; a context manager."""

    def __init__(
        self, handler: Handler = default_handler, *, latency_s: float = 0.0, model: str = "fake-model", port: int = 0,
        token_latency_s: float = 0.0, completion_handler: Handler | None = None, traits: Traits = Traits(),
    ):
        unknown = set(traits.quirks) - QUIRKS
        assert not unknown, f"unknown quirks {sorted(unknown)}; known: {sorted(QUIRKS)}"
        self.quirks = frozenset(traits.quirks)
        self.handler = handler
        self.completion_handler = completion_handler or EchoModel()  # POST /v1/completions
        self.parallel = traits.parallel  # GET /props answers {"total_slots": parallel}; None: 404, as most servers
        self.escape_html = traits.escape_html
        self.response_formats = traits.response_formats  # response_format dialects honoured (outcomes.constrained)
        self.latency_s = latency_s  # added before every chat-completion answer
        self.token_latency_s = token_latency_s  # between the chunks of a streamed answer
        self.streamed_tokens: list[int] = []  # per streamed request: token chunks written before it ended
        self.model = model  # the one model listed by GET /v1/models
        self.requests: list[dict[str, Any]] = []  # request bodies, in arrival order (headers are never kept)
        self.in_flight = 0
        self.max_in_flight = 0
        self.lock = threading.Lock()
        self.stopping = threading.Event()  # set on exit: ends latencies and hangs early
        self.port = port  # 0: a free port chosen by the system
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        assert self._httpd is not None, "use FakeOpenAIServer as a context manager"
        return f"http://{HOST}:{self._httpd.server_address[1]}/v1"

    def __enter__(self) -> FakeOpenAIServer:
        self._httpd = ThreadingHTTPServer((HOST, self.port), _RequestHandler)
        self._httpd.daemon_threads = True
        self._httpd.app = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.01}, name="fake-openai", daemon=True
        )
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._httpd is not None and self._thread is not None
        self.stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in separate writes: without it each reply waits ~40 ms
    timeout = 30  # seconds an idle keep-alive connection is kept

    @property
    def app(self) -> FakeOpenAIServer:
        return self.server.app  # type: ignore[attr-defined]

    def log_message(self, format: str, *args: Any) -> None:
        """Log nothing: no request line, and never a header."""

    def do_GET(self) -> None:
        if self.path.rstrip("/") == "/props" and self.app.parallel is not None:
            return self._send_json(200, {"total_slots": self.app.parallel})
        if self.path.rstrip("/") != "/v1/models":
            return self._send_json(404, _error("not found", "invalid_request_error"))
        model = {"id": self.app.model, "object": "model", "created": 0, "owned_by": "autointerp"}
        self._send_json(200, {"object": "list", "data": [model]})

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        path = self.path.rstrip("/")
        if path not in ("/v1/chat/completions", "/v1/completions"):
            return self._send_json(404, _error("not found", "invalid_request_error"))
        try:
            request = json.loads(body)
        except ValueError:
            return self._send_json(400, _error("request body is not JSON", "invalid_request_error"))
        app = self.app
        with app.lock:
            app.requests.append(request)
            app.in_flight += 1
            app.max_in_flight = max(app.max_in_flight, app.in_flight)
        try:
            app.stopping.wait(app.latency_s)
            chat = path == "/v1/chat/completions"
            seen = _escaped(request) if chat and app.escape_html else request  # what the model reads
            try:
                outcome = constrained(app.handler(seen), seen, app.response_formats) if chat else \
                    app.completion_handler(seen)
            except Exception as exc:  # a broken handler shows up as a 500 that names it, not a dropped connection
                outcome = HTTPFailure(500, message=f"handler failed: {exc!r}")
            self._answer(outcome, seen)
        finally:
            with app.lock:
                app.in_flight -= 1

    def _answer(self, outcome: Outcome | str, request: dict[str, Any]) -> None:
        try:
            if isinstance(outcome, HTTPFailure):
                kind = "rate_limit_exceeded" if outcome.status == 429 else "server_error"
                headers = {} if outcome.retry_after_s is None else {"Retry-After": f"{outcome.retry_after_s:g}"}
                self._send_json(outcome.status, _error(outcome.message, kind), headers)
            elif isinstance(outcome, Hang):
                self.app.stopping.wait(outcome.seconds)
                self.close_connection = True
            elif isinstance(outcome, Garbage):
                self._send(200, outcome.text.encode(), outcome.content_type)
            elif isinstance(outcome, ProxyPage):
                page = (f"<html>\r\n<head><title>{outcome.title}</title></head>\r\n<body>\r\n<center><h1>"
                        f"{outcome.title}</h1></center>\r\n<hr><center>nginx</center>\r\n" + " " * 600 +
                        "</body>\r\n</html>\r\n")
                self._send(outcome.status, page.encode(), "text/html")
            elif isinstance(outcome, BodyError):
                error = {"message": outcome.message, "type": outcome.type, "param": None, "code": outcome.code}
                if request.get("stream") and "no_stream" not in self.app.quirks:
                    self._stream_events([{"error": error}], request)
                else:
                    self._send_json(200, {"error": error})
            elif isinstance(outcome, CutStream):
                body = completion_dict(outcome.reply, request)
                if request.get("stream") and "no_stream" not in self.app.quirks:
                    chunks = [c for c in stream_chunks(body) if c.get("tokens")][: outcome.after]
                    self._stream_events(chunks, request, done=False)
                else:
                    self._send(200, json.dumps(body).encode(), "application/json")
            elif isinstance(outcome, TextReply):
                self._send(200, json.dumps(text_completion_dict(outcome, request)).encode(), "application/json")
            elif request.get("stream") and "no_stream" not in self.app.quirks:
                self._stream(completion_dict(outcome, request), request)
            else:
                self._send(200, completion_json(outcome, request).encode(), "application/json")
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout) before the answer
            self.close_connection = True

    def _stream(self, body: dict[str, Any], request: dict[str, Any]) -> None:
        """``body`` as server-sent events: one chunk per token (see the module docstring)."""
        chunks = stream_chunks(body, include_usage=bool((request.get("stream_options") or {}).get("include_usage")))
        if chunks[-1].get("usage") and "usage_without_choices" in self.app.quirks:
            chunks[-1] = {k: v for k, v in chunks[-1].items() if k != "choices"}
        self._stream_events(chunks, request)

    def _stream_events(self, chunks: list[dict[str, Any]], request: dict[str, Any], done: bool = True) -> None:
        """``chunks`` as server-sent events, ``token_latency_s`` apart (written at once when it is 0, as a server
        far ahead of its client would have them read), then ``[DONE]`` unless ``done`` is False or the "no_done"
        quirk is on."""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        app, written = self.app, 0
        done = done and "no_done" not in app.quirks
        try:
            if not app.token_latency_s:
                events = b"".join(b"data: " + dumps(chunk) + b"\n\n" for chunk in chunks)
                self.wfile.write(events + (b"data: [DONE]\n\n" if done else b""))
                written = sum(chunk.get("tokens", 0) for chunk in chunks)
                return
            for chunk in chunks:
                self.wfile.write(b"data: " + dumps(chunk) + b"\n\n")
                self.wfile.flush()
                written += chunk.get("tokens", 0)
                if app.stopping.wait(app.token_latency_s):
                    break
            if done:
                self.wfile.write(b"data: [DONE]\n\n")
        finally:
            with app.lock:
                app.streamed_tokens.append(written)

    def _send_json(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json", headers)

    def _send(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)


def _escaped(request: dict[str, Any]) -> dict[str, Any]:
    """The request as a chat template that HTML-escapes message text shows it to the model."""
    messages = [{**m, "content": html.escape(m["content"], quote=False)} if isinstance(m.get("content"), str) else m
                for m in request.get("messages", [])]
    return {**request, "messages": messages}


def _error(message: str, kind: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": kind}}


def main() -> None:
    """Serve ``default_handler`` in the foreground (for benchmarks and manual checks) until interrupted."""
    import argparse

    parser = argparse.ArgumentParser(description="A fake OpenAI-compatible server on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added before every answer")
    parser.add_argument("--quirk", action="append", default=[], choices=sorted(QUIRKS),
                        help="bend the protocol as some endpoints do (repeatable)")
    args = parser.parse_args()
    with FakeOpenAIServer(latency_s=args.latency, port=args.port, traits=Traits(quirks=tuple(args.quirk))) as srv:
        print(f"serving on {srv.base_url} (Ctrl-C to stop)", flush=True)
        try:
            srv.stopping.wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
