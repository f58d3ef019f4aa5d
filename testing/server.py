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
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from autointerp.testing.echo_model import EchoModel, TextReply, text_completion_dict
from autointerp.testing.outcomes import Garbage, Handler, Hang, HTTPFailure, Outcome, Reply  # noqa: F401 (re-exported)
from autointerp.testing.outcomes import constrained
from autointerp.testing.judge_answers import classify_reply
from autointerp.llm.tokens import MESSAGE_OVERHEAD_TOKENS, message_text

HOST = "127.0.0.1"


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


def _token_logprob(token: str, top: dict[str, float], n_top: int) -> dict[str, Any]:
    ranked = sorted(top.items(), key=lambda item: -item[1])[:n_top]
    return {
        "token": token,
        "logprob": top.get(token, 0.0),
        "bytes": list(token.encode()),
        "top_logprobs": [{"token": t, "logprob": lp, "bytes": list(t.encode())} for t, lp in ranked],
    }


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
    logprobs on each number. Any other prompt: explain the ``token<TAB>value`` lines it shows by the token with the
    highest value, as ``Fires on the token "X".``
    """
    users = [m for m in request.get("messages", []) if m.get("role") == "user"]
    prompt = message_text(users[-1]) if users else ""
    judged = classify_reply(prompt)
    if judged is not None:
        return judged
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


class FakeOpenAIServer:
    """An OpenAI-compatible server on 127.0.0.1 and an ephemeral port, in a background thread; a context manager."""

    def __init__(
        self, handler: Handler = default_handler, *, latency_s: float = 0.0, model: str = "fake-model", port: int = 0,
        token_latency_s: float = 0.0,
        completion_handler: Handler | None = None, parallel: int | None = None, escape_html: bool = False,
        response_formats: tuple[str, ...] = (),
    ):
        self.handler = handler
        self.completion_handler = completion_handler or EchoModel()  # POST /v1/completions
        self.parallel = parallel  # GET /props answers {"total_slots": parallel}; None: 404, as most servers
        self.escape_html = escape_html
        self.response_formats = response_formats  # response_format dialects honoured (outcomes.constrained)
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
            elif isinstance(outcome, TextReply):
                self._send(200, json.dumps(text_completion_dict(outcome, request)).encode(), "application/json")
            elif request.get("stream"):
                self._stream(completion_dict(outcome, request), request)
            else:
                self._send(200, completion_json(outcome, request).encode(), "application/json")
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout) before the answer
            self.close_connection = True

    def _stream(self, body: dict[str, Any], request: dict[str, Any]) -> None:
        """``body`` as server-sent events: one chunk per token (see the module docstring)."""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        app, written = self.app, 0
        try:
            for chunk in stream_chunks(body, include_usage=bool((request.get("stream_options") or {}).get(
                    "include_usage"))):
                self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                self.wfile.flush()
                written += chunk.get("tokens", 0)
                if app.token_latency_s and app.stopping.wait(app.token_latency_s):
                    break
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
    args = parser.parse_args()
    with FakeOpenAIServer(latency_s=args.latency, port=args.port) as srv:
        print(f"serving on {srv.base_url} (Ctrl-C to stop)", flush=True)
        try:
            srv.stopping.wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
