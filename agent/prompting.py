"""The explainer's prompts (docs/methods.md §2): records formatted as ``token<TAB>value`` windows, and answers read
back.

    from autointerp.agent.prompting import draft_messages, parse_explanation, record_statistics, scale
    train = record.split("train")[:10]
    messages = draft_messages(record, record_statistics(record), train, tool_calls_left=0)
    parse_explanation('It fires on attribute access.\\nEXPLANATION: The token " self" before a dot.')
    # -> 'The token " self" before a dot.'

Prompt text lives in ``prompts/explainer_*.j2`` (jinja2, ``StrictUndefined``), few-shot examples in
``prompts/explainer_examples.json`` and the tool schemas in ``prompts/explainer_tools.json``; this module only
chooses what goes into them. The choices:

- **Normalisation.** ``norm(x) = min(10, floor(10 * max(x, 0) / m))``, all zeros when ``m <= 0``. ``m`` is the
  max activation over the train windows of the draft prompt (``scale``), and it stays the scale of the whole
  conversation: windows returned by tools use it too (values above it are written 10), and the revision prompt
  uses the max of it and of the valid windows it shows, so that 10 means the same everywhere.
- **Windows.** One ``token<TAB>value`` line per token (``show_token`` escapes newlines, tabs, carriage returns and
  backslashes), each window between ``<start>`` and ``<end>``. When fewer than 20% of the values shown are
  non-zero, the windows are repeated with the zero lines removed (windows with no non-zero line are left out).
- **Answer.** The model is asked for one sentence and to end with a line ``EXPLANATION: <sentence>``. The last such
  line wins (markdown emphasis around the marker is ignored; an empty marker line takes the next line). A reply
  without a marker is accepted only when it is a single line. The sentence is unwrapped from quotes or backticks
  that enclose all of it. A reply that is a JSON object (``ANSWER_SCHEMA``: a profile with ``response_format`` has
  the server constrain the answer to it, for small models that do not keep the line format) gives its
  ``explanation`` field instead. Anything else is unparseable (None).
- **Judging the sentence** (``explanation_problem``): it must be one sentence about what the unit responds to.
  Rejected, with the reason that the re-ask quotes: fewer than ``MIN_EXPLANATION_WORDS`` or more than
  ``MAX_EXPLANATION_WORDS`` words or ``MAX_EXPLANATION_CHARS`` characters; more than one sentence (a ``.``, ``!`` or
  ``?`` followed by a space and a capital letter, outside quotes and backticks); a list (a bullet or number marker
  at the start, or four or more items separated by commas, semicolons, "and" or "or" of at most two words each and nothing else); a
  question; text that describes the input instead of the unit (the code, snippet, function, text, passage, ...
  as the subject of "demonstrates", "uses", "defines", "shows", ...: "The code snippet demonstrates a Python
  function that uses ``functools.reduce``"); and chat filler ("Sure", "Here is", "I think", "As an AI"). The bad
  replies of a real small model that these rules were checked on are kept in ``tests/data/weak_model_replies.json``.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Sequence
from typing import Any

from autointerp.llm.client import Message
from autointerp.llm.wire import response_format
from autointerp.prompts.render import PROMPTS_DIR, render
from autointerp.subject.records import UnitRecord, Window

SYSTEM_TEMPLATE = "explainer_system.j2"
USER_TEMPLATE = "explainer_user.j2"
WINDOWS_TEMPLATE = "explainer_windows.j2"
REVISE_TEMPLATE = "explainer_revise.j2"
REASK_TEMPLATE = "explainer_reask.j2"
EXAMPLES_FILE = "explainer_examples.json"
TOOLS_FILE = "explainer_tools.json"
# every prompt file whose text reaches the model: their SHA-256 identifies the prompt in a run's config
PROMPT_FILES = (SYSTEM_TEMPLATE, USER_TEMPLATE, WINDOWS_TEMPLATE, REVISE_TEMPLATE, REASK_TEMPLATE, EXAMPLES_FILE,
                TOOLS_FILE)

MAX_VALUE = 10
SPARSE_FRACTION = 0.2  # below this share of non-zero values, windows are repeated with the zero lines removed
MAX_EXPLANATION_CHARS = 400
MIN_EXPLANATION_WORDS = 2
MAX_EXPLANATION_WORDS = 40
MAX_TOP_TOKENS = 8  # top tokens listed in the evidence summary
MAX_EVIDENCE_VALUE_CHARS = 160  # other statistics are listed when their JSON is at most this long

_MARKER_RE = re.compile(r"^[\s*_#>`-]*EXPLANATION[*_\s]*:[*_]*[ \t]*(.*)$", re.I | re.M)
_WRAPPERS = (('"', '"'), ("'", "'"), ("\u201c", "\u201d"), ("`", "`"), ("**", "**"))


def norm(activations: Sequence[float], m: float) -> list[int]:
    """Activations as integers 0..10: ``min(10, floor(10 * max(x, 0) / m))``; all zeros when ``m <= 0``."""
    if m <= 0:
        return [0] * len(activations)
    return [min(MAX_VALUE, math.floor(MAX_VALUE * max(x, 0.0) / m)) for x in activations]


def scale(windows: Sequence[Window]) -> float:
    """``m`` for a prompt: the max activation over the windows shown (0.0 when none)."""
    return max((w.max_activation for w in windows), default=0.0)


def windows_text(windows: Sequence[tuple[Sequence[str], Sequence[float]]], m: float) -> str:
    """(tokens, raw activations) windows as ``<start>``/``<end>`` blocks of ``token<TAB>norm`` lines, repeated
    without the zero lines when fewer than 20% of the values are non-zero."""
    rows = [list(zip(tokens, norm(activations, m))) for tokens, activations in windows]
    values = [value for row in rows for _, value in row]
    sparse = sum(value > 0 for value in values) < SPARSE_FRACTION * len(values)
    fired = [[(t, v) for t, v in row if v > 0] for row in rows] if sparse else []
    return render(WINDOWS_TEMPLATE, windows=rows, fired=[row for row in fired if row]).rstrip("\n")


def record_statistics(record: UnitRecord) -> dict[str, Any]:
    """The record's own statistics in the shape of ``UnitTools.statistics()``, for explainers without tools."""
    stats = record.stats
    return {
        "n_tokens": stats.n_tokens,
        "firing_rate": stats.firing_rate,
        "dead": stats.dead,
        "max": stats.max,
        "quantiles": dict(stats.quantiles),
        "top_tokens": [list(t) for t in record.top_tokens],
    }


