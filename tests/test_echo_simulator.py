"""The all-at-once simulator: OpenAI's reference layout and expected values, over the project's test server.

The reference cases (tests/golden/echo_reference_cases.json) were recorded from OpenAI's neuron-explainer code by
tests/golden/record_echo_reference.py. One deliberate difference is not exercised there: a number token written with
a leading space (" 7") counts as that number here (``expected_value`` strips tokens); the reference ignores it.
"""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path

import pytest

from autointerp.config import Config
from autointerp.llm import LLMClient, LLMError, ModelProfile
from autointerp.testing.echo_model import EchoModel, TextReply
from autointerp.testing.fake import FakeLLM
from autointerp.testing.server import FakeOpenAIServer, HTTPFailure
from autointerp.pipeline.components import LLMContext, make_simulator
from autointerp.scoring.echo_simulator import EchoSimulator, format_windows, read_positions
from autointerp.scoring.score import pooled_correlation

CASES = json.loads((Path(__file__).parent / "golden" / "echo_reference_cases.json").read_text())
FAST = {"max_retries": 0}


def recorded(case: dict) -> TextReply:
    logprobs = case["response"]["choices"][0]["logprobs"]
    return TextReply(text=case["prompt"], tokens=logprobs["tokens"], text_offset=logprobs["text_offset"],
                     token_logprobs=logprobs["token_logprobs"], top_logprobs=logprobs["top_logprobs"],
                     prompt_tokens=len(logprobs["tokens"]), completion_tokens=0)


@pytest.mark.parametrize("index", range(len(CASES["cases"])))
def test_agrees_with_the_reference_on_recorded_cases(index):
    """Layout: the windows' block is the reference's, character for character. Expected values: the same prompt
    and response, sent through the test server and the client, read to the reference's values."""
    case = CASES["cases"][index]
    block, offsets = format_windows([case["tokens"]])
    assert block == case["block"] and case["prompt"].endswith(block)
    head = len(case["prompt"]) - len(block)
    with FakeOpenAIServer(completion_handler=lambda request: recorded(case)) as srv:
        async def go():
            async with LLMClient(ModelProfile(model="m", base_url=srv.base_url, **FAST), "ref") as client:
                return await client.complete(case["prompt"], purpose="test", echo=True, logprobs=15, max_tokens=0)
        result = asyncio.run(go())
    predictions, errors, details = read_positions(result, [[head + o for o in offsets[0]]])
    assert errors == [None] and details["positions_unaligned"] == 0
    assert predictions[0] == pytest.approx(case["expected_values"], abs=1e-9)


def test_several_windows_share_the_reference_block_layout():
    several = CASES["several_windows"]
    block, offsets = format_windows(several["windows"])
    assert block == several["block"]
    assert all(block[o : o + len("unknown")] == "unknown" for window in offsets for o in window)
    assert [len(o) for o in offsets] == [len(w) for w in several["windows"]]


@pytest.mark.parametrize("split_digits,shift", [(False, 0), (True, 1), (True, 0), (False, 1)])
def test_simulates_a_planted_detector_over_the_test_server(split_digits, shift):
    """Any tokenizer ("10" one token or two) and either alignment (vLLM's, llama-cpp-python's without BOS): one
    request per ``windows_per_request`` windows (and one probe for "10"), one generated token each, and the true
    explanation scores far above a wrong one."""
    windows = [["def", " f", "(", "x", ")"], ["x", " =", " def"], ["a", " b"], ["def"]]
    truth = [[1.0, 0, 0, 0, 0], [0, 0, 1.0], [0, 0], [1.0]]
    model = EchoModel(split_digits=split_digits, shift=shift)
    with FakeOpenAIServer(completion_handler=model) as srv:
        async def go():
            async with LLMClient(ModelProfile(model="m", base_url=srv.base_url, **FAST), "echo") as client:
                simulator = EchoSimulator(client, client.profile, windows_per_request=2)
                right = await simulator.simulate('the token "def"', windows)
                wrong = await simulator.simulate('the token "x"', windows)
                return right, wrong, client.totals
        right, wrong, totals = asyncio.run(go())
        sent = srv.requests
    assert right.errors == [None] * 4 and right.details["requests"] == 2
    assert right.details["scale_top"] == (9 if split_digits else 10) and right.details["echo_shift"] == shift
    assert right.details["tokens_out"] == 0 and right.details["positions_without_numeric_token"] == 0
    assert right.details["generation"] == "max_tokens_0"  # as vLLM: the empty grammar ignored, max_tokens 0 honoured
    assert len(sent) == 2 + 2 + 2 and totals.calls == 6  # the probes once, then 2 requests per simulation
    assert all(r["echo"] is True and r["max_tokens"] == 0 and r["logprobs"] == 15 for r in sent[2:])
    assert right.predictions[0][0] > 9 and max(right.predictions[2]) < 0.5
    assert pooled_correlation(truth, right.predictions) > 0.99
    assert pooled_correlation(truth, wrong.predictions) < 0.0


