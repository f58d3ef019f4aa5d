"""The explainer's prompts: normalisation, window format, answer parsing, and the exact rendered text of the draft,
revision and re-ask messages for a tiny fixed record, pinned in tests/golden/explainer_prompt.txt (rewrite it with
UPDATE_GOLDEN=1 after a deliberate prompt change, and review the diff)."""

from __future__ import annotations

import os
from pathlib import Path

import jinja2
import pytest

from autointerp.agent.prompting import (
    MAX_EXPLANATION_CHARS,
    draft_messages,
    evidence,
    norm,
    parse_explanation,
    reask_message,
    record_statistics,
    revise_message,
    scale,
    tool_specs,
    windows_text,
)
from autointerp.prompts.render import render
from autointerp.subject.records import UnitId, UnitRecord, UnitStats, Window

GOLDEN = Path(__file__).parent / "golden" / "explainer_prompt.txt"


def window(index: int, tokens: list[str], activations: list[float], split: str = "train") -> Window:
    return Window(index, tuple(tokens), tuple(range(len(tokens))), tuple(activations), "top", index, split)


def tiny_record() -> UnitRecord:
    train = [
        window(0, ["def", " f", "(", "self", "):\n", "\t", "return", " self", "."], [0, 0, 0, 1.5, 0, 0, 0, 3.0, -0.2]),
        window(3, ["x", " =", " self", "\\", "y"], [0, 0.1, 2.4, 0, 0]),
    ]
    stats = UnitStats(n_tokens=1000, fire_count=12, threshold=0.0, mean=0.02, std=0.2, max=3.0, min=-0.3,
                      quantiles={"q50": 0.0, "q99": 1.25})
    return UnitRecord(UnitId(2, 7), tuple(train), stats, top_tokens=((" self", 9, 10), ("self", 3, 12)))


def as_text(messages: list[dict[str, str]]) -> str:
    return "".join(f"=== {m['role']} ===\n{m['content']}" for m in messages)


def golden_messages() -> list[dict[str, str]]:
    record = tiny_record()
    train = record.split("train")
    statistics = {**record_statistics(record), "position_firing_rate": [0.0, 0.02, 0.01], "token_detector": True}
    draft = draft_messages(record, statistics, train, tool_calls_left=3)
    worst = [{"tokens": ["a", " self", "\n"], "activations": [0.0, 3.6, 0.0], "predictions": [0.0, 2.4, 0.0]},
             {"tokens": ["b", " selfish"], "activations": [0.0, 0.0], "predictions": [0.0, 9.6]}]
    revise = revise_message('the token " self"', 0.4567, worst, scale(train))
    return [*draft, {"role": "assistant", "content": 'EXPLANATION: the token " self"'}, revise, reask_message()]


def test_explainer_prompt_matches_golden():
    text = as_text(golden_messages())
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.write_text(text, encoding="utf-8")
    assert text == GOLDEN.read_text(encoding="utf-8")


def test_norm_follows_methods():
    assert norm([0.0, 1.0, 1.99, 2.0, -5.0, 4.0], 2.0) == [0, 5, 9, 10, 0, 10]  # floor, negatives 0, capped at 10
    assert norm([1.0, 2.0], 0.0) == [0, 0] and norm([1.0], -1.0) == [0]
    assert scale(tiny_record().split("train")) == 3.0


def test_windows_are_repeated_without_zeros_only_when_sparse():
    sparse = windows_text([(["a", "b", "c", "d", "e", "f"], [0, 0, 0, 0, 0, 2.0])], 2.0)  # 1 of 6 non-zero
    assert sparse == "<start>\na\t0\nb\t0\nc\t0\nd\t0\ne\t0\nf\t10\n<end>\n" \
                     "The same windows again, only the tokens where the neuron fires:\n<start>\nf\t10\n<end>"
    dense = windows_text([(["a", "b", "c", "d", "e"], [0, 0, 0, 0, 2.0])], 2.0)  # 1 of 5 = 20%: not below 20%
    assert "again" not in dense and dense.count("<start>") == 1
    assert "again" not in windows_text([(["a"], [0.0])], 0.0)  # nothing fires: no empty repeat


def test_tokens_keep_one_line_each():
    text = windows_text([(["(\n", "\t", "C:\\"], [1.0, 1.0, 1.0])], 1.0)
    assert text.splitlines() == ["<start>", "(\\n\t10", "\\t\t10", "C:\\\\\t10", "<end>"]


@pytest.mark.parametrize(
    "reply, expected",
    [
        ('I looked at it.\nEXPLANATION: The token " self" inside methods.', 'The token " self" inside methods.'),
        ("**Explanation:** `self` attribute access", "`self` attribute access"),
        ("**EXPLANATION:** `self attribute access`", "self attribute access"),
        ('EXPLANATION: first\nmore thinking\nEXPLANATION: "second one"', "second one"),
        ("Reasoning...\nEXPLANATION:\nthe keyword def\n", "the keyword def"),
        ('The token "def".', 'The token "def".'),  # one line without the marker is the answer
        ('"def" and "class"', '"def" and "class"'),  # inner quotes: not unwrapped
        ("line one\nline two", None),
        ("", None),
        ("EXPLANATION:   ", None),
        ("EXPLANATION: " + "x" * (MAX_EXPLANATION_CHARS + 1), None),
    ],
)
def test_parse_explanation(reply, expected):
    assert parse_explanation(reply) == expected


def test_evidence_is_compact_and_skips_long_values():
    lines = evidence({"firing_rate": 0.0123, "dead": False, "top_tokens": [[" self", 9, 10]] * 20,
                      "quantiles": {"q50": 0.0}, "curve": list(range(200)), "k1": 2})
    assert lines[0] == "fires on 1.23% of tokens"
    assert lines[1].count('" self" 9/10') == 8
    assert "k1: 2" in lines and not any(line.startswith("curve") for line in lines)
    as_dicts = evidence({"top_tokens": [{"token": "def", "firings": 3, "occurrences": 4}]})  # SubjectUnitTools' shape
    assert as_dicts == ['tokens it fires on most (firings/occurrences): "def" 3/4']


def test_tool_schemas_name_the_unit_tools():
    assert [spec["function"]["name"] for spec in tool_specs()] == [
        "statistics", "train_windows", "quantile_windows", "run_text"]


def test_templates_fail_on_missing_variables():
    with pytest.raises(jinja2.UndefinedError):
        render("explainer_user.j2", unit="0/1")