def evidence(statistics: dict[str, Any]) -> list[str]:
    """A compact summary of ``UnitTools.statistics()``, one line per fact: firing rate, top tokens (as
    ``(token, firings, occurrences)`` or ``{"token", "firings", "occurrences"}``), quantiles, the positional
    profile, then every other statistic whose JSON is short."""
    lines: list[str] = []
    rest = dict(statistics)
    if rest.pop("dead", False):
        lines.append("it never fires")
    if (rate := rest.pop("firing_rate", None)) is not None:
        lines.append(f"fires on {100 * rate:.3g}% of tokens")
    if top := rest.pop("top_tokens", None):
        rows = [(t["token"], t["firings"], t["occurrences"]) if isinstance(t, dict) else t for t in top]
        shown = ", ".join(f"{json.dumps(t, ensure_ascii=False)} {f}/{o}" for t, f, o in rows[:MAX_TOP_TOKENS])
        lines.append(f"tokens it fires on most (firings/occurrences): {shown}")
    if quantiles := rest.pop("quantiles", None):
        lines.append("activation quantiles: " + ", ".join(f"{k} {_number(v)}" for k, v in quantiles.items()))
    if profile := rest.pop("position_firing_rate", None):
        low, high = min(range(len(profile)), key=profile.__getitem__), max(range(len(profile)), key=profile.__getitem__)
        lines.append(f"firing rate by position in the window: lowest {100 * profile[low]:.3g}% at position {low}, "
                     f"highest {100 * profile[high]:.3g}% at position {high}")
    for key, value in rest.items():
        text = _number(value) if isinstance(value, float) else json.dumps(value, ensure_ascii=False)
        if len(text) <= MAX_EVIDENCE_VALUE_CHARS:
            lines.append(f"{key}: {text}")
    return lines


def _number(value: float) -> str:
    return f"{value:.4g}"


@functools.cache
def _examples() -> list[dict[str, Any]]:
    return json.loads((PROMPTS_DIR / EXAMPLES_FILE).read_text(encoding="utf-8"))


@functools.cache
def tool_specs() -> list[dict[str, Any]]:
    """The tools offered to the model, in the chat-completions ``tools`` format."""
    return json.loads((PROMPTS_DIR / TOOLS_FILE).read_text(encoding="utf-8"))