def test_an_endpoint_without_echo_says_what_to_change():
    no_logprobs = TextReply(text="x", tokens=[], top_logprobs=[])
    with FakeOpenAIServer(completion_handler=lambda request: no_logprobs) as srv:
        async def go(profile):
            async with LLMClient(profile, "chatonly") as client:
                return await EchoSimulator(client, profile).simulate('"a"', [["a", " b"]])
        result = asyncio.run(go(ModelProfile(model="m", base_url=srv.base_url, **FAST)))
    assert result.predictions == [None] and 'simulator_method = "generate"' in result.errors[0]
    with FakeOpenAIServer(completion_handler=lambda request: HTTPFailure(404, message="not found")) as srv:
        profile = ModelProfile(model="m", base_url=srv.base_url, **FAST)
        async def fail():
            async with LLMClient(profile, "chatonly") as client:
                await client.complete("a", purpose="t", echo=True, logprobs=5)
        with pytest.raises(LLMError, match='no /v1/completions endpoint: set simulator_method = "generate"'):
            asyncio.run(fail())


def test_the_profile_setting_selects_the_method_and_the_estimate_counts_one_token_per_request():
    fake = FakeLLM()
    profiles = {"smol": ModelProfile(model="m", base_url="http://127.0.0.1:9/v1", simulator_method="all_at_once"),
                "chat": ModelProfile(model="m", base_url="http://127.0.0.1:9/v1")}
    cfg = Config(simulator="smol", models=profiles, windows_per_request=3)
    simulator = make_simulator(cfg, LLMContext(cfg))
    assert isinstance(simulator, EchoSimulator) and simulator.config()["method"] == "all_at_once"
    assert type(make_simulator(cfg.model_copy(update={"simulator": "chat"}), LLMContext(cfg))).__name__ == "LLMSimulator"
    from autointerp.llm.tokens import TokenCounter
    estimate = EchoSimulator(fake, fake.profile, windows_per_request=3).estimate([["a"]] * 7, TokenCounter(), "x")
    assert (estimate.calls, estimate.tokens_out) == (3, 3) and estimate.tokens_in > 0


def test_unaligned_and_numberless_positions_are_zero_and_counted():
    from autointerp.llm.types import CompletionResult

    text = "a\tunknown\nb\tunknown"
    tokens = ["a", "\t", "unknown", "\n", "b\tunk", "nown"]  # the second placeholder starts no token
    tops = [None, {"x": 0.0}, {"7": math.log(0.5), "3": math.log(0.5)}, {"\n": 0.0}, {"y": 0.0}, {"z": 0.0}]
    result = CompletionResult(text=text, tokens=tokens, text_offset=None, top_logprobs=tops, tokens_in=6,
                              tokens_out=0, latency_s=0.0, cost_usd=0.0, finish_reason="length", raw={})
    predictions, errors, details = read_positions(result, [[2, 12]])
    assert predictions == [[5.0, 0.0]] and errors == [None]
    assert details["positions_unaligned"] == 1


@pytest.mark.parametrize("grammars,zero_is_unlimited,generation,tokens_out",
                         [(True, True, "grammar", 0), (False, False, "max_tokens_0", 0), (False, True, "one_token", 1)])
def test_nothing_is_generated_where_the_endpoint_allows_it(grammars, zero_is_unlimited, generation, tokens_out):
    """llama-cpp-python (the empty grammar honoured, max_tokens 0 read as no limit): requests carry the grammar and
    generate nothing; vLLM (max_tokens 0 honoured): 0; a server that honours neither: one token a request."""
    model = EchoModel(grammars=grammars, zero_is_unlimited=zero_is_unlimited)
    with FakeOpenAIServer(completion_handler=model) as srv:
        async def go():
            async with LLMClient(ModelProfile(model="m", base_url=srv.base_url, **FAST), "echo") as client:
                return await EchoSimulator(client, client.profile).simulate('the token "def"', [["def", " f"]])
        result = asyncio.run(go())
        simulate = srv.requests[-1]
    assert result.errors == [None] and result.details["generation"] == generation
    assert result.details["tokens_out"] == tokens_out and result.predictions[0][0] > 9
    assert (simulate.get("grammar") == 'root ::= ""') == (generation == "grammar")
    assert simulate["max_tokens"] == (0 if generation == "max_tokens_0" else 1)
