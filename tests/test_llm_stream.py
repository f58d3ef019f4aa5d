"""Streamed replies stopped as soon as they go off format: over HTTP (the server stops generating) and in process."""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest

from autointerp.llm.client import LLMClient, LLMError
from autointerp.testing.fake import FakeLLM
from autointerp.llm.profiles import ModelProfile
from autointerp.llm.scope import call_scope
from autointerp.testing.server import FakeOpenAIServer, Reply, scripted

HELLO = [{"role": "user", "content": "hello"}]
RAMBLE = "Sure! Here is some text that is not what was asked for.\n" * 400  # ~5,000 tokens


def no_second_line(text: str) -> str | None:
    """Stop at the second complete line."""
    return "two lines" if text.count("\n") >= 2 else None


async def streamed(srv: FakeOpenAIServer, stop_when, **kw):
    profile = ModelProfile(model="fake-model", base_url=srv.base_url, max_retries=0, timeout_s=30)
    async with LLMClient(profile, "local") as client:
        return await client.chat(HELLO, purpose="test", stop_when=stop_when, max_tokens=6000, **kw)


@pytest.mark.slow  # waits on timeouts, latencies or leases: seconds of wall time
def test_an_off_format_stream_is_closed_and_the_server_stops_generating():
    with FakeOpenAIServer(scripted(RAMBLE), token_latency_s=0.002) as srv:
        result = asyncio.run(streamed(srv, no_second_line))
        time.sleep(0.3)  # let the server notice the closed connection
    assert result.stopped == "two lines" and result.finish_reason == "stopped"
    assert result.text == "".join(RAMBLE.splitlines(keepends=True)[:2])
    assert result.tokens_out < 60
    (written,) = srv.streamed_tokens
    assert written < 300, written  # of ~5,000: generation stopped a few chunks after the client left
    assert srv.requests[0]["stream"] is True


def test_a_stream_that_keeps_the_format_is_whole_with_logprobs_and_usage():
    reply = Reply(tokens=[("a", {"a": -0.1}), ("\t", {}), ("7", {"7": -0.2, "6": -2.0}), ("\n", {})])
    with FakeOpenAIServer(scripted(reply)) as srv:
        result = asyncio.run(streamed(srv, lambda text: None, logprobs=True, top_logprobs=2))
    assert result.stopped is None and result.text == "a\t7\n" and result.finish_reason == "stop"
    assert [t.token for t in result.logprobs] == ["a", "\t", "7", "\n"]
    assert result.logprobs[2].top_logprobs == {"7": -0.2, "6": -2.0}
    assert result.tokens_out == 4 and result.tokens_in > 0  # the server's usage chunk


def test_the_in_process_fake_cuts_the_reply_where_a_stream_would_stop():
    fake = FakeLLM(lambda messages, tools, logprobs: RAMBLE)
    with call_scope("3/1") as usage:
        result = asyncio.run(fake.chat(HELLO, purpose="test", stop_when=no_second_line))
    assert result.stopped == "two lines" and result.text.count("\n") == 2
    assert 0 < result.tokens_out < 60
    assert usage.calls == 1 and usage.tokens_out == result.tokens_out


# timeout_s alone: no allowance for the request's tokens (a profile's timeout otherwise grows with the work)
UNSCALED = {"prompt_tokens_per_s": 1e9, "tokens_per_s": 1e9}