def system_message(*, tool_calls_left: int) -> Message:
    """The explainer's instructions (the tools paragraph when calls are left), with the few-shot examples (each
    normalised by its own max)."""
    examples = []
    for example in _examples():
        pairs = [(w["tokens"], w["activations"]) for w in example["windows"]]
        m = max(max(acts) for _, acts in pairs)
        examples.append({"windows": windows_text(pairs, m), "explanation": example["explanation"]})
    content = render(SYSTEM_TEMPLATE, examples=examples, tool_calls_left=tool_calls_left)
    return {"role": "system", "content": content}


def draft_messages(
    record: UnitRecord, statistics: dict[str, Any], windows: Sequence[Window], *, tool_calls_left: int
) -> list[Message]:
    """System and user messages asking for a first explanation of ``windows`` (train windows only)."""
    shown = windows_text([(w.tokens, w.activations) for w in windows], scale(windows))
    user = render(USER_TEMPLATE, unit=str(record.id), evidence=evidence(statistics), n_windows=len(windows),
                  windows=shown)
    return [system_message(tool_calls_left=tool_calls_left), {"role": "user", "content": user}]


def revise_message(explanation: str, score: float | None, worst: Sequence[dict[str, Any]], m: float) -> Message:
    """The request to revise ``explanation``, showing the valid windows where its simulation was most wrong.

    ``worst`` is what the Validator returns: dicts with ``tokens``, raw ``activations`` and ``predictions`` (0..10).
    True values are normalised by the max of ``m`` (the draft's scale) and of these windows' activations. A revision
    is only ever asked for with evidence: ``worst`` empty is a ValueError.
    """
    if not worst:
        raise ValueError("a revision prompt needs at least one simulated window")
    m = max([m, *(max(w["activations"]) for w in worst)])
    windows = []
    for w in worst:
        true = norm(w["activations"], m)
        predicted = [round(p) for p in w["predictions"]]
        errors = [t - p for t, p in zip(true, w["predictions"])]
        kind = "missed firing" if max(errors, key=abs, default=0) > 0 else "false positive"
        windows.append({"kind": kind, "rows": list(zip(w["tokens"], true, predicted))})
    shown_score = "undefined (constant predictions or activations)" if score is None else f"{score:.2f}"
    content = render(REVISE_TEMPLATE, explanation=explanation, score=shown_score, windows=windows)
    return {"role": "user", "content": content}


def reask_message(problem: str | None = None) -> Message:
    """The one re-ask after an answer without an acceptable ``EXPLANATION:`` line; ``problem``: what was wrong."""
    content = render(REASK_TEMPLATE, max_chars=MAX_EXPLANATION_CHARS, max_words=MAX_EXPLANATION_WORDS,
                     problem=problem)
    return {"role": "user", "content": content}


_QUOTED_RE = re.compile(r"\"[^\"]*\"|\u201c[^\u201d]*\u201d|`[^`]*`|(?<![\w'])'[^']*'(?!\w)")
_JSON_START_RE = re.compile(r'\s*\{\s*"')  # how a JSON object answer begins (ANSWER_SCHEMA)
_SENTENCE_END_RE = re.compile(r"[.!?][)\]]*\s+[A-Z]")
_LIST_START_RE = re.compile(r"^\s*(?:[-*\u2022]|\d+[.)])\s")
_INPUT_WORDS = (r"code|snippet|function|script|program|text|passage|document|example|excerpt|file|class|method|"
                r"module|windows?|sequences?|input|python|sentence|paragraph|line")
_DESCRIBING_VERBS = (r"demonstrates?|shows?|uses?|defines?|describes?|contains?|implements?|illustrates?|provides?|"
                     r"creates?|calls?|imports?|returns?|prints?|reads?|takes?|is|are|was|appears?|seems?|"
                     r"performs?|checks?|iterates?|handles?|computes?|calculates?")
_DESCRIBES_INPUT_RE = re.compile(
    rf"^(?:the|this|these|that|each|in\s+(?:the|this))\b[^.]{{0,40}}?\b(?:{_INPUT_WORDS})\s+(?:\w+\s+){{0,2}}?"
    rf"(?:{_DESCRIBING_VERBS})\b", re.I)
_FILLER_RE = re.compile(r"^(?:sure\b|certainly\b|okay\b|ok\b|here(?:'s|\s+is|\s+are)\b|i\b|i'm\b|as\s+an\s+ai\b|"
                        r"based\s+on\b|the\s+answer\b|explanation\b)", re.I)


