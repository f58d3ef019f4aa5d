"""The compact simulation reply (autointerp.scoring.compact, docs/methods.md §2c): parsing by window number, count
checks that fail one window and never shift the others, expected values from each character's logprobs (inside tokens
that hold several digits too), the stream stopped at a bad line, and the same predictions as the full format."""

from __future__ import annotations

import asyncio
import math

import pytest

from autointerp.config import Config
from autointerp.llm import LLMClient, ModelProfile
from autointerp.llm.tokens import TokenCounter
from autointerp.llm.types import MalformedLogprobs, TokenLogprob
from autointerp.pipeline.components import LLMContext, make_simulator
from autointerp.scoring.compact import (
    CompactWatch,
    char_expected_value,
    compact_expected_values,
    compact_messages,
    compact_reply_budget,
    parse_compact,
)
from autointerp.scoring.llm_simulator import LLMSimulator, simulation_messages
from autointerp.testing.fake import FakeLLM
from autointerp.testing.server import FakeOpenAIServer, Reply

ln = math.log
EXPLANATION = 'the token "def"'
WINDOWS = [["def", " f", "(", ")"], ["x", " =", " def"], ["\n", "def", "\t"], ["pass"], ["def"]]


def test_parse_matches_lines_to_windows_by_number_and_checks_counts():
    text = "Here you are:\n2:X0\n1:000\n3:0x0\n"
    first, second, third = parse_compact(text, [3, 2, 3])
    assert [v for v, _ in first] == [0, 0, 0] and [v for v, _ in second] == [10, 0]
    assert [v for v, _ in third] == [0, 10, 0]
    assert [text[offset] for _, offset in second] == ["X", "0"]
    # window 1's line is one character short: an error on window 1 alone, window 2 keeps its own line
    short, kept = parse_compact("1:00\n2:9X\n", [3, 2])
    assert "expected 3 characters (one per token), got 2" in short and [v for v, _ in kept] == [9, 10]
    # a skipped window is missing, never filled with the next window's line (all windows have the same length)
    missing, shifted = parse_compact("2:000\n", [3, 3])
    assert "no line for window 1" in missing and [v for v, _ in shifted] == [0, 0, 0]
    assert "more than one line" in parse_compact("1:0\n1:0\n", [1])[0]
    assert "no line for window 1" in parse_compact("1: 0 0 0\n", [3])[0]  # separators are off format


def test_watch_stops_at_the_first_bad_line_and_when_every_window_is_answered():
    watch = CompactWatch([2, 1])
    assert watch("Sure.\n") is None and watch("Sure.\n1:0X\n") is None
    assert watch("Sure.\n1:0X\n2:0\n") == "every window answered" and watch.complete
    assert "window 1 has 3 characters for its 2 tokens" in CompactWatch([2, 1])("1:000\n")
    assert "off format" in CompactWatch([2, 1])("1:00\nI think\n")
    assert "off format" in CompactWatch([2])("a\nb\nc\n")  # more than two preamble lines
    assert "no window left" in CompactWatch([2, 1])("3:0\n")


def test_budget_allows_one_token_per_character():
    assert compact_reply_budget([["a"] * 64] * 10) >= 10 * (64 + 3)


def test_expected_value_of_a_character_inside_a_merged_token():
    # tiktoken-style digit groups: the written token "000" holds three positions
    top = {"000": ln(0.5), "009": ln(0.2), "0X": ln(0.1), "X": ln(0.1), "0": ln(0.1)}
    assert char_expected_value(top, "") == pytest.approx(0.1 * 10)  # the first character: the exact marginal
    assert char_expected_value(top, "0") == pytest.approx(0.1 * 10 / 0.8)  # "000", "009", "0X" go on; "0" does not
    assert char_expected_value(top, "00") == pytest.approx(0.2 * 9 / 0.7)
    assert char_expected_value({"the": 0.0}, "") is None
    tokens = [TokenLogprob("1", 0.0, {}), TokenLogprob(":", 0.0, {}), TokenLogprob("000", 0.0, top),
              TokenLogprob("X", 0.0, {"X": ln(0.5), "0": ln(0.5)})]
    values, missing, inside = compact_expected_values(tokens, [0, 1, 2, 5], [2, 3, 4, 5])
    assert values == pytest.approx([1.0, 1.25, 1.8 / 0.7, 5.0]) and missing == 0 and inside == 2


def test_a_text_sent_twice_adds_up_and_a_malformed_entry_is_an_error():
    """A token's alternatives as sent: a text sent twice (two token ids with the same text) adds up in
    ``top_logprobs`` and in the expected value; a position with no numeric alternative is missing; a malformed entry
    is MalformedLogprobs."""
    sent = [{"token": "3", "logprob": ln(0.4)}, {"token": "X", "logprob": ln(0.1)}, {"token": "3", "logprob": ln(0.2)},
            {"token": " the", "logprob": ln(0.2)}, {"token": "0", "logprob": ln(0.1)}]
    token = TokenLogprob.from_entry({"token": "3", "logprob": ln(0.4), "top_logprobs": sent})
    assert token.top_logprobs["3"] == pytest.approx(ln(0.6))
    values, missing, _ = compact_expected_values([token], [0], [0])
    assert values == pytest.approx([(0.6 * 3 + 0.1 * 10) / 0.8]) and missing == 0
    words = TokenLogprob.from_entry({"token": "a", "logprob": 0.0, "top_logprobs": [{"token": "a", "logprob": 0.0}]})
    assert compact_expected_values([words], [0], [0])[:2] == ([0.0], 1)
    broken = TokenLogprob.from_entry({"token": "3", "logprob": 0.0, "top_logprobs": [{"token": "3"}]})
    with pytest.raises(MalformedLogprobs):
        compact_expected_values([broken], [0], [0])


