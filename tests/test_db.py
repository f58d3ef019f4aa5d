"""The run store: schema as data, migrations, file errors, atomic unit writes, resume, views and summaries."""

from __future__ import annotations

import math
import re
import sqlite3
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
from pydantic import SecretStr
from sqlite_utils import Database, Migrations

from autointerp.agent.base import Explanation
from autointerp.db import BOOTSTRAP_RESAMPLES, NewRun, ScoredExplanation, Store, open_db
from autointerp.db import migrations as migrations_module
from autointerp.errors import UsageError
from autointerp.scoring.score import ScoreResult
from autointerp.subject.records import (
    UnitId,
    UnitRecord,
    UnitStats,
    Window,
    deal_splits,
)

EXPECTED_TABLES = {
    "_sqlite_migrations": {"id": int, "migration_set": str, "name": str, "applied_at": str},
    "runs": {
        "id": str, "run_key": str, "created_at": str, "finished_at": str, "status": str, "command": str,
        "config": str, "versions": str, "model": str, "model_hash": str, "layer": int, "unit_kind": str,
        "corpus": str, "n_tokens": int, "seed": int, "explainer": str, "simulator": str, "wall_s": float,
        "stop_reason": str,
    },
    "units": {"id": int, "model_hash": str, "layer": int, "unit": int, "kind": str},
    "unit_stats": {
        "run_id": str, "unit_id": int, "n_tokens": int, "fire_count": int, "firing_rate": float, "mean": float,
        "std": float, "max": float, "min": float, "threshold": float, "quantiles": str, "top_tokens": str,
        "extra": str,
    },
    "windows": {
        "id": int, "run_id": str, "unit_id": int, "corpus_index": int, "source": str, "split": str, "rank": int,
        "tokens": str, "token_ids": str, "activations": str,
    },
    "explanations": {
        "id": int, "run_id": str, "unit_id": int, "explainer": str, "explainer_config": str, "is_baseline": int,
        "text": str, "status": str, "reason": str, "details": str, "created_at": str, "llm_calls": int,
        "tokens_in": int, "tokens_out": int, "cost_usd": float, "simulator": str, "scoring": str,
        "scoring_reason": str, "role": str,
    },
    "simulations": {
        "id": int, "explanation_id": int, "window_id": int, "simulator": str, "predictions": str, "error": str,
    },
    "scores": {
        "id": int, "explanation_id": int, "simulator": str, "simulator_config": str, "split": str, "score": float,
        "score_top": float, "score_random": float, "undefined_reason": str, "per_window": str, "n_windows": int,
        "created_at": str, "diagnostics": str,
    },
    "unit_runs": {"run_id": str, "unit_id": int, "status": str, "reason": str, "finished_at": str},
    "llm_calls": {
        "id": int, "run_id": str, "unit_id": int, "profile": str, "model": str, "purpose": str, "messages": str,
        "response": str, "tokens_in": int, "tokens_out": int, "latency_s": float, "cost_usd": float, "error": str,
        "attempts": int, "created_at": str,
    },
    "analysis_runs": {
        "id": str, "created_at": str, "command": str, "config": str, "versions": str, "model": str,
        "model_hash": str, "corpus": str, "n_tokens": int, "layers": str,
    },
    "layer_analyses": {"run_id": str, "layer": int, "summary": str},
    "unit_analyses": {
        "run_id": str, "unit_id": int, "dead": int, "firing_rate": float, "token_detector": str,
        "trigram_detector": str, "ngram_k": str, "positional_mi": float, "positional": int, "positional_kind": str,
        "suppresses_triggers": int, "analysis": str,
    },
    "probe_results": {
        "id": str, "created_at": str, "command": str, "model": str, "model_hash": str, "corpus": str, "layer": int,
        "concept": str, "method": str, "n_train": int, "n_test": int, "best_k": int, "best_f1": float, "results": str,
        "kind": str, "context": int,
    },
    "dictionary_evals": {
        "id": str, "created_at": str, "command": str, "path": str, "kind": str, "family": str, "model": str,
        "model_hash": str, "layer": int, "site": str, "d_in": int, "n_features": int, "corpus": str, "n_tokens": int,
        "fvu": float, "mean_l0": float, "dead_features": int, "loss_clean": float, "loss_spliced": float,
        "config": str,
    },
    "leases": {
        "name": str, "holder": str, "pid": int, "host": str, "acquired_at": str, "heartbeat_at": str,
        "expires_at": str,
    },
    "sweep_sessions": {
        "id": str, "sweep": str, "shard": str, "plan_hash": str, "pid": int, "host": str, "started_at": str,
        "finished_at": str, "status": str, "reason": str, "units_done": int, "stop_reason": str,
    },
    "sweep_items": {
        "sweep": str, "job": str, "layer": int, "units_total": int, "priority": int, "updated_at": str,
    },
    "sweep_runs": {"sweep": str, "job": str, "layer": int, "run_id": str, "units_total": int, "created_at": str},
    "judgements": {
        "id": int, "explanation_id": int, "scorer": str, "split": str, "judge": str, "config": str,
        "balanced_accuracy": float, "auroc": float, "n_judged": int, "n_failed": int, "undefined_reason": str,
        "failure": str, "seed": int, "examples": str, "counts": str, "diagnostics": str, "created_at": str,
    },
    "sweep_attempts": {
        "id": int, "sweep": str, "session_id": str, "job": str, "layer": int, "run_id": str, "status": str,
        "reason": str, "units_done": int, "started_at": str, "finished_at": str,
    },
}
EXPECTED_VIEWS = {
    "explanation_scores": [
        "explanation_id", "run_id", "unit_id", "model_hash", "kind", "layer", "unit", "explainer", "is_baseline",
        "status", "reason", "explanation", "simulator", "score", "score_top", "score_random", "undefined_reason",
        "n_windows", "created_at", "scored_at", "role", "explainer_status", "scoring", "llm_calls", "tokens_in",
        "tokens_out", "cost_usd", "detection", "fuzzing",
    ],
    "leaderboard": [
        "model_hash", "kind", "layer", "unit", "explanation", "explainer", "is_baseline", "simulator", "score",
        "score_top", "score_random", "n_windows", "run_id", "explanation_id", "unit_id", "scored_at", "detection",
        "fuzzing",
    ],
    "explainer_summary": ["explainer", "simulator", "units", "explanations", "undefined", "mean_score",
                          "detection_mean", "fuzzing_mean"],
    "llm_usage": [
        "run_id", "profile", "calls", "attempts", "tokens_in", "tokens_out", "cost_usd", "errors", "latency_s",
    ],
    "dictionary_scores": [
        "model_hash", "layer", "family", "kind", "explainer", "simulator", "units", "undefined", "mean_score",
    ],
    "explainer_outcomes": [
        "explainer", "simulator", "role", "explanations", "done", "gave_up", "failed", "explainer_failed",
        "scoring_failed", "scored", "unscored", "mean_score", "llm_calls", "tokens_in", "tokens_out", "cost_usd",
    ],
}
EXPECTED_INDEXES = {
    "runs_run_key", "explanations_run_unit", "explanations_unit", "simulations_explanation", "simulations_window", "unit_analyses_unit", "probe_results_concept",
    "llm_calls_run_profile", "dictionary_evals_kind", "sweep_sessions_sweep", "sweep_attempts_job",
    "judgements_explanation",
}
UNIT_TABLES = ("unit_stats", "windows", "explanations", "simulations", "scores", "unit_runs")


