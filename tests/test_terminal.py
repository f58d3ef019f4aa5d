"""Corpus text and LLM explanations are untrusted: every human-readable output shows their control characters visibly
escaped, CSV cells never start a formula, and JSON keeps the values exact."""

from __future__ import annotations

import csv
import io
import json
import re
import shutil

import pytest
import sqlite_utils

from autointerp.cli.text import cell, csv_cell, inert, json_text, markup
from autointerp.report.render import environment

# Every kind: clear screen and cursor home, a window title (OSC ... BEL), a hyperlink (OSC 8 ... ST), NUL, a C1 CSI,
# NEL, DEL, backspace, bell, CR, a right-to-left override and an isolate, a zero-width space, and rich markup.
NASTY = ("\x1b[2J\x1b[H\x1b]0;pwned\x07\x1b]8;;http://evil.example/\x1b\\click\x1b]8;;\x1b\\\x00\x00"
         "\x9b31m\x85\x7f\x08\x07\r\u202eevil\u202c\u2066x\u2069\u200b[bold red]markup[/bold red]\x1bc")
RAW = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")  # all but \n


def raw_controls(text: str) -> list[str]:
    return sorted({f"U+{ord(c):04X}" for c in RAW.findall(text)})


def test_inert_escapes_every_control_and_reordering_character():
    every = "".join(map(chr, range(0x00, 0xA0))) + "\u200b\u200e\u200f\u2028\u2029\u202a\u202e\u2066\u2069\ufeff"
    shown = inert(every)
    assert raw_controls(shown) == [] and "\n" not in shown
    assert "\\x1b" in shown and "\\x00" in shown and "\\x9b" in shown and "\\u202e" in shown and "\\n" in shown
    assert inert("plain text, ünïcode ✓") == "plain text, ünïcode ✓"
    assert json.loads(json_text({"t": every})) == {"t": every}  # JSON: exact
    assert raw_controls(json_text({"t": every}).replace("\n", "")) == []


def test_the_cli_and_the_review_pages_escape_the_same_characters():
    """Every character either printer ever escaped (C0 but newline and tab, DEL, C1, zero-width and directional
    marks, line/paragraph separators, bidi embeddings and overrides, word joiner and invisible operators, bidi
    isolates, the BOM) leaves the CLI and the pages as the same visible escape, never raw."""
    hidden = [chr(c) for c in [*range(0x20), *range(0x7F, 0xA0), *range(0x200B, 0x2010), *range(0x2028, 0x202F),
                               *range(0x2060, 0x206A), 0xFEFF] if chr(c) not in "\n\t"]
    page = environment().from_string("<p>{% for c in cs %}[{{ c }}|{{ c|show_token }}]{% endfor %}</p>")
    html = page.render(cs=hidden)
    assert raw_controls(html) == [] and "\u2028" not in html and "\u2065" not in html
    assert inert("\n\t") == "\\n\\t" and "[\n\t|⏎⇥]" in page.render(cs=["\n\t"])  # a page's text keeps its layout
    for c in hidden:
        shown = inert(c)
        assert len(shown) > 1 and shown.startswith("\\"), f"U+{ord(c):04X} shown as {shown!r}"
        assert cell(c).plain == markup(c) == shown
        assert f"[{shown}|{shown}]" in html, f"U+{ord(c):04X}: the CLI writes {shown!r}, the page does not"


@pytest.mark.parametrize("prefix", ["=", "+", "-", "@", "\t", "\r"])
def test_csv_cell_neutralises_formula_prefixes(prefix):
    value = f"{prefix}HYPERLINK(\"http://evil\",\"x\")"
    shown = csv_cell(value)
    assert shown.startswith("'") and "HYPERLINK" in shown and raw_controls(shown) == []
    assert csv_cell(-0.25) == -0.25 and csv_cell(3) == 3 and csv_cell(None) is None  # numbers stay numbers
    assert csv_cell("fires on 'def'") == "fires on 'def'"


