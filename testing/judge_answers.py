"""The test server's answers to detection and fuzzing prompts (``prompts/classify_user.j2``): deterministic, from the
explanation's quoted tokens, as ``autointerp.scoring.judges.QuotedJudge`` decides, with top logprobs on each answer.

    classify_reply("Explanation of the neuron: the token \\"def\\"\\n...Example 1: def f()")   # Reply or None
"""

from __future__ import annotations

import json
import math
import re

from autointerp.testing.outcomes import Reply

_EXPLANATION_RE = re.compile(r"^Explanation of the neuron: (.*)$", re.M)
_EXAMPLE_RE = re.compile(r"^Example \d+: (.*)$", re.M)
_MARK_RE = re.compile(r"<<(.*?)>>")
_DOUBLE_QUOTED_RE = re.compile(r'"((?:[^"\\]|\\.)*)"')
YES_TOP_LOGPROBS = {"1": math.log(0.9), "0": math.log(0.1)}
NO_TOP_LOGPROBS = {"0": math.log(0.9), "1": math.log(0.1)}


def classify_reply(prompt: str) -> Reply | None:
    """A detection or fuzzing prompt answered from the explanation's double-quoted tokens (leading spaces removed,
    escaped as the prompt shows tokens): fuzzing (marks ``<<t>>`` present) says 1 when at least half of the marked
    tokens are quoted; detection says 1 when a quoted token occurs in the example's text, not inside a word (no
    letter or digit right before a quoted token that starts with one, nor right after one that ends with one). The reply is a JSON list with top logprobs on each answer. None for any other prompt."""
    explanation = _EXPLANATION_RE.search(prompt)
    examples = _EXAMPLE_RE.findall(prompt)
    if explanation is None or not examples:
        return None
    quoted = set()
    for q in _DOUBLE_QUOTED_RE.findall(explanation.group(1)):
        try:
            q = json.loads(f'"{q}"')
        except json.JSONDecodeError:
            pass
        q = q.lstrip(" ") or q
        if q:
            quoted.add(q.translate(str.maketrans({"\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"})))

    def detect(text: str) -> bool:
        return any(not (q[0].isalnum() and text[i - 1 : i].isalnum()) and not (q[-1].isalnum() and
                   text[i + len(q) : i + len(q) + 1].isalnum()) for q in quoted for i in _starts(text, q))

    answers = []
    for text in examples:
        marks = _MARK_RE.findall(text)
        if marks:
            hits = [(m.lstrip(" ") or m) in quoted for m in marks]
            answers.append(2 * sum(hits) >= len(hits))
        else:
            answers.append(detect(text))
    tokens: list[tuple[str, dict[str, float]]] = [("[", {})]
    for k, yes in enumerate(answers):
        tokens += [(", ", {})] if k else []
        tokens.append(("1", YES_TOP_LOGPROBS) if yes else ("0", NO_TOP_LOGPROBS))
    return Reply(tokens=tokens + [("]", {})])


def _starts(text: str, sub: str) -> list[int]:
    return [m.start() for m in re.finditer(re.escape(sub), text)]