@pytest.fixture
def store(tmp_path: Path):
    with open_db(tmp_path / "a.db") as s:
        yield s


def start(store: Store, run_key: str = "key", **over) -> str:
    fields = dict(
        run_key=run_key, command="autointerp run", config={"layer": 0}, versions={"autointerp": "0.1.0"},
        model="tiny", model_hash="h1", layer=0, unit_kind="neuron", corpus="bundled", n_tokens=1000, seed=0,
        explainer="gpt", simulator="sim",
    )
    return store.start_run(NewRun(**(fields | over)))


def record(unit: int = 1, layer: int = 0, mean: float = 0.1, n_top: int = 6, n_random: int = 2) -> UnitRecord:
    top, rand = deal_splits(n_top, n_random)
    windows = [
        Window(100 * unit + r, ("a", "b", "c"), (1, 2, 3), (0.0, float(n_top - r), 0.5), "top", r, split)
        for r, split in enumerate(top)
    ] + [Window(900 + r, ("x", "y", "z"), (7, 8, 9), (0.0, 0.0, 0.1), "random", r, s) for r, s in enumerate(rand)]
    stats = UnitStats(1000, 10, 0.0, mean, 0.2, 6.0, -0.1, {"q50": 0.0, "q99": 3.0})
    return UnitRecord(UnitId(layer, unit), tuple(windows), stats, top_tokens=(("b", 8, 9),))