def explanation_problem(sentence: str) -> str | None:
    """Why ``sentence`` is not an acceptable explanation, or None when it is (the rules: the module docstring)."""
    words = sentence.split()
    if len(words) < MIN_EXPLANATION_WORDS:
        return f"it has {len(words)} word(s); write a sentence of at least {MIN_EXPLANATION_WORDS} words"
    if len(words) > MAX_EXPLANATION_WORDS or len(sentence) > MAX_EXPLANATION_CHARS:
        return (f"it is too long ({len(words)} words, {len(sentence)} characters); write one sentence of at most "
                f"{MAX_EXPLANATION_WORDS} words")
    bare = _QUOTED_RE.sub('"q"', sentence)
    if _SENTENCE_END_RE.search(bare):
        return "it is more than one sentence; write one sentence"
    if _LIST_START_RE.match(bare) or _is_word_list(bare):
        return "it is a list; write one sentence saying what the neuron responds to"
    if bare.rstrip().endswith("?"):
        return "it is a question; state what the neuron responds to"
    if _DESCRIBES_INPUT_RE.match(bare):
        return "it describes the text shown, not the neuron; say which tokens or contexts make the neuron fire"
    if _FILLER_RE.match(bare):
        return "it starts with chat filler; answer with the explanation only"
    return None


def _is_word_list(bare: str) -> bool:
    items = [item.strip() for item in re.split(r"[,;]|\band\b|\bor\b", bare.rstrip(". ")) if item.strip()]
    return len(items) >= 4 and all(len(item.split()) <= 2 for item in items)


ANSWER_SCHEMA = {  # the answer as JSON, for servers that constrain generation to a schema (profile response_format)
    "type": "object",
    "properties": {
        "reasoning": {"type": "string", "maxLength": 600},
        "explanation": {"type": "string", "maxLength": MAX_EXPLANATION_CHARS},
    },
    "required": ["reasoning", "explanation"],
}


def answer_format(kind: str) -> dict[str, Any] | None:
    """The ``response_format`` request field that holds an answer to ``ANSWER_SCHEMA`` in the dialect ``kind``
    (``ModelProfile.response_format``), or None for free text."""
    return response_format(kind, "explanation", ANSWER_SCHEMA)


def read_explanation(text: str) -> tuple[str | None, str | None]:
    """(the one-sentence explanation in a reply, None) or (None, why there is none): see the module docstring."""
    is_json, answer = _json_answer(text)
    if is_json:
        sentence = _unwrap(answer.strip()) if answer is not None else ""
        if not sentence:
            return None, "the JSON answer's \"explanation\" holds no sentence"
    elif _JSON_START_RE.match(text):  # a JSON answer that does not parse: no sentence to take from it
        return None, "the JSON answer does not parse: cut off before its end? (max_tokens in the model profile)"
    else:
        sentence = _extract(text)
        if sentence is None:
            return None, "there was no line \"EXPLANATION: <one sentence>\""
    problem = explanation_problem(sentence)
    return (None, problem) if problem is not None else (sentence, None)


def parse_explanation(text: str) -> str | None:
    """The one-sentence explanation in a reply, or None when there is none or it is not acceptable."""
    return read_explanation(text)[0]


def _extract(text: str) -> str | None:
    """The sentence a free-text reply gives as its explanation, unjudged; None when there is no readable one."""
    matches = list(_MARKER_RE.finditer(text))
    if matches:
        sentence = matches[-1].group(1).strip()
        if not sentence:
            following = text[matches[-1].end() :].strip().splitlines()
            sentence = following[0] if following else ""
    else:
        lines = text.strip().splitlines()
        if len(lines) != 1:
            return None
        sentence = lines[0]
    sentence = _unwrap(sentence.strip())
    return sentence or None


def _json_answer(text: str) -> tuple[bool, str | None]:
    """(whether the reply is a JSON object, its ``explanation`` string or None): see ``ANSWER_SCHEMA``."""
    stripped = text.strip()
    if not stripped.startswith("{"):
        return False, None
    try:
        answer = json.loads(stripped)
    except ValueError:
        return False, None
    if not isinstance(answer, dict):
        return False, None
    value = answer.get("explanation")
    return True, value if isinstance(value, str) else None


def _unwrap(sentence: str) -> str:
    """``sentence`` without quotes, backticks or bold markers that enclose all of it (and appear nowhere inside)."""
    for left, right in _WRAPPERS:
        inner = sentence[len(left) : len(sentence) - len(right)]
        if len(sentence) > len(left) + len(right) and sentence.startswith(left) and sentence.endswith(right):
            if left not in inner and right not in inner:
                return _unwrap(inner.strip())
    return sentence
