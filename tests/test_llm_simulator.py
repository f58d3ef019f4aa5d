"""LLMSimulator and expected_value: hand-computed cases, the logprob and parse paths, and errors never zeroed."""

from __future__ import annotations

import asyncio
import math

import pytest

from autointerp.llm import Budget, BudgetExceeded, ChatResult, LLMClient, ModelProfile
from autointerp.testing.fake import FakeLLM
from autointerp.llm.types import EndpointMismatch
from autointerp.testing.server import FakeOpenAIServer, Garbage, Reply, default_handler
from autointerp.scoring.llm_simulator import (
    LLMSimulator,
    expected_value,
    parse_reply,
    split_ten,
)
from autointerp.scoring.simulator import Simulator

EXPLANATION = 'the token "def"'
WINDOWS = [["def", " f", "(", ")"], ["x", " =", " def"], ["\n", "def", "\t"], ["pass"], ["def"]]
# default_handler: 10 with p .9 / 9 with p .05 / 0 with p .05 on "def", else 0 with p .95 / 1 with p .05
HIGH, LOW = 10 * 0.9 + 9 * 0.05, 1 * 0.05
EXPECTED = [[HIGH, LOW, LOW, LOW], [LOW, LOW, HIGH], [LOW, HIGH, LOW], [LOW], [HIGH]]
EXACT = [[10.0, 0.0, 0.0, 0.0], [0.0, 0.0, 10.0], [0.0, 10.0, 0.0], [0.0], [10.0]]

ln = math.log


def assert_predictions(actual, expected):
    assert len(actual) == len(expected)
    for got, want in zip(actual, expected):
        assert got == pytest.approx(want)


# --- expected_value -------------------------------------------------------------------------------------------------


def test_expected_value_hand_computed():
    assert expected_value({"0": ln(0.5), "10": ln(0.5)}) == pytest.approx(5.0)
    assert expected_value({"3": ln(0.2), "5": ln(0.2), "foo": ln(0.6)}) == pytest.approx(4.0)  # renormalised
    assert expected_value({" 7": ln(0.3), "7": ln(0.3), "2": ln(0.4)}) == pytest.approx(0.6 * 7 + 0.4 * 2)
    assert expected_value({"7\n": ln(0.1), "\t1": ln(0.1)}) == pytest.approx(4.0)  # whitespace stripped
    assert expected_value({"11": ln(0.5), "-1": ln(0.2), "3.5": ln(0.1), "4": ln(0.01)}) == pytest.approx(4.0)


def test_expected_value_without_numeric_tokens_is_none():
    assert expected_value({"the": ln(0.9), " cat": ln(0.1)}) is None
    assert expected_value({}) is None


def test_split_ten_divides_the_mass_of_one():
    # first digit "1" (p .6) or "0" (p .4); after "1", "0" follows with p .5: p(1) = .3, p(10) = .3, p(0) = .4
    top = split_ten({"1": ln(0.6), "0": ln(0.4)}, {"0": ln(0.5), "\n": ln(0.5)})
    assert expected_value(top) == pytest.approx(0.3 * 1 + 0.3 * 10)
    # a tokenizer with "10" as one token: the newline follows, no "0" there, nothing changes
    same = {"1": ln(0.2), "10": ln(0.8)}
    assert expected_value(split_ten(same, {"\n": ln(1.0)})) == pytest.approx(expected_value(same))


def test_parse_reply_aligns_lines_and_reports_errors():
    text = "sure:\n<start>\na\t1\nb\t 10\n<end>\n<start>\nc\tx\n<end>\n"
    first, second, third = parse_reply(text, [2, 1, 1])
    assert [value for value, _ in first] == [1, 10]
    assert [text[offset : offset + 2] for _, offset in first] == ["1\n", "10"]
    assert "does not parse" in second and "missing" in third
    assert "expected 3 token lines, got 2" in parse_reply(text, [3])[0]
    assert "above 10" in parse_reply("<start>\na\t11\n<end>", [1])[0]


# --- the simulator on the in-process fake ---------------------------------------------------------------------------


def test_llm_simulator_implements_the_protocol_with_logprobs():
    fake = FakeLLM()
    simulator = LLMSimulator(fake, fake.profile, windows_per_request=2)
    assert isinstance(simulator, Simulator) and not simulator.is_baseline
    result = asyncio.run(simulator.simulate(EXPLANATION, WINDOWS))
    assert result.errors == [None] * 5
    assert_predictions(result.predictions, EXPECTED)
    assert result.details["requests"] == 3 == fake.totals.calls
    assert result.details["positions_without_numeric_token"] == 0
    config = simulator.config()
    assert config["method"] == "logprobs" and config["windows_per_request"] == 2 and len(config["prompt_sha256"]) == 64


def test_positions_without_numeric_token_get_zero_and_are_counted():
    def responder(messages, tools, logprobs):
        return Reply(tokens=[("<start>\n", {}), ("a", {}), ("\t", {}), ("5", {"five": -0.1}), ("\n<end>", {})])

    result = asyncio.run(LLMSimulator(FakeLLM(responder), ModelProfile()).simulate("x", [["a"]]))
    assert result.predictions == [[0.0]] and result.errors == [None]
    assert result.details["positions_without_numeric_token"] == 1