def result(score: float | None) -> ScoreResult:
    """A score on the three test (or valid) windows of ``record()``: two top windows and one random."""
    return ScoreResult(score, score, None, (score, None, None), None if score is not None else "constant predictions",
                       3, 0)


def scored(
    unit: int = 1, explainer: str = "gpt", score: float | None = 0.5, status: str = "done", window: int | None = None
) -> ScoredExplanation:
    window = 100 * unit + 2 if window is None else window  # rank 2: a test window
    return ScoredExplanation(
        Explanation(f"{explainer} on {unit}", status, None if status == "done" else "why", explainer, {"rounds": 1}),
        {"temperature": 0},
        explainer == "baseline",
        "sim",
        {"model": "m"},
        result(score),
        simulations={window: ((0.0, 5.0, 1.0), None), 901: (None, "unparsed line")},
        llm_calls=2,
        tokens_in=100,
        tokens_out=20,
        cost_usd=0.001,
    )


def counts(store: Store) -> dict[str, int]:
    return {t: store.db.table(t).count for t in UNIT_TABLES + ("units",)}


def test_migrations_from_empty_give_exactly_the_schema(store):
    db = store.db
    assert {t: db.table(t).columns_dict for t in db.table_names()} == EXPECTED_TABLES
    assert {v: [c.name for c in db.view(v).columns] for v in db.view_names()} == EXPECTED_VIEWS
    named = {i.name for t in db.tables for i in t.indexes if not i.name.startswith("sqlite_autoindex")}
    assert named - {"idx__sqlite_migrations_migration_set_name"} == EXPECTED_INDEXES


def test_reopen_applies_nothing_new(tmp_path):
    with open_db(tmp_path / "a.db") as s:
        first = list(s.db.table("_sqlite_migrations").rows)
    with open_db(tmp_path / "a.db") as s:
        assert list(s.db.table("_sqlite_migrations").rows) == first
    assert [r["name"] for r in first] == ["m001_initial", "m002_views", "m003_analyses", "m004_probes",
                                          "m005_dictionaries", "m006_probe_kind", "m007_probe_context",
                                          "m008_leases_sweeps", "m009_outcomes", "m010_outcome_words",
                                          "m011_judgements", "m012_shared_example_tokens"]


def test_a_file_from_before_m007_keeps_its_probe_rows(tmp_path):
    """An older file gains probe_results.context on open; its rows keep their values, with context unknown."""
    import sqlite_utils

    from autointerp.db.migrations import migrations

    db = sqlite_utils.Database(tmp_path / "old.db")
    migrations.apply(db, stop_before="m007_probe_context")
    row = dict(id="p1", created_at="2026-11-21T00:00:00Z", command="autointerp probe", model="bundled",
               model_hash="h", corpus="stdlib", layer=8, kind="neuron", concept="comment", method="mean_diff",
               n_train=70, n_test=30, best_k=64, best_f1=0.657, results="[]")
    db["probe_results"].insert(row)
    db.close()
    with open_db(tmp_path / "old.db") as s:
        assert s.db["probe_results"].get("p1") == {**row, "context": None}


def test_a_file_from_a_newer_autointerp_is_refused(tmp_path):
    with open_db(tmp_path / "a.db") as s:
        s.db.table("_sqlite_migrations").insert(
            {"migration_set": "autointerp", "name": "m999_future", "applied_at": "2030-01-01"}
        )
    with pytest.raises(UsageError, match=r"newer autointerp \(schema m999_future\).*another --db"):
        open_db(tmp_path / "a.db")


def test_a_corrupt_file_is_a_usage_error(tmp_path):
    path = tmp_path / "junk.db"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(UsageError, match="not a SQLite database.*another --db"):
        open_db(path)