def test_grouped_digit_tokens_end_to_end():
    """A reply tokenized as tiktoken would ("1", ":", "000", "X", "\\n"): every position gets a value."""
    def responder(messages, tools, logprobs):
        top = {"000": ln(0.9), "X": ln(0.1)}
        return Reply(tokens=[("1", {}), (":", {}), ("000", top), ("X", {"X": ln(0.6), "0": ln(0.4)}), ("\n", {})])

    result = asyncio.run(LLMSimulator(FakeLLM(responder), ModelProfile(), fmt="compact").simulate("x", [["a"] * 4]))
    assert result.errors == [None] and result.predictions[0] == pytest.approx([1.0, 0.0, 0.0, 6.0])
    assert result.details["positions_inside_merged_tokens"] == 2


def test_compact_prompt_shows_each_token_once_and_is_shorter():
    windows = [[f" w{i}" for i in range(64)] for _ in range(10)]
    compact, full = compact_messages(EXPLANATION, windows), simulation_messages(EXPLANATION, windows)
    assert compact[1]["content"].count(" w17") == 10
    assert "10 (64 tokens):\t w0\t w1\t" in compact[1]["content"]
    counter = TokenCounter()
    assert counter.count_messages(compact) < counter.count_messages(full)


async def simulate_over_http(profile: ModelProfile, fmt: str, windows=WINDOWS, explanation=EXPLANATION):
    async with LLMClient(profile, "local", backoff_base_s=0.001) as client:
        return await LLMSimulator(client, profile, 2, fmt=fmt).simulate(explanation, windows)


@pytest.mark.parametrize("supports_logprobs", [True, False])
def test_compact_and_full_give_the_same_predictions_on_the_test_server(supports_logprobs):
    with FakeOpenAIServer() as srv:
        profile = ModelProfile(model="m", base_url=srv.base_url, supports_logprobs=supports_logprobs)
        full = asyncio.run(simulate_over_http(profile, "full"))
        compact = asyncio.run(simulate_over_http(profile, "compact"))
    assert full.errors == compact.errors == [None] * 5
    assert compact.predictions == full.predictions and max(max(p) for p in full.predictions) > 5  # not all zeros
    assert compact.details["tokens_out"] < full.details["tokens_out"] / 2


def test_the_profile_setting_chooses_the_format_and_enters_the_run_key():
    def simulator(fmt):
        profile = ModelProfile(model="m", base_url="http://127.0.0.1:9/v1", simulator_format=fmt)
        cfg = Config(layer=1, simulator="m", models={"m": profile})
        llm = LLMContext(cfg)
        try:
            return make_simulator(cfg, llm)
        finally:
            asyncio.run(llm.aclose())

    full, compact = simulator("full"), simulator("compact")
    assert full.format == "full" and compact.format == "compact"
    assert full.config()["format"] == "full" and compact.config()["format"] == "compact"
    assert full.config()["prompt_sha256"] != compact.config()["prompt_sha256"]
    assert Config(layer=1).run_key("h", {}, full.config()) != Config(layer=1).run_key("h", {}, compact.config())
    assert ModelProfile().simulator_format == "full"  # until shown equal on a model that can simulate


def test_grammars_hold_each_format():
    from autointerp.scoring.grammar import compact_grammar, full_grammar

    assert compact_grammar([3, 2]) == ('root ::= w1 w2\nw1 ::= "1:" c c c "\\n"\nw2 ::= "2:" c c "\\n"\n'
                                       'c ::= [0-9X]\n')
    # the token lines as the prompt shows them (show_token), then as GBNF literals: quotes and backslashes escaped
    assert full_grammar([['"a\\', "\n", "\x1b"]]) == (
        'root ::= w1\nw1 ::= "<start>\\n" "\\"a\\\\\\\\\\t" n "\\n" "\\\\n\\t" n "\\n" "\\x1B\\t" n "\\n" "<end>\\n"\n'
        'n ::= [0-9] | "10"\n')


@pytest.mark.parametrize("fmt", ["full", "compact"])
def test_the_grammar_is_sent_only_when_the_profile_asks(fmt):
    from autointerp.scoring.grammar import compact_grammar, full_grammar

    with FakeOpenAIServer() as srv:
        for grammar in (False, True):
            profile = ModelProfile(model="m", base_url=srv.base_url, simulator_grammar=grammar)
            result = asyncio.run(simulate_over_http(profile, fmt))
            assert result.errors == [None] * 5
        plain, held = srv.requests[:3], srv.requests[3:]
    assert not any("grammar" in r for r in plain)
    expected = [compact_grammar([len(w) for w in g]) if fmt == "compact" else full_grammar(g)
                for g in (WINDOWS[0:2], WINDOWS[2:4], WINDOWS[4:])]
    assert sorted(r["grammar"] for r in held) == sorted(expected)


def test_prose_instead_of_lines_is_an_error_on_every_window():
    def chatter(request):
        return Reply(text="I think this neuron fires a lot on code.\nIt likes def.\nAnd class.\n1:0000\n")

    with FakeOpenAIServer(chatter) as srv:
        result = asyncio.run(simulate_over_http(ModelProfile(model="m", base_url=srv.base_url), "compact"))
    assert result.predictions == [None] * 5
    assert all("no line for window" in e and "stopped early: off format" in e for e in result.errors)
    assert result.details["stopped_replies"] == 3
