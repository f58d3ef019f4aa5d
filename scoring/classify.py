"""The classification scorers (docs/methods.md §2b; Paulo et al. 2024): detection and fuzzing, behind the same
``Scorer`` interface as simulation.

    scorer = DetectionScorer(QuotedJudge())                  # or FuzzingScorer(LLMJudge(client, profile))
    j = await scorer.judge(record, 'Fires on the token " class".', "test")
    j.value, j.auroc, j.n_judged, j.n_failed, j.examples      # balanced accuracy, AUROC (None without logprobs)

Examples (``draw_examples``), on one held-out split only (``UnitRecord.held_out``: top, random and range windows):

- activating: the split's windows that carry an activation-quantile ``bin`` (the unit's range sample,
  ``autointerp.subject.range_windows``: every one of them fires), drawn evenly across bins: bins in turn, lowest
  first, a random window of each, until ``n_per_class`` are drawn or none is left;
- non-activating (detection): the split's windows on which the unit does not fire at all, checked from their stored
  activations (every activation at or below the unit's threshold, ``UnitStats.threshold``): the unit's silent sample
  (``CaptureConfig.silent_windows``) and the random windows that stayed silent. A random window that fires is never
  counted as non-activating. Up to ``n_per_class``. When fewer are available the judgement says so (``counts``),
  nothing is assumed.
- fuzzing: each activating example twice: once with the tokens where the unit fires marked (label 1), once with as
  many tokens where it does not fire marked (label 0; fewer when the window has fewer silent tokens).

The examples are shuffled with a ``random.Random`` seeded by the scorer's ``seed``, the unit, the split and the
scorer (so each judgement is reproducible and stores its seed); then the judge answers each (``judges.py``).

Scores. Balanced accuracy ((TPR + TNR) / 2) over the examples the judge answered; AUROC from the judge's
probability of "yes" (``roc_auc``: the Mann-Whitney statistic, ties counting one half, equal to scikit-learn's
``roc_auc_score``), None when any answered example has no probability. Both are undefined (None, with the reason)
when one class has no answered example. ``failure`` (the unit's outcome becomes ``failed``): examples were there but
the judge answered none.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol

from autointerp.llm.profiles import ModelProfile
from autointerp.llm.tokens import Estimate, TokenCounter
from autointerp.llm.types import RunStop
from autointerp.scoring.scorer import HeldOut
from autointerp.subject.records import UnitRecord, Window

Task = Literal["detection", "fuzzing"]
N_PER_CLASS = 50  # examples of each class per split, delphi's reference (n_examples_test = n_non_activating = 50):
#                   the range sample's 50 per split (5 per decile) and 50 of its silent windows


@dataclass(frozen=True)
class Example:
    """One example shown to the judge, and its answer."""

    index: int  # the window's corpus index (Window.index)
    source: str  # top, random or range
    bin: int | None  # activation-quantile bin of an activating window; None for a silent one
    label: int  # 1: activating (detection) / marked where the unit fires (fuzzing); 0 otherwise
    tokens: tuple[str, ...]
    marked: tuple[int, ...] = ()  # fuzzing: positions of the marked tokens
    answer: int | None = None  # the judge's 0/1; None when it failed on this example (see error)
    p_yes: float | None = None  # the judge's probability of 1, when it gives one
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "source": self.source, "bin": self.bin, "label": self.label,
                "tokens": list(self.tokens), "marked": list(self.marked), "answer": self.answer,
                "p_yes": self.p_yes, "error": self.error}


@dataclass(frozen=True)
class ClassificationJudgement:
    """One text judged by detection or fuzzing on one split."""

    scorer: str  # "detection" or "fuzzing"
    split: HeldOut
    judge: str  # the judge's name: "quoted" (the non-LLM floor) or the LLM profile's name
    seed: int  # the scorer's seed (the shuffle also depends on the unit, split and scorer: see draw_examples)
    config: dict[str, Any] = field(default_factory=dict)  # the scorer's config(): part of the run key
    examples: tuple[Example, ...] = ()  # in the order shown
    balanced_accuracy: float | None = None
    auroc: float | None = None
    n_judged: int = 0
    n_failed: int = 0
    undefined: str | None = None  # why the scores are None (one class empty, ...)
    counts: dict[str, int] = field(default_factory=dict)  # the pools examples were drawn from (draw_examples)
    diagnostics: dict[str, Any] = field(default_factory=dict)  # the judge's details (requests, tokens, cost)
    failure: str | None = None  # why nothing could be judged

    @property
    def value(self) -> float | None:
        return None if self.failure else self.balanced_accuracy

    @property
    def undefined_reason(self) -> str | None:
        return self.failure or (self.undefined if self.balanced_accuracy is None else None)


class Judge(Protocol):
    """Answers, for each example, 1 (the unit fires / the marks fit the explanation) or 0 (``judges.py``)."""

    name: str
    uses_llm: bool
    profile: ModelProfile | None  # the LLM profile that pays for its answers (None: no LLM)

    def config(self) -> dict[str, Any]: ...

    def estimate(self, task: Task, explanation: str, examples: list[Example], counter: TokenCounter
                 ) -> Estimate | None:
        """Calls and tokens that answering ``examples`` takes (None: no LLM)."""
        ...

    async def answer(self, task: Task, explanation: str, examples: list[Example]
                     ) -> tuple[list[tuple[int | None, float | None, str | None]], dict[str, Any]]:
        """(answer, p_yes, error) per example, in order, and the judge's details."""
        ...


