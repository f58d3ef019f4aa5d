"""Fakes shared by the agent's tests: a planted unit record, scripted LLM replies, tools, a validator, a call sink.

Tests import them from here (``from fakes import ...``); no test file imports another.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

from autointerp.llm.client import CallRecord
from autointerp.subject.records import (
    UnitId,
    UnitRecord,
    UnitStats,
    Window,
    deal_splits,
)

SELF = 'EXPLANATION: The token " self" when it reaches an attribute.'
SELF_TEXT = 'The token " self" when it reaches an attribute.'
BETTER = 'EXPLANATION: The token " self" before a dot, weakly "self" in signatures.'
BETTER_TEXT = 'The token " self" before a dot, weakly "self" in signatures.'

def planted_record(unit: int = 5) -> UnitRecord:
    """Nine top windows (dealt train/valid/test) and four random ones. Only valid windows hold " VALIDONLY" and
    only test windows " TESTONLY", with distinctive activations, so a leak shows up in any prompt."""
    top_splits, random_splits = deal_splits(9, 4)
    windows = []
    for rank, split in enumerate(top_splits):
        marker = {"train": ".", "valid": " VALIDONLY", "test": " TESTONLY"}[split]
        tokens = ("def", " area", "(", "self", "):", " return", " self", marker, "w")
        acts = (0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 5.0 - 0.4 * rank, 0.0 if split == "train" else 0.77, 0.0)
        windows.append(Window(rank, tokens, tuple(range(9)), acts, "top", rank, split))
    for i, split in enumerate(random_splits):
        marker = " VALIDONLY" if split == "valid" else " TESTONLY"
        windows.append(Window(100 + i, ("x", " =", " 1", marker), (0, 1, 2, 3), (0.0, 0.0, 0.0, 0.33), "random", i,
                              split))
    stats = UnitStats(n_tokens=5000, fire_count=250, threshold=0.0, mean=0.1, std=0.5, max=5.0, min=0.0,
                      quantiles={"q50": 0.0, "q99": 3.0})
    return UnitRecord(UnitId(1, unit), tuple(windows), stats, top_tokens=((" self", 200, 210), ("self", 50, 300)))


class FakeTools:
    """UnitTools over the train windows of the record it is built from; the unit fires 5.0 on " self"."""

    def __init__(self, record: UnitRecord):
        self.record = record
        self.calls: list[str] = []

    def statistics(self) -> dict[str, Any]:
        self.calls.append("statistics")
        return {"firing_rate": 0.05, "dead": False, "top_tokens": [[" self", 200, 210]], "quantiles": {"q99": 3.0},
                "detector": "token"}

    def train_windows(self, offset: int = 0, n: int = 5) -> list[Window]:
        self.calls.append("train_windows")
        return self.record.split("train")[offset : offset + n]

    def quantile_windows(self, lo: float, hi: float, n: int = 4) -> list[Window]:
        self.calls.append("quantile_windows")
        return [Window(999, ("my", "self", "ie"), (0, 1, 2), (0.0, 1.0, 0.0), "top", 0, "train")][:n]

    def run_text(self, text: str) -> list[tuple[str, float]]:
        self.calls.append("run_text")
        return [(t, 5.0 if t == " self" else 0.0) for t in re.findall(r" ?\w+|\S|\s", text)]


class Script:
    """A FakeLLM responder that replays ``replies`` in order (callables get the messages) and records requests."""

    def __init__(self, *replies: Any):
        self.replies = list(replies)
        self.requests: list[dict[str, Any]] = []

    def __call__(self, messages, tools, logprobs):
        self.requests.append({"messages": copy.deepcopy(messages), "tools": tools})
        assert self.replies, "the agent made more LLM calls than scripted"
        reply = self.replies.pop(0)
        return reply(messages) if callable(reply) else reply

    def prompts(self) -> list[str]:
        return [json.dumps(r["messages"], ensure_ascii=False) for r in self.requests]


class FakeValidator:
    """Scores a candidate by a lookup (default 0.1) and returns the first two valid windows as the worst, as the
    pipeline's Validator would (from the FULL record)."""

    def __init__(self, record: UnitRecord, scores: dict[str, float | None] | None = None):
        self.valid = record.split("valid")
        self.scores = scores or {}
        self.calls: list[str] = []

    async def __call__(self, text: str):
        self.calls.append(text)
        worst = [{"tokens": list(w.tokens), "activations": list(w.activations), "predictions": [0.0] * len(w.tokens),
                  "source": w.source, "error": 5.0} for w in self.valid[:2]]
        return self.scores.get(text, 0.1), worst


class Sink:
    def __init__(self):
        self.records: list[CallRecord] = []

    def record_call(self, record: CallRecord) -> None:
        self.records.append(record)
