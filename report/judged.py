"""Detection and fuzzing (docs/methods.md §2b) as the review pages show them: each judgement of an explanation with the
examples the judge saw, the label, its answer and probability, and the tokens a fuzzing example marked.

    >>> view = judgement_view(row)       # a ``judgements`` row, JSON decoded (``Reads.judgements``)
    >>> view["examples"][0]["tokens"]    # [(token, marked), ...]; the page escapes every token (autoescape)

A page lists every example the judge failed on, the first ``WRONG_SHOWN`` of each label it got wrong (false "yes"
and missed "no" apart) and the first ``RIGHT_SHOWN`` of each label it got right (``shown``, in the order shown to the
judge); ``hidden`` counts the others (all of them stay in the database's ``judgements.examples``). At delphi's 50
examples per class, listing every one would put some 12,000 tokens on each unit page.

Rows may come from a file another autointerp wrote: a value that is not what this version writes is shown as it is
(as text), never trusted to index anything.
"""

from __future__ import annotations

from typing import Any

LABELS = {"detection": ("not activating", "activating"),
          "fuzzing": ("marked elsewhere (where it does not fire)", "marked where it fires")}
ANSWERS = {"detection": ("does not fire", "fires"), "fuzzing": ("marks do not fit", "marks fit")}
RIGHT_SHOWN = 5  # examples the judge got right listed per label
WRONG_SHOWN = 10  # examples the judge got wrong listed per label; every failed one is listed


def _named(names: tuple[str, str], value: Any) -> str:
    return names[value] if value in (0, 1) and not isinstance(value, float) else str(value)


def judgement_view(j: dict[str, Any]) -> dict[str, Any]:
    """One ``judgements`` row for a template: its numbers, and its examples in the order shown to the judge, each
    with ``label`` and ``answer`` in words, ``correct`` (None when the judge failed on it), ``p_yes``, ``error`` and
    ``tokens`` as (token, marked) pairs; ``shown`` and ``hidden`` as the module docstring says."""
    scorer = j["scorer"] if j["scorer"] in LABELS else "detection"
    examples = []
    for x in j.get("examples") or []:
        if not isinstance(x, dict):
            continue
        marked = {i for i in x.get("marked") or [] if isinstance(i, int)}
        tokens = x.get("tokens") if isinstance(x.get("tokens"), list) else []
        label, answer = x.get("label"), x.get("answer")
        examples.append(dict(
            index=x.get("index"), source=x.get("source"), bin=x.get("bin"), positive=label == 1,
            label=_named(LABELS[scorer], label), answer=None if answer is None else _named(ANSWERS[scorer], answer),
            correct=None if answer is None else answer == label, p_yes=_number(x.get("p_yes")), error=x.get("error"),
            tokens=[(str(t), i in marked) for i, t in enumerate(tokens)]))
    seen: dict[tuple[bool, bool], int] = {}
    shown = []
    for x in examples:
        if x["correct"] is not None:
            key = (x["correct"], x["positive"])
            seen[key] = seen.get(key, 0) + 1
            if seen[key] > (RIGHT_SHOWN if x["correct"] else WRONG_SHOWN):
                continue
        shown.append(x)
    return dict(j, examples=examples, shown=shown, hidden=len(examples) - len(shown),
                right_shown=sum(1 for x in shown if x["correct"]), right_per_label=RIGHT_SHOWN,
                wrong_shown=sum(1 for x in shown if x["correct"] is False), wrong_per_label=WRONG_SHOWN,
                counts=j.get("counts") if isinstance(j.get("counts"), dict) else {})


def latest(views: list[dict[str, Any]], scorer: str, split: str = "test") -> dict[str, Any] | None:
    """The newest judgement by ``scorer`` on ``split`` (the one the leaderboard shows), or None."""
    return max((v for v in views if v["scorer"] == scorer and v["split"] == split), key=lambda v: v["id"],
               default=None)


def _number(x: Any) -> float | None:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else None
