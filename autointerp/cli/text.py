"""Untrusted text on its way out: corpus tokens, LLM explanations and error bodies are inert in the terminal and in
files. Every printer of the CLI goes through these functions, all built on the one ``inert``
(``autointerp.corpus.text``, shared with the review pages).

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

from autointerp.corpus.text import UNSAFE_BEYOND_C0, inert

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


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


_JSON_UNSAFE = re.compile(f"[{UNSAFE_BEYOND_C0}]")


def json_text(value: Any, indent: int | None = 2) -> str:
    """JSON whose values are exact, with no raw control or reordering character: ``json.dumps`` escapes C0; the rest
    (DEL, C1, bidi and zero-width characters) are written as ``\\uXXXX`` escapes, which parse back to the same text."""
    text = json.dumps(value, ensure_ascii=False, indent=indent)
    return _JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