def fires(window: Window, threshold: float) -> list[int]:
    """Positions where the unit fires (activation above its threshold), from the stored activations."""
    return [i for i, a in enumerate(window.activations) if a > threshold]


def draw_examples(record: UnitRecord, split: HeldOut, task: Task, n_per_class: int, rng: random.Random
                  ) -> tuple[list[Example], dict[str, int]]:
    """The examples of one judgement, shuffled, and the counts of the pools they were drawn from (module docstring)."""
    threshold = record.stats.threshold
    windows = record.held_out(split)
    firing = {id(w): fires(w, threshold) for w in windows}  # each window's firing positions, found once
    by_bin: dict[int, list[Window]] = {}
    for w in windows:
        if w.bin is not None and firing[id(w)]:
            by_bin.setdefault(w.bin, []).append(w)
    silent = [w for w in windows if not firing[id(w)]]
    for pool in (*by_bin.values(), silent):
        rng.shuffle(pool)
    active: list[Window] = []
    while len(active) < n_per_class and any(by_bin.values()):
        for b in sorted(by_bin):
            if by_bin[b] and len(active) < n_per_class:
                active.append(by_bin[b].pop())
    counts = {"activating_available": len(active) + sum(map(len, by_bin.values())), "activating": len(active),
              "bins": len({w.bin for w in active}),
              "random_firing": sum(1 for w in windows if w.source == "random" and firing[id(w)])}
    examples = []
    if task == "detection":
        quiet = silent[:n_per_class]
        counts.update(non_activating_available=len(silent), non_activating=len(quiet))
        examples += [Example(w.index, w.source, w.bin, 1, w.tokens) for w in active]
        examples += [Example(w.index, w.source, None, 0, w.tokens) for w in quiet]
    else:
        for w in active:
            right = firing[id(w)]
            marked = set(right)
            others = [i for i in range(len(w.tokens)) if i not in marked]
            wrong = sorted(rng.sample(others, min(len(right), len(others))))
            examples.append(Example(w.index, w.source, w.bin, 1, w.tokens, tuple(right)))
            if wrong:
                examples.append(Example(w.index, w.source, w.bin, 0, w.tokens, tuple(wrong)))
        counts["wrongly_marked"] = sum(1 for e in examples if e.label == 0)
    rng.shuffle(examples)
    return examples, counts


def balanced_accuracy(labels: list[int], answers: list[int]) -> float | None:
    """(TPR + TNR) / 2; None when a class is empty."""
    pos = [a for y, a in zip(labels, answers) if y == 1]
    neg = [a for y, a in zip(labels, answers) if y == 0]
    if not pos or not neg:
        return None
    return (sum(pos) / len(pos) + sum(1 - a for a in neg) / len(neg)) / 2


def roc_auc(labels: list[int], scores: list[float]) -> float | None:
    """Area under the ROC curve: P(score of a positive > score of a negative) + P(equal) / 2; None when a class
    is empty. Equals ``sklearn.metrics.roc_auc_score`` (tests/test_classify.py)."""
    pos = sorted(s for y, s in zip(labels, scores) if y == 1)
    neg = sorted(s for y, s in zip(labels, scores) if y == 0)
    if not pos or not neg:
        return None
    import bisect

    wins = sum(bisect.bisect_left(neg, s) + 0.5 * (bisect.bisect_right(neg, s) - bisect.bisect_left(neg, s))
               for s in pos)
    return wins / (len(pos) * len(neg))


