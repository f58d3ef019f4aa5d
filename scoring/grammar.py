"""llama.cpp grammars (GBNF) that hold a simulator reply to its format (profile ``simulator_grammar = true``), and a
classification judge's reply to its list of answers (``judge_grammar = true``).

    compact_grammar([3, 2])         # root ::= w1 w2 / w1 ::= "1:" c c c "\\n" / w2 ::= "2:" c c "\\n" / c ::= [0-9X]
    full_grammar([["def", " f"]])   # <start>, each token line as the prompt shows it with a number 0..10, <end>
    answers_grammar(3)              # root ::= "[" a ", " a ", " a "]" / a ::= [01]: the judge's [1, 0, 0]

With the grammar, llama.cpp samples only tokens that keep the reply inside the format: one line per window with one
character per token (compact), or every token line copied with a number (full). The count of numbers can then not
be wrong; the expected values are still read from the logprobs of the numbers, renormalised over "0".."10".
Sent as ``grammar`` in the request body (llama-server and llama-cpp-python read it; other servers reject or ignore
it), only when the profile asks.
"""

from __future__ import annotations

from autointerp.prompts.render import show_token


def gbnf_literal(text: str) -> str:
    """``text`` as a GBNF string literal: quotes, backslashes and control characters escaped."""
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def compact_grammar(sizes: list[int]) -> str:
    """The compact reply to windows of ``sizes`` tokens: ``N:`` and one character 0-9 or X per token, per line."""
    rules = ["root ::= " + " ".join(f"w{i}" for i in range(1, len(sizes) + 1))]
    rules += [f'w{i} ::= "{i}:" ' + "c " * size + '"\\n"' for i, size in enumerate(sizes, 1)]
    return "\n".join(rules + ["c ::= [0-9X]"]) + "\n"


def full_grammar(windows: list[list[str]]) -> str:
    """The full reply to ``windows``: each window's token lines as the prompt shows them, each with a number 0..10."""
    rules = ["root ::= " + " ".join(f"w{i}" for i in range(1, len(windows) + 1))]
    for i, window in enumerate(windows, 1):
        lines = " ".join(f'{gbnf_literal(show_token(token) + chr(9))} n "\\n"' for token in window)
        rules.append(f'w{i} ::= "<start>\\n" {lines} "<end>\\n"')
    return "\n".join(rules + ['n ::= [0-9] | "10"']) + "\n"


def answers_grammar(size: int) -> str:
    """A classification judge's reply to ``size`` examples: a JSON list of exactly that many 0s and 1s, spaced as
    the prompt's example (``[1, 0, 0]``), so that the answers always parse (``judges.parse_answers``)."""
    return "root ::= \"[\" " + " \", \" ".join(["a"] * size) + " \"]\"\na ::= [01]\n"
