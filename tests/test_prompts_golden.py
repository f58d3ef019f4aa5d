"""The simulator prompt is pinned to the exact text in tests/golden/ (rewrite it with UPDATE_GOLDEN=1 after a
deliberate prompt change, and review the diff)."""

from __future__ import annotations

import os
from pathlib import Path

import jinja2
import pytest

from autointerp.prompts.render import render, show_token
from autointerp.scoring.llm_simulator import simulation_messages

GOLDEN = Path(__file__).parent / "golden" / "simulator_prompt.txt"
EXPLANATION = 'fires on the token "def"'
WINDOWS = [["def", " f", "(\n"], [" x", "\t", "C:\\"]]


def as_text(messages: list[dict[str, str]]) -> str:
    return "".join(f"=== {m['role']} ===\n{m['content']}" for m in messages)


def test_simulator_prompt_matches_golden():
    text = as_text(simulation_messages(EXPLANATION, WINDOWS))
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.write_text(text, encoding="utf-8")
    assert text == GOLDEN.read_text(encoding="utf-8")


def test_compact_simulator_prompt_matches_golden():
    from autointerp.scoring.compact import compact_messages

    golden = GOLDEN.with_name("simulator_compact_prompt.txt")
    text = as_text(compact_messages(EXPLANATION, WINDOWS))
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(text, encoding="utf-8")
    assert text == golden.read_text(encoding="utf-8")


def test_templates_fail_on_missing_variables():
    with pytest.raises(jinja2.UndefinedError):
        render("simulator_user.j2", explanation="x")
    with pytest.raises(jinja2.UndefinedError):
        render("simulator_compact_user.j2", explanation="x")


def test_show_token_keeps_one_line_per_token():
    assert show_token(" f") == " f"
    assert show_token("(\n") == "(\\n" and show_token("\t") == "\\t" and show_token("\r") == "\\r"
    assert show_token("C:\\") == "C:\\\\"


def test_all_at_once_simulator_prompt_matches_golden():
    from autointerp.scoring.echo_simulator import echo_prompt

    golden = GOLDEN.with_name("simulator_echo_prompt.txt")
    text = "".join(echo_prompt(EXPLANATION, WINDOWS, top)[0] for top in (10, 9))
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(text, encoding="utf-8")
    assert text == golden.read_text(encoding="utf-8")