class ClassificationScorer:
    """``Scorer`` for detection or fuzzing with any ``Judge`` (see the module docstring)."""

    def __init__(self, task: Task, judge: Judge, n_per_class: int = N_PER_CLASS, seed: int = 0):
        assert task in ("detection", "fuzzing") and n_per_class >= 1
        self.name, self.judger, self.n_per_class, self.seed = task, judge, n_per_class, seed
        self.uses_llm, self.profile = judge.uses_llm, judge.profile

    def config(self) -> dict[str, Any]:
        return {"scorer": self.name, "judge": self.judger.config(), "n_per_class": self.n_per_class,
                "seed": self.seed}

    def _examples(self, record: UnitRecord, split: HeldOut) -> tuple[list[Example], dict[str, int]]:
        rng = random.Random(f"{self.seed}:{record.id}:{split}:{self.name}")
        return draw_examples(record, split, self.name, self.n_per_class, rng)  # type: ignore[arg-type]

    def estimate(self, record: UnitRecord, counter: TokenCounter, text: str, split: HeldOut = "test"
                 ) -> Estimate | None:
        """Calls and tokens that judging ``text`` on ``record``'s ``split`` takes (None: the judge uses no LLM)."""
        examples, _ = self._examples(record, split)
        return self.judger.estimate(self.name, text, examples, counter)  # type: ignore[arg-type]

    async def judge(self, record: UnitRecord, text: str, split: HeldOut = "test") -> ClassificationJudgement:
        examples, counts = self._examples(record, split)
        base = ClassificationJudgement(self.name, split, self.judger.name, self.seed, self.config(), tuple(examples),
                                       counts=counts)
        if not examples:
            return replace(base, undefined=f"no {split} example to judge")
        try:
            answers, details = await self.judger.answer(self.name, text, examples)  # type: ignore[arg-type]
        except RunStop:
            raise
        except Exception as e:  # a bug or an unexpected error: the unit fails, with the reason
            return replace(base, failure=f"scoring failed: {type(e).__name__}: {e}")
        judged = tuple(replace(ex, answer=a, p_yes=p, error=err) for ex, (a, p, err) in zip(examples, answers))
        done = [ex for ex in judged if ex.answer is not None]
        labels = [ex.label for ex in done]
        accuracy = balanced_accuracy(labels, [ex.answer for ex in done])  # type: ignore[misc]
        probs = [ex.p_yes for ex in done]
        auroc = roc_auc(labels, probs) if done and all(p is not None for p in probs) else None  # type: ignore[arg-type]
        result = replace(base, examples=judged, balanced_accuracy=accuracy, auroc=auroc, n_judged=len(done),
                         n_failed=len(judged) - len(done), diagnostics=dict(details))
        if not done:
            why = next((ex.error for ex in judged if ex.error), "no answer")
            return replace(result, failure=f"scoring failed: the judge answered no {split} example ({why})")
        if accuracy is None:  # one class has no answered example: none was there, or the judge failed on each
            label = 0 if 1 in labels else 1
            missing, none_there = _EMPTY_CLASS[self.name, label]
            shown = sum(ex.label == label for ex in judged)
            why = f"the judge failed on all {shown}" if shown else none_there.format(split=split)
            return replace(result, undefined=f"no {missing} {split} example was judged ({why})")
        return result


# (scorer, label) -> the class's name, and why a split can have no example of it (a unit that fires in every
# window has no silent one; a unit that fires in one window holds it out for valid, not test)
_EMPTY_CLASS = {
    ("detection", 0): ("non-activating", "it stays silent in no window held out for {split}"),
    ("detection", 1): ("activating", "no {split} window where it fires was sampled"),
    ("fuzzing", 0): ("wrongly marked", "it fires on every token of its activating {split} windows"),
    ("fuzzing", 1): ("correctly marked", "no {split} window where it fires was sampled"),
}


def DetectionScorer(judge: Judge, n_per_class: int = N_PER_CLASS, seed: int = 0) -> ClassificationScorer:
    """Detection (docs/methods.md §2b): does the unit fire anywhere in each example?"""
    return ClassificationScorer("detection", judge, n_per_class, seed)


def FuzzingScorer(judge: Judge, n_per_class: int = N_PER_CLASS, seed: int = 0) -> ClassificationScorer:
    """Fuzzing (docs/methods.md §2b): are each example's marked tokens the ones the explanation describes?"""
    return ClassificationScorer("fuzzing", judge, n_per_class, seed)