def test_a_file_is_quick_checked_once_per_process_until_something_else_changes_it(tmp_path, monkeypatch):
    path = tmp_path / "a.db"
    with open_db(path) as s:  # created: nothing to check
        for i in range(200):
            start(s, run_key=f"k{i}", config={"pad": "y" * 300})
    checks = []
    connect = sqlite3.connect

    def counting_connect(*args, **kwargs):
        conn = connect(*args, **kwargs)
        conn.set_trace_callback(lambda sql: checks.append(sql) if "quick_check" in sql else None)
        return conn

    monkeypatch.setattr(sqlite3, "connect", counting_connect)
    for _ in range(3):  # the store's own writes between opens are no reason to read the file again
        with open_db(path) as s:
            start(s)
    assert len(checks) == 1
    other = connect(path)  # another program writes: checked again
    other.execute("CREATE TABLE other_program (x)")
    other.execute("INSERT INTO other_program VALUES (zeroblob(100000))")  # new pages: the size changes for sure
    other.commit()
    other.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    other.close()
    open_db(path).close()
    assert len(checks) == 2
    data = bytearray(path.read_bytes())  # replaced by a damaged copy of the same size: checked again, refused
    pages = {m.start() // 4096 for m in re.finditer(b"autointerp run", data)}  # those that hold the runs
    for p in pages:
        data[p * 4096 + 8: p * 4096 + 400] = b"\xff" * 392
    copy = tmp_path / "copy.db"
    copy.write_bytes(bytes(data))
    copy.replace(path)
    with pytest.raises(UsageError, match="damaged"):
        open_db(path)
    assert len(checks) == 3


def test_a_missing_folder_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="does not exist.*another --db"):
        open_db(tmp_path / "no such folder" / "a.db")


def test_a_failing_migration_leaves_nothing_half_written(tmp_path, monkeypatch):
    broken = Migrations("autointerp")
    broken(name="m001_ok")(lambda db: db.execute("CREATE TABLE first (x)"))

    @broken()
    def m002_fails(db):
        db.execute("CREATE TABLE second (x)")
        raise RuntimeError("boom")

    monkeypatch.setattr(migrations_module, "migrations", broken)
    monkeypatch.setattr(migrations_module, "KNOWN", frozenset({"m001_ok", "m002_fails"}))
    with pytest.raises(RuntimeError, match="boom"):
        open_db(tmp_path / "a.db")
    with Database(tmp_path / "a.db") as db:
        assert db.table_names() == []


def test_a_locked_file_is_a_usage_error(tmp_path):
    fresh, migrated = tmp_path / "fresh.db", tmp_path / "migrated.db"
    open_db(migrated).close()
    holders = [sqlite3.connect(p, isolation_level=None) for p in (fresh, migrated)]
    for h in holders:
        h.execute("BEGIN IMMEDIATE")  # a write lock held by another connection
    try:
        with pytest.raises(UsageError, match="locked by another process"):
            open_db(fresh, busy_timeout_s=0.01)  # its migrations need the write lock
        with open_db(migrated, busy_timeout_s=0.01) as s:  # WAL: reading is fine, writing is not
            assert s.find_resumable_run("key") is None
            with pytest.raises(UsageError, match="locked by another process"):
                start(s)
    finally:
        for h in holders:
            h.close()


def test_wal_foreign_keys_and_busy_timeout_are_on(store):
    assert store.db.journal_mode == "wal"
    assert store.db.execute("PRAGMA foreign_keys").fetchone() == (1,)
    assert store.db.execute("PRAGMA busy_timeout").fetchone() == (5000,)
    with pytest.raises(sqlite3.IntegrityError):
        store.db.execute("INSERT INTO unit_runs VALUES ('no such run', 1, 'done', NULL, 'now')")


def test_save_unit_result_round_trips(store):
    run = start(store)
    rec = record()
    both = [replace(scored(), valid=result(0.7)), scored(explainer="baseline")]
    assert store.save_unit_result(run, rec, "h1", {"dead": False}, both) == "done"
    assert counts(store) == {
        "unit_stats": 1, "windows": 8, "explanations": 2, "simulations": 4, "scores": 3, "unit_runs": 1, "units": 1,
    }
    card = store.unit_card(0, 1)
    assert card["run_id"] == run
    assert card["stats"]["extra"] == {"dead": False} and card["stats"]["top_tokens"] == [["b", 8, 9]]
    assert card["stats"]["firing_rate"] == 0.01 and card["stats"]["quantiles"] == {"q50": 0.0, "q99": 3.0}
    assert [w["rank"] for w in card["windows"]] == list(range(6))
    assert card["windows"][1] == {
        "corpus_index": 101, "split": "valid", "rank": 1, "tokens": ["a", "b", "c"], "activations": [0.0, 5.0, 0.5],
    }
    [e] = [e for e in card["explanations"] if e["explainer"] == "gpt"]
    assert (e["text"], e["status"], e["details"], e["llm_calls"]) == ("gpt on 1", "done", {"rounds": 1}, 2)
    test, valid = e["scores"]
    assert (test["split"], test["score"], test["simulator"], test["simulator_config"]) == ("test", 0.5, "sim",
                                                                                        {"model": "m"})
    assert test["per_window"] == {"102": 0.5, "105": None, "901": None}  # JSON keys are strings
    assert (valid["split"], valid["score"], valid["per_window"]) == ("valid", 0.7, {"101": 0.7, "104": None,
                                                                                    "900": None})
    sims = list(store.db.query("SELECT predictions, error FROM simulations WHERE explanation_id = ?", [e["id"]]))
    assert sims == [{"predictions": "[0.0,5.0,1.0]", "error": None}, {"predictions": None, "error": "unparsed line"}]


