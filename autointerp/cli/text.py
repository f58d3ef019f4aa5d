"""Untrusted text on its way out: corpus tokens, LLM explanations and error bodies are inert in the terminal and in
files. Every printer of the CLI goes through these three functions.

    >>> inert("red \\x1b[31mALERT\\x1b[0m\\u202e")            # the terminal and table cells: visibly escaped
    'red \\\\x1b[31mALERT\\\\x1b[0m\\\\u202e'
    >>> csv_cell("=HYPERLINK(\\"http://x\\")")              # CSV: a cell a spreadsheet would run is quoted as text
    '\\'=HYPERLINK("http://x")'
    >>> json_text({"t": "\\x1b[2J\\u202e"}, indent=None)     # JSON: exact values, nothing raw on the terminal
    '{"t": "\\\\u001b[2J\\\\u202e"}'
"""

from __future__ import annotations

import json
import re
from typing import Any

from rich.markup import escape
from rich.text import Text

# C0 controls and DEL, C1 controls, and the format characters that reorder or hide text (bidi embeddings, overrides
# and isolates, directional marks, zero-width characters, line/paragraph separators, the BOM).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")
_NAMED = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _escape(match: re.Match[str]) -> str:
    ch = match.group()
    named = _NAMED.get(ch)
    if named is not None:
        return named
    return f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}"


def inert(value: Any, keep_newlines: bool = False) -> str:
    """``str(value)`` with every control or reordering character written as a visible escape (``\\x1b``, ``\\n``,
    ``\\u202e``); ``keep_newlines`` leaves line breaks as they are (multi-line text in its own block)."""
    text = "" if value is None else str(value)
    if keep_newlines:
        return "\n".join(_CONTROL.sub(_escape, line) for line in text.split("\n"))
    return _CONTROL.sub(_escape, text)


def cell(value: Any) -> Text:
    """A table cell: inert text, never read as rich markup."""
    return Text(inert(value))


def markup(value: Any) -> str:
    """Untrusted text to put inside a rich markup string (an f-string printed by ``console.print``): inert, and its
    square brackets never read as markup."""
    return escape(inert(value))


def csv_cell(value: Any) -> Any:
    """A CSV cell: numbers as they are; text inert, and quoted with a leading ``'`` when it starts with a character
    a spreadsheet reads as a formula (``=``, ``+``, ``-``, ``@``, tab, carriage return)."""
    if value is None or isinstance(value, bool | int | float):
        return value
    text = str(value)
    return ("'" + inert(text)) if text.startswith(_FORMULA_START) else inert(text)


_JSON_UNSAFE = re.compile("[\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")


def json_text(value: Any, indent: int | None = 2) -> str:
    """JSON whose values are exact, with no raw control or reordering character: ``json.dumps`` escapes C0; the rest
    (DEL, C1, bidi and zero-width characters) are written as ``\\uXXXX`` escapes, which parse back to the same text."""
    text = json.dumps(value, ensure_ascii=False, indent=indent)
    return _JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
