"""Endpoints that bend the protocol, played by the test server, against the real client over HTTP on 127.0.0.1: each
shape is either used or a clear, typed failure, and one that repeats identically stops the client
(``EndpointMismatch``). The table of shapes is in docs/llm-servers.md."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3

import pytest

from autointerp.llm.client import LLMClient, LLMError
from autointerp.llm.profiles import ModelProfile
from autointerp.llm.types import EndpointMismatch
from autointerp.testing.server import (
    BodyError,
    CutStream,
    FakeOpenAIServer,
    Garbage,
    HTTPFailure,
    ProxyPage,
    Reply,
    Traits,
    scripted,
)

HELLO = [{"role": "user", "content": "hello"}]
LINES = "first line\nsecond line\nthird line\n"
KEY = "sk-quirks-0123456789abcdefghijklmnop"


def no_second_line(text: str) -> str | None:
    return "two lines" if text.count("\n") >= 2 else None


def profile(srv: FakeOpenAIServer, **kw) -> ModelProfile:
    return ModelProfile(model="fake-model", base_url=srv.base_url, **{"max_retries": 3, **kw})


async def calls(prof: ModelProfile, *requests: dict, client_box: list | None = None) -> list:
    """Each request's ChatResult, or the exception it raised, in order, through one client."""
    out = []
    async with LLMClient(prof, "quirky", backoff_base_s=0.001) as client:
        for kw in requests:
            try:
                out.append(await client.chat(HELLO, purpose="test", **kw))
            except (LLMError, EndpointMismatch) as exc:
                out.append(exc)
        if client_box is not None:
            client_box.append(client)
    return out


def test_a_json_body_to_a_streamed_request_is_the_reply_and_the_endpoint_is_not_asked_to_stream_again(caplog):
    reply = Reply(tokens=[("first", {"first": -0.1}), (" line\n", {}), ("second line\n", {}), ("third line\n", {})])
    with FakeOpenAIServer(lambda request: reply, traits=Traits(quirks={"no_stream"})) as srv:
        box: list = []
        with caplog.at_level(logging.WARNING, logger="autointerp.llm"):
            first, second = asyncio.run(calls(profile(srv), {"stop_when": no_second_line, "logprobs": True},
                                              {"stop_when": no_second_line}, client_box=box))
            (third,) = asyncio.run(calls(profile(srv), {"stop_when": no_second_line}))  # a new client
    # read whole, then cut where a stream would have been stopped
    assert first.text == "first line\nsecond line\n" and first.stopped == "two lines"
    assert [t.token for t in first.logprobs] == ["first", " line\n", "second line\n"]
    assert second.text == third.text == first.text
    assert [r.get("stream") for r in srv.requests] == [True, None, None]  # asked once, then not again
    notes = [r for r in caplog.records if "one JSON body" in r.getMessage()]
    assert len(notes) == 1 and srv.base_url in notes[0].getMessage() and box[0].notes == [notes[0].getMessage()]


def test_a_profile_with_stream_false_never_asks_for_a_stream():
    with FakeOpenAIServer(lambda request: LINES) as srv:
        (result,) = asyncio.run(calls(profile(srv, stream=False), {"stop_when": no_second_line}))
    assert result.text == "first line\nsecond line\n" and result.stopped == "two lines"
    assert "stream" not in srv.requests[0]


def test_a_stream_without_done_is_used_when_the_reply_ended():
    with FakeOpenAIServer(lambda request: LINES, traits=Traits(quirks={"no_done"})) as srv:
        (result,) = asyncio.run(calls(profile(srv, max_retries=0), {"stop_when": lambda text: None}))
    assert result.text == LINES and result.finish_reason == "stop" and result.tokens_out > 0


def test_a_stream_cut_mid_reply_is_a_retryable_failure():
    with FakeOpenAIServer(scripted(CutStream(LINES, after=2), then=lambda request: LINES)) as srv:
        (result,) = asyncio.run(calls(profile(srv), {"stop_when": lambda text: None}))
    assert result.text == LINES and len(srv.requests) == 2  # cut, then whole on the retry
    with FakeOpenAIServer(lambda request: CutStream(LINES, after=2)) as srv:
        (failure,) = asyncio.run(calls(profile(srv, max_retries=1), {"stop_when": lambda text: None}))
    assert isinstance(failure, LLMError) and "cut mid-reply" in str(failure) and "gave up after 2 tries" in str(failure)


@pytest.mark.parametrize("stream", [False, True])
def test_http_200_with_an_error_object_fails_with_the_endpoints_message(stream):
    kw = {"stop_when": lambda text: None} if stream else {}
    final = BodyError("model 'fake-model' does not exist", type="invalid_request_error")
    with FakeOpenAIServer(lambda request: final) as srv:
        (failure,) = asyncio.run(calls(profile(srv), kw))
    assert isinstance(failure, LLMError) and "model 'fake-model' does not exist" in str(failure)
    assert "HTTP 200 with an error object" in str(failure) and len(srv.requests) == 1  # not retried
    busy = BodyError("the server is overloaded", type="server_error", code=503)
    with FakeOpenAIServer(scripted(busy, then=lambda request: "fine")) as srv:
        (result,) = asyncio.run(calls(profile(srv), kw))
    assert result.text == "fine" and len(srv.requests) == 2  # a transient one is retried