def test_views_give_the_best_score_per_unit(store):
    run1, run2 = start(store), start(store, model_hash="h1")
    store.save_unit_result(run1, record(1), "h1", {}, [scored(1, "gpt", 0.4), scored(1, "baseline", 0.1)])
    store.save_unit_result(run1, record(2), "h1", {}, [scored(2, "gpt", None), scored(2, "baseline", 0.2)])
    store.save_unit_result(run1, record(3, layer=1), "h1", {}, [scored(3, "gpt", 0.9)])
    store.save_unit_result(run2, record(1), "h1", {}, [scored(1, "claude", 0.4), scored(1, "gpt", 0.3)])
    rows = store.leaderboard(order="unit")
    assert [(r["layer"], r["unit"], r["explainer"], r["score"], r["run_id"]) for r in rows] == [
        (0, 1, "claude", 0.4, run2),  # tie with run1's gpt at 0.4: the latest wins
        (0, 2, "baseline", 0.2, run1),  # gpt's test score is undefined
        (1, 3, "gpt", 0.9, run1),
    ]
    assert [r["unit"] for r in store.leaderboard()] == [3, 1, 2]
    assert [r["unit"] for r in store.leaderboard(layer=0, min_score=0.3)] == [1]
    assert [r["unit"] for r in store.leaderboard(explainer="gpt", limit=1)] == [3]
    with pytest.raises(UsageError, match="unknown order"):
        store.leaderboard(order="name")
    per_explanation = list(store.db.query("SELECT explainer, score, undefined_reason FROM explanation_scores"))
    assert len(per_explanation) == 7
    assert {"explainer": "gpt", "score": None, "undefined_reason": "constant predictions"} in per_explanation
    summary = {
        (r["explainer"], r["units"], r["explanations"], r["undefined"]): round(r["mean_score"], 6)
        for r in store.db.query("SELECT * FROM explainer_summary")
    }
    assert summary == {
        ("gpt", 2, 3, 1): round((0.4 + 0.9 + 0.3) / 3, 6),
        ("baseline", 2, 2, 0): 0.15,
        ("claude", 1, 1, 0): 0.4,
    }


def test_a_failure_midway_leaves_no_partial_rows(store):
    run = start(store)
    with pytest.raises(ValueError, match="not one of the unit's windows"):
        store.save_unit_result(run, record(), "h1", {}, [scored(), scored(window=12345)])
    assert counts(store) == dict.fromkeys(UNIT_TABLES + ("units",), 0)
    short = replace(scored(), test=ScoreResult(0.5, 0.5, None, (0.5,), None, 1, 0))
    with pytest.raises(ValueError, match="1 per-window values for 3 test windows"):
        store.save_unit_result(run, record(), "h1", {}, [short])
    assert counts(store) == dict.fromkeys(UNIT_TABLES + ("units",), 0)
    store.save_unit_result(run, record(), "h1", {}, [scored()])
    before = counts(store)
    with pytest.raises(ValueError):  # a failed retry keeps what the unit had
        store.save_unit_result(run, record(mean=9.0), "h1", {}, [scored(window=12345)])
    assert counts(store) == before and store.unit_card(0, 1)["stats"]["mean"] == 0.1