@pytest.fixture
def nasty_corpus(tmp_path, text_corpus):
    folder = tmp_path / "nasty"
    folder.mkdir()
    for src in text_corpus.iterdir():
        lines = src.read_text().splitlines()
        (folder / src.name).write_text("\n".join(f"{line} {NASTY}" if i % 3 == 0 else line
                                                 for i, line in enumerate(lines)))
    yield folder
    shutil.rmtree(folder)


def test_units_and_leaderboards_never_print_a_raw_control_character(cli, tiny_checkpoints, nasty_corpus, isolated):
    code, out, err = cli("run", "--layer", "1", "--model", str(tiny_checkpoints["opt"]), "--corpus", str(nasty_corpus),
                         "--units", "0:6")
    assert code == 0, err
    printed = {"run": out + err}
    db = sqlite_utils.Database(isolated / "autointerp.db")
    tokens = "".join("".join(json.loads(r["tokens"])) for r in db["windows"].rows)
    assert "\x1b" in tokens and "\x00" in tokens  # the corpus's sequences reached the stored windows
    # explanations and explainer names from an LLM would be as hostile as the corpus
    db.execute("UPDATE explanations SET text = ? || text, explainer = ?", [NASTY, "gpt\x1b]0;t\x07\u202e\x9b"])
    db.conn.commit()
    units = [r["unit"] for r in db.query("SELECT DISTINCT unit FROM units")]
    for unit in units:
        printed[f"show 1/{unit}"] = "".join(cli("show", f"1/{unit}", "--windows", "20")[1:])
    for by in ([], ["--by", "explainer"], ["--by", "dictionary"]):
        code, out, err = cli("leaderboard", *by)
        assert code == 0, err
        printed[f"leaderboard {by}"] = out + err
    assert "\\x1b" in printed["leaderboard []"] and "\\u202e" in printed["leaderboard []"]  # shown, escaped
    assert "[bold" in printed["leaderboard []"]  # shown as text, not read as markup
    assert {k: raw_controls(v) for k, v in printed.items() if raw_controls(v)} == {}

    code, out, _ = cli("leaderboard", "--format", "json")  # JSON: the stored text, exactly
    rows = json.loads(out)
    assert code == 0 and rows and all(r["explanation"].startswith(NASTY) for r in rows)
    assert raw_controls(out) == []
    code, out, _ = cli("show", f"1/{units[0]}", "--format", "json")
    card = json.loads(out)
    assert code == 0 and card["explanations"][0]["text"].startswith(NASTY) and raw_controls(out) == []


def test_leaderboard_csv_cells_never_start_a_formula(cli, tiny_checkpoints, text_corpus, isolated):
    code, _, err = cli("run", "--layer", "1", "--model", str(tiny_checkpoints["opt"]), "--corpus", str(text_corpus),
                       "--units", "0:8")
    assert code == 0, err
    db = sqlite_utils.Database(isolated / "autointerp.db")
    prefixes = ["=", "+", "-", "@", "\t", "\r"]
    ids = [r["id"] for r in db.query("SELECT id FROM explanations ORDER BY id")]
    for i, explanation_id in enumerate(ids):
        text = f"{prefixes[i % len(prefixes)]}HYPERLINK(\"http://evil\",\"click\")"
        db.execute("UPDATE explanations SET text = ?, explainer = ? WHERE id = ?", [text, "=cmd|' /C calc'!A0",
                                                                                     explanation_id])
    db.conn.commit()
    code, out, _ = cli("leaderboard", "--format", "csv")
    assert code == 0 and "\r" not in out and raw_controls(out) == []
    rows = list(csv.DictReader(io.StringIO(out)))
    assert rows and {r["explanation"][0] for r in rows} == {"'"} and {r["explainer"][0] for r in rows} == {"'"}
    assert all(r["explanation"][1:].lstrip("\\tr").startswith(tuple("=+-@HYPERLINK")) for r in rows)
    assert all(float(r["score"]) == float(r["score"]) for r in rows if r["score"])  # numbers stay numbers
    assert {r["explanation"][:3] for r in rows} >= {"'=H", "'+H", "'-H", "'@H", "'\\t", "'\\r"}