@pytest.mark.parametrize("status", [502, 504])
def test_an_html_error_page_from_a_proxy_is_one_short_line_and_retried(status):
    page = ProxyPage(status, title=f"{status} Gateway Trouble")
    with FakeOpenAIServer(scripted(page, then=lambda request: "fine")) as srv:
        (result,) = asyncio.run(calls(profile(srv), {}))
    assert result.text == "fine" and len(srv.requests) == 2
    with FakeOpenAIServer(lambda request: page) as srv:
        (failure,) = asyncio.run(calls(profile(srv, max_retries=1), {"stop_when": lambda text: None}))
    message = str(failure)
    assert isinstance(failure, LLMError) and f"HTTP {status}: an HTML page ({status} Gateway Trouble)" in message
    assert "<" not in message and "nginx" not in message and len(message) < 300 and "\n" not in message


def test_a_usage_only_final_chunk_gives_the_token_counts():
    with FakeOpenAIServer(lambda request: LINES, traits=Traits(quirks={"usage_without_choices"})) as srv:
        streamed, plain = asyncio.run(calls(profile(srv, max_retries=0), {"stop_when": lambda text: None}, {}))
    # the server's own usage (its ~4 characters a token), not the client's tokenizer
    assert (streamed.tokens_in, streamed.tokens_out) == (plain.tokens_in, plain.tokens_out)
    assert streamed.raw["usage"] == plain.raw["usage"]


@pytest.mark.parametrize("stream", [False, True])
def test_content_null_is_empty_text_or_tool_calls(stream):
    kw = {"stop_when": lambda text: None} if stream else {}
    outcomes = scripted(Reply(), Reply(tool_calls=[("record", {"n": 7})]))
    with FakeOpenAIServer(outcomes) as srv:
        empty, tool = asyncio.run(calls(profile(srv, max_retries=0), kw, kw))
    assert empty.text == "" and empty.tool_calls == []
    assert tool.text == "" and tool.tool_calls == [{"id": "call_0", "name": "record", "arguments": '{"n": 7}'}]


def test_the_same_mismatch_on_three_calls_in_a_row_raises_endpoint_mismatch(monkeypatch):
    """JSON that is not a chat completion, every time: each call tries twice (the same answer twice is not retried
    further), the third call raises EndpointMismatch naming the endpoint and what it did, and a later call raises it
    at once, sending nothing. The key is nowhere in the message."""
    monkeypatch.setenv("QUIRKS_KEY", KEY)
    not_a_completion = Garbage(text='{"detail": "no such route"}')
    with FakeOpenAIServer(lambda request: not_a_completion) as srv:
        results = asyncio.run(calls(profile(srv, max_retries=6, api_key_env="QUIRKS_KEY"), {}, {}, {}, {}))
    first, second, third, fourth = results
    assert isinstance(first, LLMError) and isinstance(second, LLMError) and "not retried further" in str(first)
    assert isinstance(third, EndpointMismatch) and isinstance(fourth, EndpointMismatch)
    message = str(third)
    assert srv.base_url in message and "not a chat completion" in message and "3 calls in a row" in message
    assert "\n" not in message and KEY not in message and KEY[:10] not in message
    assert len(srv.requests) == 6  # 2 tries for each of 3 calls; none for the fourth


def test_a_success_or_another_failure_between_mismatches_starts_the_count_again():
    bad = Garbage(text='{"detail": "no such route"}')
    outcomes = scripted(bad, bad, bad, bad, "ok", bad, bad, HTTPFailure(400), bad, bad)
    with FakeOpenAIServer(outcomes) as srv:
        results = asyncio.run(calls(profile(srv), *({},) * 6))
    kinds = [type(r).__name__ for r in results]
    assert kinds == ["LLMError", "LLMError", "ChatResult", "LLMError", "LLMError", "LLMError"], kinds
    assert len(srv.requests) == 10  # 2 + 2 + 1 + 2 + 1 (a 400 is final) + 2


def test_an_error_object_repeated_on_every_call_raises_endpoint_mismatch():
    with FakeOpenAIServer(lambda request: BodyError("model 'fake-model' does not exist")) as srv:
        results = asyncio.run(calls(profile(srv), {}, {}, {}))
    assert [type(r).__name__ for r in results] == ["LLMError", "LLMError", "EndpointMismatch"]
    assert "does not exist" in str(results[2]) and len(srv.requests) == 3


@pytest.fixture
def tiny(tiny_checkpoints):
    return str(tiny_checkpoints["opt"])