def test_nan_is_written_as_null(store):
    run = start(store)
    rec = record(mean=math.nan)
    nan_test = ScoreResult(math.nan, math.nan, 0.2, (math.nan, None, None), None, 1, 0)
    nan_valid = ScoreResult(0.3, None, np.float64("inf"), (None, None, None), None, 1, 0)
    explanation = ScoredExplanation(
        Explanation("x", details={"r": [math.nan]}), {}, False, "sim", {"t": np.float32("nan")}, nan_test,
        valid=nan_valid, cost_usd=math.nan,
    )
    store.save_unit_result(run, rec, "h1", {"mi": math.inf}, [explanation])
    store.finish_run(run, "done", wall_s=math.nan)
    dump = "\n".join(store.db.conn.iterdump())
    assert "NaN" not in dump and "Infinity" not in dump
    test, valid = store.db.query("SELECT * FROM scores ORDER BY split")
    assert (test["score"], test["score_top"], test["score_random"]) == (None, None, 0.2)
    assert test["undefined_reason"] == "not a number"
    assert test["per_window"] == '{"102":null,"105":null,"901":null}' and valid["score_random"] is None
    assert valid["simulator_config"] == '{"t":null}'
    assert store.unit_card(0, 1)["stats"]["mean"] is None


def test_resume_finds_the_latest_run_with_the_key_and_its_done_units(store):
    assert store.find_resumable_run("key") is None
    old, new, other = start(store), start(store), start(store, run_key="other", n_tokens=None)
    assert store.run_tokens(other) == 0  # unknown before capture
    store.set_run_tokens(other, 42)  # known once capture has run
    assert store.db.table("runs").get(other)["n_tokens"] == 42 and store.run_tokens(other) == 42
    assert store.find_resumable_run("key") == new
    store.finish_run(new, "done", wall_s=1.0)
    assert store.find_resumable_run("key") == new  # complete: found, with nothing left to do
    store.db.table("runs").delete(new)
    assert store.find_resumable_run("key") == old
    store.finish_run(old, "stopped", wall_s=2.0, stop_reason="interrupted")
    store.resume_run(old)
    assert store.db.table("runs").get(old)["status"] == "running"
    store.finish_run(old, "stopped", wall_s=3.0, stop_reason="interrupted")
    assert store.find_resumable_run("key") == old
    assert store.db.table("runs").get(old)["wall_s"] == 5.0
    store.save_unit_result(old, record(1), "h1", {}, [scored(1)])
    store.save_unit_result(old, record(2), "h1", {}, [scored(2, status="gave_up")])
    half_failed = [scored(3, "baseline"), scored(3, status="failed")]
    assert store.save_unit_result(old, record(3), "h1", {}, half_failed) == "failed"
    assert store.save_unit_result(old, record(4), "h1", {}, []) == "failed"
    assert store.done_units(old) == {("neuron", 0, 1), ("neuron", 0, 2)}
    assert store.done_units(other) == set()
    store.save_unit_result(old, record(3), "h1", {}, [scored(3)])  # the retry replaces the failed attempt
    assert store.done_units(old) == {("neuron", 0, 1), ("neuron", 0, 2), ("neuron", 0, 3)}
    assert store.db.table("explanations").count_where("unit_id = ?", [store.unit_id("h1", 0, 3)]) == 1
    assert store.unit_id("h1", 0, 3) == store.unit_id("h1", 0, 3, "neuron") != store.unit_id("h2", 0, 3)
    with pytest.raises(KeyError):
        store.finish_run("nope", "done", 1.0)


def test_by_explainer_median_and_ci_match_numpy(store):
    values = [0.1, 0.5, 0.2, 0.9, 0.4]
    run = start(store)
    for unit, v in enumerate(values):
        store.save_unit_result(run, record(unit), "h1", {}, [scored(unit, "gpt", v), scored(unit, "baseline", 0.0)])
    gpt, baseline = store.by_explainer(seed=7)
    x = np.array(values)
    means = x[np.random.default_rng(7).integers(0, 5, size=(BOOTSTRAP_RESAMPLES, 5))].mean(axis=1)
    assert gpt["explainer"] == "gpt" and gpt["units"] == gpt["explanations"] == 5
    assert gpt["mean"] == pytest.approx(x.mean()) and gpt["median"] == pytest.approx(np.median(x))
    assert (gpt["ci_low"], gpt["ci_high"]) == pytest.approx(tuple(np.percentile(means, [2.5, 97.5])))
    assert gpt["ci_low"] < x.mean() < gpt["ci_high"]
    assert (baseline["mean"], baseline["ci_low"], baseline["ci_high"]) == (0.0, 0.0, 0.0)
    assert store.by_explainer(layer=5) == []
    [high] = store.by_explainer(min_score=0.3)
    assert (high["explainer"], high["units"], high["mean"]) == ("gpt", 3, pytest.approx(0.6))


