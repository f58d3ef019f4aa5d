"""Fakes and data builders shared by the tests: for the agent, a planted unit record, scripted LLM replies, tools, a
validator and a call sink; for the review pages, hostile text and a real run over it with hostile rows planted.

Tests import them from here (``from fakes import ...``); no test file imports another, and pytest fixtures that use
these builders live in the test files.
"""

from __future__ import annotations

import copy
import json
import re
import sqlite3
from pathlib import Path
from typing import Any

from autointerp.agent.base import Validation
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


class FakeJudge:
    """An agent ``Judge``: scores a candidate by a lookup (default 0.1) and returns the first two valid windows as the
    worst, as the run owner's judge would (from the FULL record)."""

    def __init__(self, record: UnitRecord, scores: dict[str, float | None] | None = None):
        self.valid = record.split("valid")
        self.scores = scores or {}
        self.calls: list[str] = []

    async def validate(self, text: str) -> Validation:
        self.calls.append(text)
        worst = [{"tokens": list(w.tokens), "activations": list(w.activations), "predictions": [0.0] * len(w.tokens),
                  "source": w.source, "error": 5.0} for w in self.valid[:2]]
        return Validation(self.scores.get(text, 0.1), worst)


class Sink:
    def __init__(self):
        self.records: list[CallRecord] = []

    def record_call(self, record: CallRecord) -> None:
        self.records.append(record)


# Untrusted text, as a corpus may hold it: markup, event handlers, script URLs, terminal escapes, bidi overrides.
HOSTILE = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    '<a href="javascript:alert(1)">click</a>',
    "\x1b[31mred\x1b[0m",
    "\u202eevil",
    '"><svg onload=alert(1)>',
    "</textarea><script>alert(2)</script>",
]
SECRET = "sk-reviewSECRETabcdefghijklmnop1234"


def hostile_corpus(folder: Path) -> Path:
    """A folder corpus whose text is mostly hostile strings, mixed with a little Python so units fire variously."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(400):
        lines.append(f"def f{i}(x):  # {HOSTILE[i % len(HOSTILE)]}")
        lines.append(f"    return '{HOSTILE[(i + 3) % len(HOSTILE)]}' + str(x * {i})")
    (folder / "hostile.py").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def plant_hostile_rows(db: Path) -> None:
    """Write hostile text where a run puts text from outside: a window's tokens, an explanation, a config value,
    the top tokens, an LLM call's messages, and a secret that an older autointerp might have stored."""
    conn = sqlite3.connect(db)
    with conn:
        (wid, tokens) = conn.execute("SELECT id, tokens FROM windows WHERE split = 'test' ORDER BY id LIMIT 1").fetchone()
        tokens = json.loads(tokens)
        tokens[: len(HOSTILE)] = HOSTILE[: len(tokens)]
        conn.execute("UPDATE windows SET tokens = ? WHERE id = ?", [json.dumps(tokens), wid])
        (eid, uid, run_id) = conn.execute("SELECT id, unit_id, run_id FROM explanations ORDER BY id LIMIT 1").fetchone()
        conn.execute("UPDATE explanations SET text = ?, explainer_config = ? WHERE id = ?",
                     [" ".join(HOSTILE), json.dumps({"note": HOSTILE[1], "api_key": SECRET}), eid])
        conn.execute("UPDATE unit_stats SET top_tokens = ? WHERE unit_id = ?",
                     [json.dumps([[t, 3, 4] for t in HOSTILE]), uid])
        (config,) = conn.execute("SELECT config FROM runs WHERE id = ?", [run_id]).fetchone()
        config = json.loads(config) | {"corpus_note": HOSTILE[0], "token": SECRET, "nested": {"password": SECRET}}
        conn.execute("UPDATE runs SET config = ? WHERE id = ?", [json.dumps(config), run_id])
        messages = [{"role": "user", "content": HOSTILE[0]},
                    {"role": "assistant", "content": None, "tool_calls": [
                        {"id": "1", "type": "function", "function": {"name": "run_text", "arguments": HOSTILE[1]}}]}]
        response = {"choices": [{"message": {"role": "assistant", "content": HOSTILE[2]}}]}
        conn.execute("INSERT INTO llm_calls (run_id, unit_id, profile, model, purpose, messages, response, tokens_in,"
                     " tokens_out, latency_s, cost_usd, error, attempts, created_at) VALUES (?, ?, 'p', 'm', 'explain',"
                     " ?, ?, 10, 5, 0.1, 0.001, NULL, 1, '2026-01-01T00:00:00+00:00')",
                     [run_id, uid, json.dumps(messages), json.dumps(response)])
    conn.close()
    plant_hostile_judgements(db, eid)


def plant_hostile_judgements(db: Path, explanation_id: int) -> None:
    """A detection and a fuzzing judgement of one explanation, saved through the store, whose examples hold the
    hostile strings as tokens, in an error and in the undefined reason (what an LLM judge may send back)."""
    from autointerp.db import open_db
    from autointerp.scoring.classify import ClassificationJudgement, Example

    tokens = tuple(HOSTILE)
    detection = (Example(1, "range", 4, 1, tokens, answer=1, p_yes=0.8),
                 Example(2, "silent", None, 0, tokens, answer=1, p_yes=0.6),
                 Example(3, "random", None, 0, tokens, answer=None, error=f"unparsed reply {HOSTILE[1]}"))
    fuzzing = (Example(1, "range", 4, 1, tokens, (0, 2), answer=1), Example(1, "range", 4, 0, tokens, (1, 5), answer=0))
    with open_db(db) as store:
        store.save_judgements(explanation_id, [
            ClassificationJudgement("detection", "test", "judge-" + HOSTILE[0], 0, {"note": HOSTILE[2]}, detection,
                                    balanced_accuracy=0.5, auroc=0.75, n_judged=2, n_failed=1,
                                    counts={"activating": 1, "non_activating": 2}),
            ClassificationJudgement("fuzzing", "test", "quoted", 0, {}, fuzzing[:1], n_judged=1,
                                    undefined=f"no wrongly marked test example {HOSTILE[5]}"),
            ClassificationJudgement("fuzzing", "valid", "quoted", 0, {}, fuzzing, balanced_accuracy=1.0, n_judged=2),
        ])


def run_cli(*args: str) -> None:
    """Run the real ``autointerp`` command in-process outside a test's capsys (for module-scoped builders)."""
    from autointerp.cli import main

    try:
        main(list(args))
    except SystemExit as e:
        assert not e.code, f"autointerp {' '.join(args[:3])} failed with status {e.code}"


def hostile_results(root: Path, model: str) -> Path:
    """A real baseline run (12 units of layer 1) and analysis over a hostile corpus, then hostile rows planted."""
    corpus = hostile_corpus(root / "corpus")
    db = root / "results.db"
    for args in (["run", "--layer", "1", "--units", "0:12"], ["analyze", "--layer", "1"]):
        run_cli(*args, "--model", model, "--corpus", str(corpus), "--db", str(db))
    plant_hostile_rows(db)
    return db


def identity_sae(d: int):
    """A ``SparseAutoencoder`` over ``d`` dimensions that reconstructs any x exactly: features ReLU(x) and ReLU(-x)."""
    import torch

    from autointerp.subject.sae import SparseAutoencoder

    sae = SparseAutoencoder(d, 2 * d, tied=False, normalize_decoder=False)
    eye = torch.eye(d)
    with torch.no_grad():
        sae.W_enc.copy_(torch.cat([eye, -eye]))
        sae.W_dec.copy_(torch.cat([eye, -eye]))
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    return sae