def test_ten_split_into_one_and_zero_tokens():
    one = ("1", {"1": ln(0.9), "0": ln(0.1)})  # first digit: "1" with p .9
    zero = ("0", {"0": ln(0.8), "\n": ln(0.2)})  # after "1": "0" (making 10) with p .8

    def responder(messages, tools, logprobs):
        return Reply(tokens=[("<start>\n", {}), ("def", {}), ("\t", {}), one, zero, ("\n<end>", {})])

    result = asyncio.run(LLMSimulator(FakeLLM(responder), ModelProfile()).simulate(EXPLANATION, [["def"]]))
    assert result.predictions[0] == [pytest.approx(0.9 * 0.2 * 1 + 0.9 * 0.8 * 10)]


def test_missing_logprobs_are_an_error_not_zeros():
    class NoLogprobs:
        name = "no-logprobs"
        profile = ModelProfile()

        async def chat(self, messages, **kwargs):
            return ChatResult("<start>\nx\t3\n<end>\n", [], None, 1, 1, 0.0, 0.0, "stop", {})

    result = asyncio.run(LLMSimulator(NoLogprobs(), NoLogprobs.profile).simulate("x", [["x"]]))
    assert result.predictions == [None] and "supports_logprobs: false" in result.errors[0]


def test_budget_exceeded_propagates():
    fake = FakeLLM(budget=Budget(max_calls=1))
    with pytest.raises(BudgetExceeded):
        asyncio.run(LLMSimulator(fake, fake.profile, windows_per_request=1).simulate(EXPLANATION, WINDOWS[:2]))


# --- end to end through the openai SDK and the local server ---------------------------------------------------------


async def simulate_over_http(profile: ModelProfile, windows_per_request: int = 2):
    async with LLMClient(profile, "local", backoff_base_s=0.001) as client:
        return await LLMSimulator(client, profile, windows_per_request).simulate(EXPLANATION, WINDOWS)


def test_end_to_end_with_logprobs():
    with FakeOpenAIServer() as srv:
        result = asyncio.run(simulate_over_http(ModelProfile(model="m", base_url=srv.base_url)))
        assert all(r["logprobs"] and r["top_logprobs"] == 15 for r in srv.requests) and len(srv.requests) == 3
    assert result.errors == [None] * 5
    assert_predictions(result.predictions, EXPECTED)


def test_end_to_end_parsing_without_logprobs():
    with FakeOpenAIServer() as srv:
        profile = ModelProfile(model="m", base_url=srv.base_url, supports_logprobs=False)
        result = asyncio.run(simulate_over_http(profile, windows_per_request=4))
        assert not any("logprobs" in r for r in srv.requests) and len(srv.requests) == 2
    assert result.errors == [None] * 5 and result.predictions == EXACT
    assert result.details["method"] == "parse"


@pytest.mark.parametrize("supports_logprobs", [True, False])
def test_garbage_replies_are_recorded_errors(supports_logprobs):
    def chatter(request):
        return Reply(text="I think this neuron fires a lot on code.")

    with FakeOpenAIServer(chatter) as srv:
        profile = ModelProfile(model="m", base_url=srv.base_url, supports_logprobs=supports_logprobs)
        result = asyncio.run(simulate_over_http(profile))
    assert result.predictions == [None] * 5
    assert all("missing" in error for error in result.errors)


def test_garbage_bodies_fail_the_request_and_are_recorded():
    """Garbage for the request holding the window "pass" only: that request fails (after a second try that got the
    same), its windows are errors, the others are simulated."""
    def garbage_for_pass(request):
        return Garbage() if "\npass\t" in request["messages"][-1]["content"] else default_handler(request)

    with FakeOpenAIServer(garbage_for_pass) as srv:
        profile = ModelProfile(model="m", base_url=srv.base_url, max_retries=5)
        result = asyncio.run(simulate_over_http(profile))
    assert result.details["failed_requests"] == 1 and len(srv.requests) == 4  # the garbage twice, not six times
    failed = [i for i, error in enumerate(result.errors) if error is not None]
    assert 3 in failed and all(result.predictions[i] is None for i in failed) and len(failed) <= 2
    assert all("request failed:" in result.errors[i] and "HTML page" in result.errors[i] for i in failed)


def test_an_endpoint_that_always_answers_garbage_stops_the_simulation():
    """Garbage on every request: the third request in a row that fails the same way raises EndpointMismatch (not an
    LLMError, so it is not turned into failed windows), naming the endpoint."""
    with FakeOpenAIServer(lambda request: Garbage()) as srv:
        profile = ModelProfile(model="m", base_url=srv.base_url, max_retries=5)
        with pytest.raises(EndpointMismatch, match=f"{srv.base_url}.*HTML page.*3 calls in a row"):
            asyncio.run(simulate_over_http(profile))
    assert len(srv.requests) == 6


def test_one_bad_window_does_not_spoil_the_others():
    def short_second_window(request):
        return "<start>\ndef\t10\n f\t0\n(\t0\n)\t0\n<end>\n<start>\nx\t0\n<end>\n"

    with FakeOpenAIServer(short_second_window) as srv:
        profile = ModelProfile(model="m", base_url=srv.base_url, supports_logprobs=False)
        result = asyncio.run(simulate_over_http(profile))
    assert result.predictions[0] == [10.0, 0.0, 0.0, 0.0] and result.errors[0] is None
    assert result.predictions[1] is None and "expected 3 token lines, got 1" in result.errors[1]
