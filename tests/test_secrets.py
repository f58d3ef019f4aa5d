"""No API key leaves the process: an endpoint that echoes the key in every way it can, then every place a run keeps or
shows text (the results DB and its WAL, the agent checkpoints, logs, stdout, stderr, --debug tracebacks, every
--format) is searched for any run of 8 characters of it. Credentials in a URL are refused before anything is written."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import sqlite_utils

from autointerp.llm.client import ChatModelBase
from autointerp.llm.profiles import ModelProfile
from autointerp.llm.secrets import MIN_FRAGMENT, escapes_may_hide, scrub_secrets, scrub_text, shorten
from autointerp.testing.server import completion_json, default_handler

# Not shaped like any provider's key, so only the client's knowledge of its own key can scrub it (letters that no hex
# hash or uuid in the DB holds, so a hit is a leak and not chance).
KEY = "PLANTEDKEYqwrtzuvxyjmnpQWRTZUVXYJMNP"


def fragments(key: str = KEY) -> list[str]:
    return [key[i:i + MIN_FRAGMENT] for i in range(len(key) - MIN_FRAGMENT + 1)]


def leaks(data: bytes | str, key: str = KEY) -> list[str]:
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    return [f for f in fragments(key) if f in text]


def test_scrub_text_removes_the_key_its_fragments_and_credential_shapes():
    assert scrub_text(f"x {KEY} y", [KEY]) == "x *** y"
    assert leaks(scrub_text(f"Bearer {KEY[:12]}", [KEY])) == []  # a key the endpoint cut short
    assert leaks(scrub_text(f"..{KEY[5:19]}..", [KEY])) == []  # a piece from its middle
    assert scrub_text("http://user:pw@host:1/v1?x=1&api_key=abc", []) == "http://***@host:1/v1?x=1&api_key=***"
    assert scrub_text("Authorization: Bearer abcdefghijklmnop", []) == "Authorization: Bearer ***"
    assert scrub_text("a key sk-proj-abcdefghijklmnopqrst here") == "a key *** here"
    assert scrub_text("fires on 'key=' in calls like sorted(x, key=len)") == "fires on 'key=' in calls like sorted(x, key=len)"
    assert scrub_text('{"a": "?key=v\\"x"}') == '{"a": "?key=***\\"x"}'  # JSON stays JSON
    assert scrub_text(f"{KEY}", [KEY], patterns=False) == "***"


def test_scrub_happens_before_the_cut():
    body = "x" * 180 + f"Bearer {KEY}"  # the key straddles character 200
    assert leaks(shorten(body, 200, [KEY])) == []
    assert leaks(body[:200]) != []  # the old order (cut, then scrub the whole key) would leave a prefix


class Wire(ChatModelBase):
    """A transport whose endpoint answers ``body`` (JSON text, handed over as ``LLMClient`` hands every body)."""

    def __init__(self, body: str):
        super().__init__(ModelProfile(model="m"), "wire", ListSink(), secret=KEY)
        self.body = body

    async def _send(self, params):
        return self.body


class ListSink:
    def __init__(self):
        self.records = []

    def record_call(self, record):
        self.records.append(record)


def reply_json(content: str, arguments: str, fingerprint: str = "fp") -> str:
    return json.dumps({"id": "c1", "system_fingerprint": fingerprint, "choices": [{"index": 0, "finish_reason": "stop",
                       "message": {"role": "assistant", "content": content, "tool_calls": [
                           {"id": "t1", "type": "function", "function": {"name": "run_text", "arguments": arguments}}]}}],
                       "usage": {"prompt_tokens": 3, "completion_tokens": 5}})


def test_a_key_spelled_with_json_escapes_reaches_no_result_or_record():
    def escaped(text: str) -> str:
        return "".join(f"\\u{ord(c):04x}" for c in text)

    body = reply_json("I saw @KEY@ and @PIECE@", json.dumps({"text": "@KEY@"}), fingerprint="fp-@PIECE@")
    wire = Wire(body.replace("@KEY@", escaped(KEY)).replace("@PIECE@", KEY[:4] + escaped(KEY[4:13])))
    result = asyncio.run(wire.chat([{"role": "user", "content": "hi"}], purpose="t"))
    assert result.text == "I saw *** and ***" and result.tool_calls[0]["arguments"] == '{"text": "***"}'
    assert leaks(repr(result) + json.dumps(result.raw) + repr(wire.sink.records)) == []


def test_only_escapes_that_spell_a_key_character_need_the_parsed_strings_scrubbed():
    assert escapes_may_hide(r'{"a": "x\u0050y"}', [KEY]) and escapes_may_hide(r'{"a": "x\u004A"}', [KEY])  # P, J
    assert not escapes_may_hide(r'{"a": "line\n\ttab \u00e9 \u0061"}', [KEY])  # a simulator reply's escapes
    assert escapes_may_hide(r'{"a": "ab\/cd"}', ["abc/defghij"]) and not escapes_may_hide(r'{"a": "ab\/cd"}', [KEY])
    assert not escapes_may_hide(r'{"a": "\u0050"}', [])


def test_a_reply_passes_through_the_scrubber_once(monkeypatch):
    from autointerp.llm import secrets

    seen = []
    scrub_known = secrets._scrub_known
    monkeypatch.setattr(secrets, "_scrub_known", lambda text, secret: seen.append(text) or scrub_known(text, secret))
    wire = Wire(reply_json(f"MARKER says {KEY}", json.dumps({"text": f"MARKER {KEY[2:20]}"})))
    result = asyncio.run(wire.chat([{"role": "user", "content": "hi"}], purpose="t"))
    assert result.text == "MARKER says ***" and result.tool_calls[0]["arguments"] == '{"text": "MARKER ***"}'
    assert len([text for text in seen if "MARKER" in text]) == 1  # the body's text, whole, before it is parsed
    assert leaks(repr(result) + json.dumps(result.raw) + repr(wire.sink.records)) == []


def test_config_snapshot_has_no_secret_of_any_form():
    snapshot = scrub_secrets({"models": {"m": {"base_url": f"http://me:{KEY}@host/v1", "api_key": KEY,
                                               "api_key_env": "MY_KEY", "headers": {"Authorization": f"Bearer {KEY}"}}},
                              "list": [f"https://host/v1?token={KEY}"]})
    assert leaks(json.dumps(snapshot)) == []
    assert snapshot["models"]["m"]["api_key_env"] == "MY_KEY" and "host/v1" in snapshot["models"]["m"]["base_url"]


class Hostile:
    """An OpenAI-compatible endpoint that echoes the Authorization header's key in every way an endpoint can: error
    bodies short and long (the key across character 200), response headers, URLs with user:KEY@, a body that is a
    text/event-stream, JSON that is not a chat completion, the reply's text and its tool-call arguments. Every
    seventh request and after is a proper reply, so some units finish."""

    WAYS = ("error_400_at_200", "error_500_long", "stream_text", "not_a_completion", "reply_with_key",
            "error_401_url", "tool_call_args")

    def __init__(self):
        self.served: dict[str, int] = {}
        self.count = 0
        self.lock = threading.Lock()

    def answer(self, request: dict, auth: str) -> tuple[int, dict[str, str], str, str]:
        key = auth.removeprefix("Bearer ")
        with self.lock:
            way = self.WAYS[self.count % len(self.WAYS)] if self.count < 4 * len(self.WAYS) else "plain"
            self.count += 1
            self.served[way] = self.served.get(way, 0) + 1
        echo = {"X-Echo-Auth": auth, "X-Debug-Url": f"http://user:{key}@upstream/v1"}
        error = lambda msg: json.dumps({"error": {"message": msg, "type": "invalid_request_error"}})
        if way == "error_400_at_200":
            return 400, echo, "application/json", error("p" * 150 + f" invalid key: Bearer {key}")
        if way == "error_500_long":
            return 500, echo, "application/json", error("q" * 5000 + f" key={key} " + "r" * 5000)
        if way == "stream_text":
            chunk = json.dumps({"choices": [{"delta": {"content": f"secret {key}"}}]})
            return 200, echo, "text/event-stream", "data: " + "s" * 170 + "\n\n" + f"data: {chunk}\n\ndata: [DONE]\n\n"
        if way == "not_a_completion":
            return 200, echo, "application/json", json.dumps({"detail": "t" * 180 + key,
                                                             "url": f"http://me:{key}@h/v1?api_key={key}"})
        if way == "error_401_url":
            return 401, echo, "application/json", error(f"see https://me:{key}@host/v1?api_key={key[:12]}")
        reply = default_handler(request)
        if way == "reply_with_key":
            reply = type(reply)(text=f"{reply.text} (I saw {key} and {key[:10]})", tokens=reply.tokens)
            if reply.tokens is not None:
                reply = type(reply)(tokens=[(f"{key}{t}" if i == 0 else t, top) for i, (t, top) in
                                            enumerate(reply.tokens)])
        if way == "tool_call_args":
            from autointerp.testing.server import Reply

            reply = Reply(text="", tool_calls=[("run_text", {"texts": [f"def f(): return '{key}'"]}),
                                               ("no_such_tool", f'{{"x": "{key}", "y": "{key[:9]}"}}')])
        return 200, echo, "application/json", completion_json(reply, request)


@pytest.fixture
def hostile():
    endpoint = Hostile()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def do_POST(self):
            request = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
            status, headers, ctype, body = endpoint.answer(request, self.headers.get("Authorization", ""))
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    endpoint.base_url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    yield endpoint
    httpd.shutdown()
    httpd.server_close()


def write_profile(path, base_url: str, **extra) -> None:
    lines = ["[models.hostile]", 'model = "fake-model"', f'base_url = "{base_url}"', 'api_key_env = "HOSTILE_KEY"',
             "max_retries = 1", "price_in_per_mtok = 1.0", "price_out_per_mtok = 2.0"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in extra.items()]
    path.write_text("\n".join(lines) + "\n")


def test_a_key_echoed_by_the_endpoint_reaches_no_sink(cli, tiny_checkpoints, text_corpus, isolated, hostile,
                                                      monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("HOSTILE_KEY", KEY)
    write_profile(isolated / "autointerp.toml", hostile.base_url)
    args = ["run", "--layer", "1", "--model", str(tiny_checkpoints["opt"]), "--corpus", str(text_corpus),
            "--units", "0:6", "--explainer", "hostile", "--simulator", "hostile", "--revise-rounds", "0",
            "--max-tool-calls", "1", "--concurrency", "2"]
    shown = []
    for extra in ([], ["--format", "json"], ["--fresh", "--debug"]):
        code, out, err = cli(*args, *extra)
        assert code == 0, err
        shown += [out, err]
    assert set(hostile.served) >= set(Hostile.WAYS), hostile.served  # every way was tried on the client
    db = sqlite_utils.Database(isolated / "autointerp.db")
    failures = [r["error"] for r in db["llm_calls"].rows if r["error"]]
    assert failures and all("***" in f or "HTTP" in f or "not" in f for f in failures)
    layer_units = [f"1/{r['unit']}" for r in db.query("SELECT DISTINCT unit FROM units")]
    for unit in layer_units:
        for fmt in ("table", "json"):
            code, out, err = cli("show", unit, "--format", fmt, "--windows", "30")
            shown += [out, err]
    for fmt in ("table", "json", "csv"):
        for by in ([], ["--by", "explainer"], ["--by", "dictionary"]):
            shown += list(cli("leaderboard", "--format", fmt, *by)[1:])
    for fmt in ("table", "json"):
        code, out, err = cli("models", "--check", "--format", fmt)
        assert code == 0, err
        shown += [out, err]
    assert "***" in "".join(shown)  # the check printed the endpoint's scrubbed complaints
    db.close()
    files = sorted(p for p in isolated.iterdir() if p.name.startswith("autointerp.db"))
    assert any(p.name.endswith(".agent.sqlite") for p in files)  # the agent's checkpoints (failed units keep theirs)
    found = {p.name: leaks(p.read_bytes()) for p in files}
    found["stdout/stderr"] = leaks("\n".join(shown))
    found["logs"] = leaks("\n".join(r.getMessage() for r in caplog.records))
    assert all(not v for v in found.values()), found


def test_a_failing_run_with_debug_shows_no_key_in_its_traceback(cli, tiny_checkpoints, text_corpus, isolated,
                                                                 hostile, monkeypatch):
    monkeypatch.setenv("HOSTILE_KEY", KEY)
    write_profile(isolated / "autointerp.toml", hostile.base_url)
    code, out, err = cli("--debug", "models", "--check")
    assert code == 0 and leaks(out + err) == []


@pytest.mark.parametrize("where", ["profile", "env"])
def test_credentials_in_a_url_are_refused_before_anything_is_written(cli, isolated, monkeypatch, where):
    url = f"http://user:{KEY}@127.0.0.1:9/v1"
    if where == "profile":
        write_profile(isolated / "autointerp.toml", url)
    else:
        monkeypatch.setenv("OPENAI_BASE_URL", url)
        monkeypatch.setenv("OPENAI_API_KEY", "x")
    explainer = "hostile" if where == "profile" else "openai:gpt-4o-mini"
    commands = [["run", "--layer", "0", "--explainer", explainer], ["--debug", "run", "--layer", "0", "--simulator",
                                                                      explainer]]
    if where == "profile":
        commands += [["models"], ["models", "--format", "json"], ["leaderboard"]]
    for args in commands:
        code, out, err = cli(*args)
        assert code == 2, (args, out, err)
        assert "api_key_env" in err and leaks(out + err) == [], err
        if "--debug" not in args:
            assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (isolated / "autointerp.db").exists()