def test_secrets_are_stripped_from_configs(store):
    config = {
        "api_key": "x", "OPENAI-API-KEY": "y", "hf_token": "z", "max_tokens": 5, "n_tokens": 10,
        "llm": {"secret": "s", "base_url": "http://h", "key": SecretStr("k"), "headers": ["sk-" + "a" * 24, "ok"]},
    }
    run = start(store, config=config)
    assert store.db.table("runs").get(run)["config"] == (
        '{"max_tokens":5,"n_tokens":10,"llm":{"base_url":"http://h","headers":["ok"]}}'
    )


@dataclass
class Call:
    unit: UnitId | str | None
    error: str | None = None
    profile: str = "fast"
    model: str = "gpt-x"
    purpose: str = "explain"
    messages: list = field(default_factory=lambda: [{"role": "user", "content": "hi"}])
    response: dict | None = field(default_factory=lambda: {"content": "ok"})
    tokens_in: int = 10
    tokens_out: int = 2
    latency_s: float = 0.5
    cost_usd: float = 0.01
    attempts: int = 1
    created_at: datetime | str = datetime(2026, 1, 1, tzinfo=timezone.utc)


def test_llm_calls_go_through_a_sink_bound_to_the_run(store):
    run = start(store)
    sink = store.call_sink(run)
    sink.record_call(Call(UnitId(0, 4)))
    sink.record_call(Call(None, error="timeout", attempts=3))
    store.record_call(Call(UnitId(0, 4)))  # unbound: no run, no unit
    sink.record_call(Call("sae:x@2/7", profile="slow", created_at="2026-01-02T00:00:00+00:00"))
    rows = list(store.db.query("SELECT run_id, unit_id, created_at FROM llm_calls ORDER BY id"))
    assert rows[0] == {"run_id": run, "unit_id": store.unit_id("h1", 0, 4), "created_at": "2026-01-01T00:00:00+00:00"}
    assert (rows[1]["unit_id"], rows[2]["run_id"], rows[2]["unit_id"]) == (None, None, None)
    assert rows[3]["unit_id"] == store.unit_id("h1", 2, 7, "sae:x")
    with pytest.raises(ValueError, match="neither a UnitId"):
        sink.record_call(Call("L3/N1024"))
    fast, slow = store.db.query("SELECT * FROM llm_usage WHERE run_id = ? ORDER BY profile", [run])
    assert fast == {"run_id": run, "profile": "fast", "calls": 2, "attempts": 4, "tokens_in": 20, "tokens_out": 4,
                    "cost_usd": 0.02, "errors": 1, "latency_s": 1.0}
    assert (slow["profile"], slow["calls"]) == ("slow", 1)


def test_unit_card_names_what_is_missing_or_ambiguous(store):
    run = start(store)
    with pytest.raises(UsageError, match="no neuron 0/1 in"):
        store.unit_card(0, 1)
    store.save_unit_result(run, record(1), "h1", {}, [scored(1)])
    store.save_unit_result(run, record(1), "h2", {}, [scored(1)])
    with pytest.raises(UsageError, match="several models"):
        store.unit_card(0, 1)
    assert store.unit_card(0, 1, model_hash="h2")["unit"]["model_hash"] == "h2"


def test_a_script_is_cut_at_complete_statements_only():
    """Migrations run their SQL statement by statement inside one transaction (db/script.py): a ';' inside a string
    literal or a trigger body must not cut a statement, and nothing is committed until the caller commits."""
    import sqlite_utils

    from autointerp.db.script import run_script, statements

    sql = """
        CREATE TABLE t (x TEXT);  -- a comment; with a semicolon
        CREATE TABLE log (y TEXT);
        CREATE TRIGGER t_ins AFTER INSERT ON t BEGIN INSERT INTO log VALUES ('saw; ' || new.x); END;
        INSERT INTO t VALUES ('a;b')
    """
    assert len(statements(sql)) == 4
    db = sqlite_utils.Database(memory=True)
    db.conn.execute("BEGIN")
    run_script(db, sql)
    assert db.conn.in_transaction
    assert [r[0] for r in db.conn.execute("SELECT y FROM log")] == ["saw; a;b"]
    db.conn.execute("ROLLBACK")
    assert db.table_names() == []