@pytest.mark.slow  # a real run of a tiny model: seconds
def test_a_run_against_an_endpoint_that_never_streams_finishes_every_unit(cli, tiny, text_corpus, isolated, caplog):
    """Issue 23's case: every unit done (the first streamed request's JSON body is read as the reply), the
    endpoint asked to stream once, and the adaptation said once (a warning: on stderr when nothing configured
    logging, as in the command)."""
    with FakeOpenAIServer(traits=Traits(quirks={"no_stream"})) as server:
        (isolated / "autointerp.toml").write_text(
            f'[models.local]\nmodel = "fake-model"\nbase_url = "{server.base_url}"\n')
        code, out, err = cli("run", "--layer", "1", "--model", tiny, "--corpus", str(text_corpus), "--units", "0:4",
                             "--simulator", "local", "--format", "json")
        streamed = sum(bool(r.get("stream")) for r in server.requests)
    assert code == 0, err
    summary = json.loads(out)
    assert summary["units_done"] == 4 and {u["status"] for u in summary["units"]} == {"done"}
    assert streamed <= 4  # the streamed requests in flight when the first answer came; none after it
    notes = [r for r in caplog.records if "answers a streamed request with one JSON body" in r.getMessage()]
    assert len(notes) == 1 and notes[0].levelno == logging.WARNING


@pytest.mark.slow  # a real run of a tiny model: seconds
def test_a_run_against_an_endpoint_that_answers_garbage_stops_calling_it_within_a_few_requests(cli, tiny, text_corpus,
                                                                                               isolated):
    """Every request answered with a body that is not a completion: 3 calls of 2 tries each, then no request at all
    (every later call raises EndpointMismatch at once, a RunStop): the run stops with one line naming the endpoint
    and exit status 1, the units before it failed, the unit in hand and the rest left for the next session."""
    with FakeOpenAIServer(lambda request: Garbage(text='{"detail": "no such route"}')) as server:
        (isolated / "autointerp.toml").write_text(
            f'[models.local]\nmodel = "fake-model"\nbase_url = "{server.base_url}"\n')
        code, out, err = cli("run", "--layer", "1", "--model", tiny, "--corpus", str(text_corpus), "--units", "0:4",
                             "--explainer", "local", "--simulator", "local", "--concurrency", "1", "--format", "json")
        requests = len(server.requests)
    assert requests <= 6, requests
    last = err.strip().splitlines()[-1]  # the lines before it: the estimate, on the progress console
    assert code == 1 and last.startswith("stopped: endpoint mismatch") and "Traceback" not in err, err
    assert f"endpoint mismatch: {server.base_url}" in last and "3 calls in a row" in last
    summary = json.loads(out)
    assert (summary["state"], summary["stop_reason"]) == ("stopped", "endpoint")
    db = sqlite3.connect(isolated / "autointerp.db")
    assert db.execute("SELECT status, stop_reason FROM runs").fetchall() == [("stopped", "endpoint")]
    statuses = [row[0] for row in db.execute("SELECT status FROM explanations")]
    assert statuses == ["failed", "failed"], statuses  # units 0 and 1: the first two failed calls; 2 and 3 left


def test_the_event_reader_gives_the_same_chunks_however_the_body_is_split():
    """Pieces cut anywhere (inside an event, between its line and the blank line), CRLF line ends, comment and
    ``event:`` lines, ``bytes`` arrays, and a ``[DONE]`` after which nothing is read."""
    from autointerp.llm.streaming import EventReader

    chunks = [{"choices": [{"index": 0, "delta": {"content": f"t{i}"},
                            "logprobs": {"content": [{"token": f"t{i}", "logprob": -0.5, "bytes": [116, 48 + i]}]}}]}
              for i in range(5)]
    plain = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\ndata: {\"late\": 1}\n\n"
    odd = (": keep-alive\r\n\r\n" + "".join(f"event: message\r\ndata:{json.dumps(c)}\r\n\r\n" for c in chunks)
           + "data: [DONE]\r\n\r\n")
    expected = [{"choices": [{**c["choices"][0], "logprobs": {"content": [
        {k: v for k, v in c["choices"][0]["logprobs"]["content"][0].items() if k != "bytes"}]}}]} for c in chunks]
    tight = "".join(f"data: {json.dumps(c, separators=(',', ':'))}\n\n" for c in chunks) + "data: [DONE]\n\n"
    for body in (plain.encode(), odd.encode(), tight.encode()):
        for size in (1, 7, 64, len(body)):
            reader, got = EventReader(), []
            for at in range(0, len(body), size):
                got += reader.feed(body[at:at + size])
            got += reader.close()
            assert got == expected and reader.done and not reader.plain, (size, body[:40])
    reader = EventReader()
    assert reader.feed(b'  {"choices": []') == [] and reader.feed(b"}") == [] and reader.plain
    assert json.loads(reader.body()) == {"choices": []}
