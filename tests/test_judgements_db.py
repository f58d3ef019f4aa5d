"""Detection and fuzzing results in the store (migration m011_judgements): saved with ``Store.save_judgements``, shown
by the leaderboard views beside the simulation score, summarised per explainer with 95% intervals, and by the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from autointerp.cli import app
from autointerp.db import open_db
from autointerp.db.views import bootstrap_ci
from autointerp.errors import UsageError
from autointerp.scoring.classify import ClassificationJudgement, Example

from test_db import record, scored, start


def judgement(scorer: str, value: float | None, split: str = "test", judge: str = "quoted"):
    examples = (Example(101, "range", 9, 1, ("a", "b"), answer=1, p_yes=0.9),
                Example(900, "random", None, 0, ("x", "y"), answer=0 if value else 1, p_yes=0.2))
    return ClassificationJudgement(scorer, split, judge, 7, {"scorer": scorer, "judge": {"judge": judge}}, examples,
                                   balanced_accuracy=value, auroc=None if value is None else 1.0, n_judged=2,
                                   undefined=None if value is not None else "no non-activating test example was judged",
                                   counts={"activating": 1, "non_activating": 1})


@pytest.fixture
def saved(tmp_path):
    path = tmp_path / "a.db"
    with open_db(path) as store:
        run = start(store)
        values = {1: (0.9, 0.8), 2: (None, 0.6), 3: (0.7, None)}
        for unit, (det, fuzz) in values.items():
            store.save_unit_result(run, record(unit), "h1", {}, [scored(unit, "gpt", 0.1 * unit)])
            eid = store.explanation_id(run, "h1", 0, unit, "neuron", "gpt")
            rows = [judgement("detection", det), judgement("detection", 0.5, split="valid")]
            rows += [judgement("fuzzing", fuzz)] if fuzz is not None else []
            assert len(store.save_judgements(eid, rows)) == len(rows)
        eid = store.explanation_id(run, "h1", 0, 1, "neuron", "gpt")
        store.save_judgements(eid, [judgement("detection", 1.0)])  # the same scorer, split and judge: replaced
        yield path, store, run


def test_judgements_round_trip_and_replace(saved):
    path, store, run = saved
    rows = list(store.db.query("SELECT * FROM judgements WHERE scorer = 'detection' AND split = 'test' ORDER BY id"))
    assert [r["balanced_accuracy"] for r in rows] == [None, 0.7, 1.0]
    undefined = rows[0]
    assert undefined["undefined_reason"].startswith("no non-activating") and undefined["auroc"] is None
    examples = json.loads(rows[-1]["examples"])
    assert examples[0] == {"index": 101, "source": "range", "bin": 9, "label": 1, "tokens": ["a", "b"], "marked": [],
                           "answer": 1, "p_yes": 0.9, "error": None}
    assert json.loads(rows[-1]["config"])["judge"] == {"judge": "quoted"} and rows[-1]["seed"] == 7
    store.save_unit_result(run, record(1), "h1", {}, [scored(1, "gpt", 0.1)])  # the explanation rewritten
    assert store.db.execute("SELECT COUNT(*) FROM judgements").fetchone()[0] == 3 + 2  # unit 1's 3 went with it


def test_leaderboard_rows_carry_detection_and_fuzzing(saved):
    path, store, run = saved
    rows = {r["unit"]: r for r in store.leaderboard(order="unit")}
    assert {u: (r["detection"], r["fuzzing"]) for u, r in rows.items()} == {1: (1.0, 0.8), 2: (None, 0.6),
                                                                             3: (0.7, None)}
    assert [r["unit"] for r in store.leaderboard(order="detection")] == [1, 3, 2]
    assert [r["unit"] for r in store.leaderboard(order="fuzzing")] == [1, 2, 3]
    summary = next(iter(store.db.query("SELECT * FROM explainer_summary")))
    assert summary["detection_mean"] == pytest.approx(0.85) and summary["fuzzing_mean"] == pytest.approx(0.7)


def test_by_explainer_gives_means_and_intervals(saved):
    path, store, run = saved
    (row,) = store.by_explainer()
    low, high = bootstrap_ci(np.array([1.0, 0.7]), 0)
    assert row["detection_mean"] == pytest.approx(0.85)
    assert (row["detection_ci_low"], row["detection_ci_high"]) == pytest.approx((low, high))
    assert row["fuzzing_mean"] == pytest.approx(0.7)


def test_cli_leaderboard_json_and_sort(saved):
    path, store, run = saved
    runner = CliRunner()
    out = runner.invoke(app, ["leaderboard", "--db", str(path), "--format", "json", "--sort", "detection"])
    assert out.exit_code == 0, out.output
    rows = json.loads(out.output)
    assert [(r["unit"], r["detection"], r["fuzzing"]) for r in rows] == [(1, 1.0, 0.8), (3, 0.7, None),
                                                                          (2, None, 0.6)]
    out = runner.invoke(app, ["leaderboard", "--db", str(path), "--by", "explainer", "--format", "json"])
    (row,) = json.loads(out.output)
    assert row["detection_mean"] == pytest.approx(0.85) and row["fuzzing_ci_low"] == pytest.approx(0.6)
    bad = runner.invoke(app, ["leaderboard", "--db", str(path), "--sort", "auroc"])
    assert isinstance(bad.exception, UsageError) and "detection" in str(bad.exception)


def test_a_windows_tokens_are_stored_once_per_judgement_and_read_back_whole(tmp_path):
    """Fuzzing shows each activating window twice: the second example is stored without its tokens (m012) and every
    reader (``Reads.judgements``, hence ``show`` and the review pages) gets them back."""
    tokens = tuple(f"t{i}" for i in range(64))
    examples = (Example(101, "range", 9, 1, tokens, (3,), answer=1),
                Example(101, "range", 9, 0, tokens, (5,), answer=0),
                Example(102, "range", 2, 1, ("c",), (0,), answer=0), Example(102, "range", 2, 0, ("c",), (), answer=0))
    fuzzing = ClassificationJudgement("fuzzing", "test", "quoted", 7, {"scorer": "fuzzing"}, examples,
                                      balanced_accuracy=0.75, n_judged=4)
    with open_db(tmp_path / "a.db") as store:
        run = start(store)
        store.save_unit_result(run, record(1), "h1", {}, [scored(1, "gpt", 0.5)])
        eid = store.explanation_id(run, "h1", 0, 1, "neuron", "gpt")
        store.save_judgements(eid, [fuzzing])
        stored = json.loads(store.db.execute("SELECT examples FROM judgements").fetchone()[0])
        assert ["tokens" in x for x in stored] == [True, False, True, False]
        read = store.judgements([eid])[eid][0]["examples"]
    assert read == [x.as_dict() for x in examples]  # every example whole, in the order shown