@pytest.mark.slow  # waits on timeouts, latencies or leases: seconds of wall time
def test_time_before_the_first_token_is_not_counted_against_the_generation():
    """Queued 0.5 s (the server sends nothing), then 0.5 s of generation: over the 0.9 s timeout in all, within it
    for each phase. A stream that never starts still times out, and is not retried."""
    reply = "word " * 20  # 40 chunks

    def handler(request):
        return "ok" if request["messages"][-1]["content"] == "warm up" else reply

    with FakeOpenAIServer(handler, latency_s=0.5, token_latency_s=0.0125) as srv:
        profile = ModelProfile(model="fake-model", base_url=srv.base_url, max_retries=0, timeout_s=0.9,
                               **UNSCALED)

        async def go():
            async with LLMClient(profile, "local") as client:
                with contextlib.suppress(LLMError):  # the first request of a client sets it up (slow on a busy host)
                    await client.chat([{"role": "user", "content": "warm up"}], purpose="warm-up")
                started = time.monotonic()
                result = await client.chat(HELLO, purpose="test", stop_when=lambda text: None)
                return result, time.monotonic() - started

        result, took = asyncio.run(go())
    assert took > 0.9 and result.text == reply
    with FakeOpenAIServer(lambda request: reply, latency_s=3.0) as srv:
        profile = ModelProfile(model="fake-model", base_url=srv.base_url, max_retries=3, timeout_s=0.5, **UNSCALED)

        async def stuck():
            async with LLMClient(profile, "local") as client:
                return await client.chat(HELLO, purpose="test", stop_when=lambda text: None)

        with pytest.raises(LLMError, match="waiting for the first token.*not retried"):
            asyncio.run(stuck())
        assert len(srv.requests) == 1


class EndWatch:
    """A simulator-like check: complete at an ``end`` line, off format at any line but ``ok`` before it."""

    def __init__(self):
        self.complete = False

    def __call__(self, text: str) -> str | None:
        for line in text.splitlines(keepends=True):
            if not line.endswith("\n"):
                break
            if line == "end\n":
                self.complete = True
                return "every line answered"
            if line != "ok\n":
                return f"off format: {line!r}"
        return None


def test_replies_that_keep_the_format_are_asked_for_whole_until_one_does_not():
    """After ``stream_trust`` replies in a row that kept the format, plain requests (cut where a stream would have
    stopped); the first off-format reply turns streaming back on. ``stream_trust = 0`` streams every time."""
    good, bad = "ok\nok\nend\ntrailing\n", "ok\nSure! here you go\n" + "more\n" * 50
    for trust, expected in ((2, [True, True, None, True, True]), (0, [True] * 5)):
        with FakeOpenAIServer(scripted(good, good, bad, good, good)) as srv:
            profile = ModelProfile(model="fake-model", base_url=srv.base_url, max_retries=0, timeout_s=30,
                                   stream_trust=trust)

            async def five():
                async with LLMClient(profile, "local") as client:
                    return [await client.chat(HELLO, purpose="test", stop_when=EndWatch(), max_tokens=600)
                            for _ in range(5)]

            results = asyncio.run(five())
        assert [r.get("stream") for r in srv.requests] == expected, trust
        assert [r.text for r in results] == ["ok\nok\nend\n", "ok\nok\nend\n", "ok\nSure! here you go\n",
                                             "ok\nok\nend\n", "ok\nok\nend\n"]
        assert [r.stopped for r in results][2].startswith("off format")


@pytest.mark.slow  # waits on latencies: seconds of wall time
def test_a_plain_request_in_place_of_a_stream_keeps_the_streams_time_allowance():
    """A stream gets ``timeout_s`` to start and ``timeout_s`` to generate; the plain request that replaces it once the
    replies are trusted gets both, 2 x ``timeout_s`` in all. A plain request by choice (``stream = false``) gets one."""
    reply = "ok\nok\nend\n"
    with FakeOpenAIServer(lambda request: reply, latency_s=0.8) as srv:

        async def one(**fields):
            profile = ModelProfile(model="fake-model", base_url=srv.base_url, max_retries=0, timeout_s=0.5,
                                   **UNSCALED, **fields)
            async with LLMClient(profile, "local") as client:
                client.kept_format = 8  # eight replies kept the format: the next is asked for whole
                return await client.chat(HELLO, purpose="test", stop_when=EndWatch(), max_tokens=600)

        result = asyncio.run(one())
        assert result.text == reply and "stream" not in srv.requests[-1]
        with pytest.raises(LLMError, match="no answer within"):
            asyncio.run(one(stream=False))
