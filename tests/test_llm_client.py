"""The LLM seam: profiles, token counting, retries, concurrency, budget, sink records and key scrubbing.

Every test talks to FakeLLM or to FakeOpenAIServer on 127.0.0.1; none touches the network.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time

import pytest

from autointerp.errors import UsageError
from autointerp.llm import (
    Budget,
    BudgetExceeded,
    CallRecord,
    LLMClient,
    LLMError,
    ModelProfile,
    resolve_profile,
)
from autointerp.llm.client import ChatModel, parse_body, retry_after_s
from autointerp.testing.fake import FakeLLM
from autointerp.llm.profiles import LOCAL_PLACEHOLDER_KEY
from autointerp.testing.server import (
    FakeOpenAIServer,
    Garbage,
    HTTPFailure,
    Hang,
    Reply,
    Traits,
    scripted,
)
from autointerp.llm.tokens import TokenCounter

HELLO = [{"role": "user", "content": "hello"}]


class ListSink:
    def __init__(self) -> None:
        self.records: list[CallRecord] = []

    def record_call(self, record: CallRecord) -> None:
        self.records.append(record)


def local_profile(srv: FakeOpenAIServer, **fields) -> ModelProfile:
    return ModelProfile(model="fake-model", base_url=srv.base_url, **fields)


async def chat_once(profile: ModelProfile, sink: ListSink | None = None, **chat_args) -> tuple[object, float]:
    async with LLMClient(profile, "local", sink, backoff_base_s=0.01) as client:
        started = time.monotonic()
        result = await client.chat(HELLO, purpose="test", **chat_args)
        return result, time.monotonic() - started


@pytest.fixture(autouse=True)
def no_real_openai(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)


# --- profiles -------------------------------------------------------------------------------------------------------


def test_resolve_profile_known_shorthand_and_unknown():
    profiles = {"mini": ModelProfile(model="gpt-4o-mini"), "local": ModelProfile(model="llama")}
    assert resolve_profile("mini", profiles).model == "gpt-4o-mini"
    shorthand = resolve_profile("openai:gpt-4o", profiles)
    assert (shorthand.model, shorthand.base_url, shorthand.api_key_env) == ("gpt-4o", None, "OPENAI_API_KEY")
    with pytest.raises(UsageError, match="known profiles: local, mini"):
        resolve_profile("nope", profiles)
    with pytest.raises(UsageError):
        resolve_profile("openai:", profiles)


def test_profile_is_frozen_strict_and_holds_no_key(monkeypatch):
    monkeypatch.setenv("MY_KEY", "sk-profile-secret-123")
    profile = ModelProfile(model="m", api_key_env="MY_KEY")
    assert profile.api_key() == "sk-profile-secret-123"
    assert "sk-profile-secret-123" not in json.dumps(profile.model_dump())
    with pytest.raises(ValueError):
        ModelProfile(model="m", api_key="sk-x")  # extra="forbid"
    with pytest.raises(ValueError):
        profile.model = "other"  # frozen


def test_missing_key_is_a_usage_error_except_on_localhost(monkeypatch):
    with pytest.raises(UsageError, match="set the environment variable OPENAI_API_KEY"):
        ModelProfile(model="m").api_key()
    assert ModelProfile(model="m", base_url="http://127.0.0.1:9/v1").api_key() == LOCAL_PLACEHOLDER_KEY
    monkeypatch.setenv("OPENAI_BASE_URL", "http://localhost:8000/v1")
    assert ModelProfile(model="m").api_key() == LOCAL_PLACEHOLDER_KEY


def test_cost_is_tokens_times_price_per_million():
    profile = ModelProfile(price_in_per_mtok=2.0, price_out_per_mtok=8.0)
    assert profile.cost_usd(1_000, 500) == pytest.approx(0.002 + 0.004)


# --- token counting -------------------------------------------------------------------------------------------------


def test_token_counter_estimates_without_downloading(monkeypatch, tmp_path):
    import tiktoken.load

    def no_network(path):
        raise AssertionError(f"tried to fetch {path}")

    monkeypatch.setattr(tiktoken.load, "read_file", no_network)
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    started = time.monotonic()
    counter = TokenCounter()
    assert time.monotonic() - started < 1.0
    assert counter.method == "estimate"
    assert counter.count("hello world") == 3  # ceil(11 / 4)
    assert counter.count_messages([{"role": "user", "content": "abcd"}]) == 1 + 4


def test_token_counter_reads_a_local_tiktoken_file(monkeypatch, tmp_path):
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", "")  # nothing cached, and load_tiktoken_bpe copies nothing
    ranks = {bytes([b]): b for b in range(256)} | {b"he": 256, b"ll": 257}
    bpe = tmp_path / "tiny.tiktoken"
    bpe.write_bytes(b"".join(base64.b64encode(t) + b" %d\n" % r for t, r in ranks.items()))
    counter = TokenCounter(bpe_file=bpe)
    assert counter.method == "file"
    assert counter.count("hello") == 3  # he, ll, o
    assert TokenCounter(bpe_file=tmp_path / "missing.tiktoken").method == "estimate"


# --- FakeLLM: the same seam in process ------------------------------------------------------------------------------


def test_fake_llm_is_a_chat_model_and_logs_one_record_per_call():
    sink = ListSink()
    profile = ModelProfile(model="fake-model", price_in_per_mtok=1.0, price_out_per_mtok=2.0)
    fake = FakeLLM(lambda messages, tools, logprobs: "Fires on commas.", profile, sink=sink)
    assert isinstance(fake, ChatModel)
    result = asyncio.run(fake.chat(HELLO, purpose="explain", unit="L0/N3"))
    assert result.text == "Fires on commas."
    (record,) = sink.records
    assert (record.purpose, record.unit, record.profile, record.model) == ("explain", "L0/N3", "fake", "fake-model")
    assert (record.attempts, record.error) == (1, None)
    assert record.tokens_in == result.tokens_in > 0 and record.tokens_out == result.tokens_out > 0
    assert record.cost_usd == pytest.approx((result.tokens_in + 2 * result.tokens_out) / 1e6)
    assert record.response == result.raw and record.messages == HELLO
    assert (fake.totals.calls, fake.totals.tokens_in, fake.totals.cost_usd) == (1, result.tokens_in, result.cost_usd)


def test_fake_llm_retries_scripted_failures_like_the_real_client():
    outcomes = [HTTPFailure(503), Garbage(), "ok"]
    fake = FakeLLM(lambda *_: outcomes.pop(0), backoff_base_s=0.001)
    assert asyncio.run(fake.chat(HELLO, purpose="test")).text == "ok"


def test_budget_is_checked_before_each_call_and_shared():
    budget = Budget(max_calls=2)
    seen = []
    fakes = [FakeLLM(lambda *_: seen.append(1) or "x", budget=budget) for _ in range(2)]
    asyncio.run(fakes[0].chat(HELLO, purpose="t"))
    asyncio.run(fakes[1].chat(HELLO, purpose="t"))
    with pytest.raises(BudgetExceeded, match="max_calls"):
        asyncio.run(fakes[0].chat(HELLO, purpose="t"))
    assert len(seen) == 2  # nothing was sent for the refused call

    # worst case of one call: (prompt tokens + max_tokens 1000) at $1 per million tokens = about $0.001
    pricey = ModelProfile(model="m", max_tokens=1000, price_in_per_mtok=1.0, price_out_per_mtok=1.0)
    dollars = Budget(max_usd=0.0025)
    fake = FakeLLM(lambda *_: "x", pricey, budget=dollars)
    asyncio.run(fake.chat(HELLO, purpose="t"))
    asyncio.run(fake.chat(HELLO, purpose="t"))
    assert dollars.spent_usd == pytest.approx(fake.totals.cost_usd) and dollars.reserved_usd == pytest.approx(0)
    dollars.spent_usd = 0.002  # as if the two calls had been long
    with pytest.raises(BudgetExceeded, match="max_usd"):
        asyncio.run(fake.chat(HELLO, purpose="t"))


def test_tools_and_logprobs_need_profile_support():
    fake = FakeLLM(profile=ModelProfile(supports_tools=False, supports_logprobs=False))
    with pytest.raises(UsageError, match="supports_tools"):
        asyncio.run(fake.chat(HELLO, purpose="t", tools=[{"type": "function", "function": {"name": "f"}}]))
    with pytest.raises(UsageError, match="supports_logprobs"):
        asyncio.run(fake.chat(HELLO, purpose="t", logprobs=True))


# --- LLMClient against the local server -----------------------------------------------------------------------------


def test_429_with_retry_after_is_honoured():
    sink = ListSink()
    with FakeOpenAIServer(scripted(HTTPFailure(429, retry_after_s=0.2), "done")) as srv:
        result, elapsed = asyncio.run(chat_once(local_profile(srv), sink))
        assert len(srv.requests) == 2
    assert result.text == "done"
    assert 0.2 <= elapsed < 1.5
    (record,) = sink.records
    assert record.attempts == 2 and record.error is None and record.response == result.raw
    assert record.tokens_in == result.tokens_in > 0 and record.tokens_out == result.tokens_out > 0


def test_5xx_and_garbage_are_retried_then_succeed():
    with FakeOpenAIServer(scripted(HTTPFailure(500), HTTPFailure(502), Garbage(), "done")) as srv:
        result, _ = asyncio.run(chat_once(local_profile(srv)))
        assert result.text == "done" and len(srv.requests) == 4


def test_400_is_not_retried():
    sink = ListSink()
    with FakeOpenAIServer(scripted(HTTPFailure(400, message="bad parameter"))) as srv:
        with pytest.raises(LLMError, match="HTTP 400.*bad parameter"):
            asyncio.run(chat_once(local_profile(srv), sink))
        assert len(srv.requests) == 1
    (record,) = sink.records
    assert record.attempts == 1 and "400" in record.error and record.response is None


@pytest.mark.slow  # waits on timeouts, latencies or leases: seconds of wall time
def test_timeouts_are_not_retried_by_default_nor_at_temperature_0():
    """The server may still be generating an abandoned request, and at temperature 0 a retry repeats its output."""
    for fields, why in (({}, "server may still be generating"),
                        ({"retry_timeouts": True}, "at temperature 0 a retry would generate the same output")):
        sink = ListSink()
        with FakeOpenAIServer(scripted(Hang(5), Hang(5), Hang(5))) as srv:
            started = time.monotonic()
            with pytest.raises(LLMError, match=f"timeout_s.*not retried.*{why}"):
                asyncio.run(chat_once(local_profile(srv, timeout_s=0.2, max_retries=3, prompt_tokens_per_s=1e9,
                                            tokens_per_s=1e9, **fields), sink))
            assert time.monotonic() - started < 2.0
            assert len(srv.requests) == 1
        assert sink.records[0].attempts == 1 and sink.records[0].error


@pytest.mark.slow  # waits on timeouts, latencies or leases: seconds of wall time
def test_timeouts_are_retried_when_allowed_and_sampling():
    sink = ListSink()
    with FakeOpenAIServer(scripted(Hang(5), Hang(5), Hang(5))) as srv:
        fast = {"prompt_tokens_per_s": 1e9, "tokens_per_s": 1e9}  # the wait is timeout_s alone
        profile = local_profile(srv, timeout_s=0.2, max_retries=1, retry_timeouts=True, temperature=0.7, **fast)
        with pytest.raises(LLMError, match="timeout_s.*tokens_per_s.*concurrency = 1.*gave up after 2 tries"):
            asyncio.run(chat_once(profile, sink))
        assert len(srv.requests) == 2
    assert sink.records[0].attempts == 2


@pytest.mark.parametrize("message", [
    "[json.exception.type_error.302] type must be string, but is null",       # llama.cpp's server, content: null
    "TypeError: can only concatenate str (not \"NoneType\") to str",          # a chat template, llama-cpp-python
    "jinja2.exceptions.TemplateError: Conversation roles must alternate user/assistant/user/assistant/...",
])
def test_a_500_that_refuses_the_request_is_not_retried(message):
    sink = ListSink()
    with FakeOpenAIServer(scripted(HTTPFailure(500, message=message))) as srv:
        with pytest.raises(LLMError, match="refused the request itself; not retried"):
            asyncio.run(chat_once(local_profile(srv, max_retries=5), sink))
        assert len(srv.requests) == 1
    assert sink.records[0].attempts == 1


@pytest.mark.slow  # waits on timeouts, latencies or leases: seconds of wall time
def test_timeout_scales_with_the_work_a_request_asks_for():
    profile = ModelProfile(timeout_s=60, prompt_tokens_per_s=50, tokens_per_s=4)
    assert profile.request_timeout_s(0, 0) == 60
    assert profile.request_timeout_s(2500, 0) == 60 + 50  # reading a 2,500-token prompt
    assert profile.request_timeout_s(500, 2600) == 60 + 10 + 650  # writing 2,600 tokens on a CPU server
    assert profile.request_timeout_s(2500, 1, echoed=2500) == 60 + 50 + 1 / 4 + 2500 / 0.5  # echo: every token's logprobs
    # a slow answer inside the scaled wait is not cut off, though it takes longer than timeout_s
    with FakeOpenAIServer(lambda request: (time.sleep(0.6), "late")[1]) as srv:
        slow = local_profile(srv, timeout_s=0.2, max_retries=0, prompt_tokens_per_s=1e9, tokens_per_s=100)
        result, _ = asyncio.run(chat_once(slow, max_tokens=200))  # 0.2 + 2 s allowed
        assert result.text == "late"


def test_assistant_tool_call_turns_are_sent_with_empty_content_not_null():
    turn = {"role": "assistant", "content": None,
            "tool_calls": [{"id": "c0", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}
    messages = [*HELLO, turn, {"role": "tool", "tool_call_id": "c0", "content": "ok"}]
    with FakeOpenAIServer() as srv:
        async def go():
            async with LLMClient(local_profile(srv), "local") as client:
                await client.chat(messages, purpose="test")
        asyncio.run(go())
        sent = srv.requests[0]["messages"]
    assert sent[1]["content"] == "" and sent[1]["tool_calls"] == turn["tool_calls"]
    assert turn["content"] is None  # the caller's message is left as it was


def test_completions_echo_round_trip_and_local_parallelism_detection():
    async def go(profile):
        async with LLMClient(profile, "local") as client:
            reply = await client.complete("a\t10\n", purpose="test", echo=True, logprobs=3, max_tokens=1)
            return reply, await client.concurrency()

    with FakeOpenAIServer(traits=Traits(parallel=4)) as srv:
        reply, parallel = asyncio.run(go(local_profile(srv)))
        request = srv.requests[0]
    assert (request["echo"], request["logprobs"], request["max_tokens"]) == (True, 3, 1)
    assert reply.tokens[:4] == ["a", "\t", "10", "\n"] and reply.text_offset[:4] == [0, 1, 2, 4]
    assert reply.top_logprobs[0] is None and reply.text.startswith("a\t10\n") and parallel == 4
    with FakeOpenAIServer() as srv:  # no /props: a local server is taken to serve one request at a time
        assert asyncio.run(go(local_profile(srv)))[1] == 1
        assert asyncio.run(go(local_profile(srv, concurrency=5)))[1] == 5


def test_rejected_shapes_say_what_to_change():
    with FakeOpenAIServer(scripted(HTTPFailure(400, message="tools are not supported"))) as srv:
        tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
        with pytest.raises(LLMError, match="HTTP 400.*set supports_tools = false"):
            asyncio.run(chat_once(local_profile(srv, max_retries=0), tools=[tool]))


@pytest.mark.slow  # waits on timeouts, latencies or leases: seconds of wall time
def test_concurrency_bound_is_respected():
    async def many(profile: ModelProfile) -> None:
        async with LLMClient(profile, "bounded") as client:
            await asyncio.gather(*(client.chat(HELLO, purpose="t") for _ in range(12)))

    with FakeOpenAIServer(latency_s=0.1) as srv:
        asyncio.run(many(local_profile(srv, concurrency=3)))
        assert len(srv.requests) == 12 and srv.max_in_flight == 3


@pytest.mark.slow  # waits on timeouts, latencies or leases: seconds of wall time
def test_a_logged_latency_is_the_request_s_not_its_wait_for_a_slot():
    """One request at a time, four sent at once: the requests ran one after another, so their logged latencies add up
    to no more than the whole took (counting the wait for a slot, they would add up to about 2.5 times it)."""
    sink = ListSink()

    async def four(profile: ModelProfile) -> None:
        async with LLMClient(profile, "one-at-a-time", sink) as client:
            await asyncio.gather(*(client.chat(HELLO, purpose="t") for _ in range(4)))

    with FakeOpenAIServer(latency_s=0.1) as srv:
        started = time.monotonic()
        asyncio.run(four(local_profile(srv, concurrency=1)))
        took = time.monotonic() - started
    latencies = [r.latency_s for r in sink.records]
    assert len(latencies) == 4 and sum(latencies) <= took, (latencies, took)


def test_tool_calls_and_logprobs_round_trip_over_http():
    tool = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}
    reply = Reply(tool_calls=[("lookup", {"q": "def"})])
    with FakeOpenAIServer(scripted(reply, Reply(tokens=[("7", {"7": -0.1, " 3": -2.5})]))) as srv:
        result, _ = asyncio.run(chat_once(local_profile(srv), tools=[tool], tool_choice="auto"))
        assert srv.requests[0]["tools"] == [tool] and srv.requests[0]["tool_choice"] == "auto"
        assert result.tool_calls == [{"id": "call_0", "name": "lookup", "arguments": '{"q": "def"}'}]
        assert result.finish_reason == "tool_calls" and result.text == ""
        result, _ = asyncio.run(chat_once(local_profile(srv), logprobs=True, top_logprobs=5))
        assert srv.requests[1]["logprobs"] is True and srv.requests[1]["top_logprobs"] == 5
    (token,) = result.logprobs
    assert (token.token, token.logprob) == ("7", -0.1)
    # as many alternatives as asked, as real endpoints send: the reply's own two, then the fake's fillers below them
    assert len(token.top_logprobs) == 5 and list(token.top_logprobs.items())[:2] == [("7", -0.1), (" 3", -2.5)]
    assert max(list(token.top_logprobs.values())[2:]) < -2.5


def test_retry_after_headers():
    assert retry_after_s({"retry-after": "1.5"}) == 1.5
    assert retry_after_s({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert retry_after_s({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) is None
    assert retry_after_s({}) is None


def exception_chain(exc: BaseException | None) -> str:
    """str and repr of an exception and of every exception chained to it."""
    texts = []
    while exc is not None:
        texts.append(f"{exc} {exc!r}")
        exc = exc.__cause__ or exc.__context__
    return " <- ".join(texts)


def test_api_key_never_leaks(monkeypatch, caplog):
    key = "sk-LEAKCHECK-7f3a9c2e1b"
    monkeypatch.setenv("LEAK_KEY", key)
    caplog.set_level("DEBUG")
    sink = ListSink()
    errors: list[str] = []
    handler = scripted(
        f"my key is {key}",  # a reply echoing it
        HTTPFailure(401, message=f"Incorrect API key provided: {key}"),  # an error body echoing it
        HTTPFailure(500, message=f"upstream saw {key}"),
        HTTPFailure(500, message=f"upstream saw {key}"),
    )
    with FakeOpenAIServer(handler) as srv:
        profile = local_profile(srv, api_key_env="LEAK_KEY", max_retries=1)

        async def calls() -> str:
            async with LLMClient(profile, "leaky", sink, backoff_base_s=0.001) as client:
                result = await client.chat(HELLO, purpose="t")
                for _ in range(2):
                    try:
                        await client.chat(HELLO, purpose="t")
                    except LLMError as exc:
                        errors.append(exception_chain(exc))
                return repr(result) + repr(client.totals)

        shown = asyncio.run(calls())
        requests = repr(srv.requests)
    assert len(errors) == 2 and len(sink.records) == 3
    everything = [shown, requests, caplog.text, profile.model_dump_json(), *errors]
    everything += [repr(record) + json.dumps(record.__dict__, default=str) for record in sink.records]
    assert not [text for text in everything if key in text]
    assert "***" in shown and "***" in errors[0]


def test_token_bytes_are_dropped_in_the_common_layouts_and_strings_never_touched():
    from autointerp.llm.wire import strip_bytes_fields

    tricky = ',"bytes":[1,2] , "bytes": [3]'  # token text that looks like the field: in a string, quotes are escaped
    entry = {"token": tricky, "logprob": -0.5, "bytes": [44, 34],
             "top_logprobs": [{"token": tricky, "logprob": -0.5, "bytes": [44]}, {"token": "7", "logprob": -1.0,
                                                                                   "bytes": [55]}]}
    body = {"choices": [{"message": {"content": tricky}, "logprobs": {"content": [entry]}}]}
    without = {"choices": [{"message": {"content": tricky}, "logprobs": {"content": [
        {"token": tricky, "logprob": -0.5,
         "top_logprobs": [{"token": tricky, "logprob": -0.5}, {"token": "7", "logprob": -1.0}]}]}}]}
    for text in (json.dumps(body), json.dumps(body, separators=(",", ":"))):
        assert parse_body(text) == without
        assert json.loads(strip_bytes_fields(text.encode())) == without
    assert parse_body(json.dumps(body, indent=2)) == body  # indented: parsed as it is (cheaper than any pass)
    with pytest.raises(ValueError):
        parse_body('{"bytes": [1,')


@pytest.mark.parametrize("keep", [False, True])
def test_call_log_leaves_out_per_token_logprobs_unless_asked(keep):
    sink = ListSink()
    reply = Reply(tokens=[("7", {"7": -0.1, "3": -2.4}), ("\n", {})])
    fake = FakeLLM(lambda *_: reply, sink=sink, log_logprobs=keep)
    result = asyncio.run(fake.chat(HELLO, purpose="simulate", logprobs=True, top_logprobs=5))
    assert [t.token for t in result.logprobs] == ["7", "\n"] and result.logprobs[0].top_logprobs["3"] == -2.4
    (record,) = sink.records
    logged = record.response["choices"][0]["logprobs"]
    if keep:
        assert record.response == result.raw
    else:
        assert logged == {"omitted": "2 tokens with their logprobs; log_logprobs = true keeps them"}
        assert record.response["choices"][0]["message"] == result.raw["choices"][0]["message"]
