"""Untrusted text made inert: corpus tokens, LLM explanations and error bodies, shown in a terminal, a table cell or
a web page, never move the cursor, reorder a line or hide text. The CLI (``autointerp.cli.text``) and the review pages
(``autointerp.report.render``) both show text through ``inert``; it lives here because corpus text is where the
untrusted input comes from, and every room downstream may import it.

    >>> inert("red \\x1b[31mALERT\\x1b[0m\\u202e")
    'red \\\\x1b[31mALERT\\\\x1b[0m\\\\u202e'
    >>> inert("two\\nlines\\tand a tab", keep="\\n\\t")
    'two\\nlines\\tand a tab'
"""

from __future__ import annotations

import re
from typing import Any

# Beyond C0 (which ``json.dumps`` escapes itself): DEL, C1 controls, and the format characters that reorder or hide
# text (zero-width characters and directional marks, line/paragraph separators, bidi embeddings and overrides, word
# joiner and invisible operators, bidi isolates, the BOM). A regex character-class body.
UNSAFE_BEYOND_C0 = "\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff"
_UNSAFE = re.compile(f"[\x00-\x1f{UNSAFE_BEYOND_C0}]")
_NAMED = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _escape(ch: str) -> str:
    named = _NAMED.get(ch)
    if named is not None:
        return named
    return f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}"


def inert(value: Any, keep: str = "") -> str:
    """``str(value)`` (``""`` for None) with every control or reordering character written as a visible escape
    (``\\x1b``, ``\\n``, ``\\u202e``), except the characters in ``keep`` (``"\\n\\t"``: multi-line text in its own
    block, where line breaks and tabs are layout)."""
    text = "" if value is None else str(value)
    return _UNSAFE.sub(lambda m: m[0] if m[0] in keep else _escape(m[0]), text)
