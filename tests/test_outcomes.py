"""One vocabulary for outcomes (``autointerp/outcomes.py``): the code and the SQL views use only its words, and a
database written before migration m010 opens and reads the same after it."""

from __future__ import annotations

import re
import shutil
import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest
import sqlite_utils

from autointerp.db import open_db
from autointerp.db.migrations import migrations
from autointerp.db.migrations.m011_judgements import m011_judgements
from autointerp.db.store import Store
from autointerp.outcomes import ALL_WORDS, STOP_REASONS, worst_outcome
from test_db import record, scored, start

ROOT = Path(__file__).resolve().parents[1]
ROOMS = ["agent", "scoring", "db", "sweep", "report", "subject", "llm", "autointerp"]
# a status-like name compared with, assigned or passed a quoted word: status = 'done', state == "stopped",
# status IN ('done', 'gave_up'), finish_run(run_id, "done", ...), attempt(..., "stopped", ...)
_NAMES = r"(?:status|state|scoring|stop_reason|outcome)"
_COMPARE = re.compile(_NAMES + r"""\s*(?:==|!=|=|IS NOT|IS|IN|in|not in)\s*[\(\[]?\s*((?:['"][a-z_]+['"]\s*,?\s*)+)""")
_CALL = re.compile(r"""(?:finish_run|finish_session|attempt)\([^()]*?,\s*['"]([a-z_]+)['"]""")


def outcome_words(text: str) -> set[str]:
    """Every quoted word the text compares a status-like name with, or passes as a run's or sweep's state."""
    words = {w for m in _COMPARE.finditer(text) for w in re.findall(r"""['"]([a-z_]+)['"]""", m.group(1))}
    return words | set(_CALL.findall(text))


def test_the_check_finds_outcome_words():
    text = """UPDATE runs SET status = 'complete'; x.status IN ('done', 'held') ; if state == "stoped": ...
              store.finish_run(run_id, "interrupted", 1.0)"""
    assert outcome_words(text) == {"complete", "done", "held", "stoped", "interrupted"}
    assert outcome_words(text) - ALL_WORDS == {"complete", "stoped", "interrupted"} - ALL_WORDS


def test_the_code_uses_only_the_outcome_words():
    stray = {}
    for room in ROOMS:
        for path in (ROOT / room).rglob("*.py"):
            if path.parent.name == "migrations" or path.parent.name == "cli" and path.name == "reference.py":
                continue  # migrations rewrite the old words: that is their job
            words = outcome_words(path.read_text()) - ALL_WORDS - {"scored"}
            if words:
                stray[str(path.relative_to(ROOT))] = sorted(words)
    assert not stray, f"outcome words not in autointerp/outcomes.py: {stray}"


def test_the_views_and_checks_use_only_the_outcome_words(tmp_path):
    with open_db(tmp_path / "a.db") as store:
        schema = [sql for (sql,) in store.db.execute("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL")]
    views = [s for s in schema if s.lstrip().upper().startswith("CREATE VIEW")]
    assert len(views) >= 5
    found = set().union(*(outcome_words(s) for s in schema))
    assert found and found <= ALL_WORDS, found - ALL_WORDS
    for reason in STOP_REASONS:  # the stop reasons' CHECK names every word of the module, and no other
        assert f"'{reason}'" in "\n".join(schema)


def test_worst_outcome_orders_failed_over_gave_up_over_done():
    assert worst_outcome(["done", "gave_up"]) == "gave_up"
    assert worst_outcome(["done", "failed", "gave_up"]) == "failed"
    assert worst_outcome([]) == "failed"


def _reads(store: Store, run_id: str) -> dict:
    """What a reader sees of the file: leaderboards, summaries, controls, a unit's card (ids and times aside)."""
    card = store.unit_card(0, 1)
    for e in card["explanations"]:  # the one intended change: a control row is no longer marked as a baseline
        if e["role"] == "control":
            e.pop("is_baseline")
    return {
        "leaderboard": store.leaderboard(),
        "by_explainer": store.by_explainer(),
        "controls": store.run_controls(run_id),
        "outcomes": store.run_outcomes(run_id),
        "explainer_outcomes": store.rows("SELECT * FROM explainer_outcomes ORDER BY explainer, role"),
        "card": {k: v for k, v in card.items() if k not in ("runs",)},
    }


def test_an_old_database_reads_the_same_after_the_migration(tmp_path):
    """A file at m009, written as the code before m010 wrote it (runs 'complete' and 'interrupted', controls marked
    as baselines, sweep rows in the old words), opens with every leaderboard, summary and card unchanged; only the
    words change, with the stop reason apart."""
    path = tmp_path / "old.db"
    db = sqlite_utils.Database(path)
    db.execute("PRAGMA foreign_keys = ON")
    migrations.apply(db, stop_before="m010_outcome_words")
    old = Store(db, path, 5.0)
    done_run, stopped_run = start(old, "k1"), start(old, "k2")
    for run_id in (done_run, stopped_run):
        for unit in (1, 2):
            old.save_unit_result(run_id, record(unit), "h1", {}, [scored(unit)])
            control = replace(scored(unit, explainer="control:empty", score=0.1), role="control")
            old.save_controls(run_id, record(unit), "h1", [control])
    with db.conn:
        db.execute("UPDATE explanations SET is_baseline = 1 WHERE role = 'control'")  # as m009-era code wrote them
        db.execute("UPDATE runs SET status = 'complete' WHERE id = ?", [done_run])
        db.execute("UPDATE runs SET status = 'interrupted' WHERE id = ?", [stopped_run])
        db.execute("INSERT INTO sweep_sessions (id, sweep, plan_hash, pid, host, started_at, status, reason) "
                   "VALUES ('s1', 'night', 'p', 1, 'h', '2026-12-01', 'interrupted', 'signal SIGTERM')")
        db.execute("INSERT INTO sweep_attempts (sweep, session_id, job, layer, status, started_at, finished_at) "
                   "VALUES ('night', 's1', 'job', 0, 'complete', '2026-12-01', '2026-12-01')")
    db.close()
    shutil.copy(path, tmp_path / "before.db")  # read by today's code: the later m011's views, without m010
    copy = sqlite_utils.Database(tmp_path / "before.db")
    m011_judgements(copy)
    before = {run_id: _reads(Store(copy, tmp_path / "before.db", 5.0), run_id) for run_id in (done_run, stopped_run)}
    copy.close()

    with open_db(path) as new:
        assert {run_id: _reads(new, run_id) for run_id in (done_run, stopped_run)} == before
        runs = {r["id"]: (r["status"], r["stop_reason"]) for r in new.db["runs"].rows}
        assert runs == {done_run: ("done", None), stopped_run: ("stopped", "interrupted")}
        assert new.db.execute("SELECT COUNT(*) FROM explanations WHERE role = 'control' AND is_baseline = 1"
                              ).fetchone() == (0,)
        assert list(new.db.execute("SELECT status, stop_reason FROM sweep_sessions")) == [("stopped", "interrupted")]
        assert list(new.db.execute("SELECT status FROM sweep_attempts")) == [("done",)]
        assert new.db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        with pytest.raises(sqlite3.IntegrityError, match="CHECK"):  # the old words are refused from now on
            new.db.execute("UPDATE runs SET status = 'complete' WHERE id = ?", [done_run])
