"""Crash safety of sweeps and runs on the bundled model, as a user would meet it: SIGKILL at several points, restarts,
two starts at once. Every unit ends done exactly once, the file passes integrity_check, and no work is done twice."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

PLAN = """
[defaults]
model = "bundled"
tokens = 3000
units = "0:48"
db = "night.db"

[jobs.early]
layers = "1"

[jobs.late]
layers = "2"
"""
TOTAL = 2 * 48


def start(cwd, *args: str, stderr=subprocess.PIPE) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOINTERP_")}
    return subprocess.Popen([sys.executable, "-m", "autointerp.cli", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=stderr, text=True)


def count(db, sql: str) -> int:
    try:
        with sqlite3.connect(db, timeout=10) as conn:
            return conn.execute(sql).fetchone()[0]
    except sqlite3.OperationalError:  # not created or not migrated yet
        return 0


def kill_when(proc: subprocess.Popen, db, sql: str, at_least: int, timeout_s: float = 900) -> bool:
    """SIGKILL ``proc`` once ``sql`` counts ``at_least``; False when it ended first."""
    t0 = time.time()
    while time.time() - t0 < timeout_s:
        if proc.poll() is not None:
            return False
        if count(db, sql) >= at_least:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.05)
    raise AssertionError(f"{sql} never reached {at_least}")


@pytest.mark.slow
def test_sweep_killed_restarted_and_started_twice_does_every_unit_once(tmp_path, cli):
    (tmp_path / "night.toml").write_text(PLAN)
    db = tmp_path / "night.db"
    done_sql = "SELECT COUNT(*) FROM unit_runs"
    kills = 0
    for sql, n in (("SELECT COUNT(*) FROM sweep_sessions", 1),  # during start-up or capture
                   (done_sql, 1),                                   # a few units in
                   (done_sql, 60)):                                 # in the second job
        proc = start(tmp_path, "sweep", "run", "night.toml")
        kills += kill_when(proc, db, sql, n)
        assert count(db, "PRAGMA integrity_check") == "ok"
    assert kills >= 2
    # SIGTERM (systemd stopping the service): the units in flight finish, the session ends 'interrupted', exit 0
    proc = start(tmp_path, "sweep", "run", "night.toml", "--format", "json")
    at = count(db, done_sql)
    while proc.poll() is None and count(db, done_sql) <= at:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    termed = json.loads(out)
    assert termed["status"] in ("stopped", "done") and (termed["status"] == "done" or
                                                        (termed["stop_reason"], termed["reason"]) ==
                                                        ("interrupted", "signal SIGTERM"))
    before = count(db, done_sql)
    assert before < TOTAL
    a, b = start(tmp_path, "sweep", "run", "night.toml", "--format", "json"), \
        start(tmp_path, "sweep", "run", "night.toml", "--format", "json")
    outs = [p.communicate(timeout=600) for p in (a, b)]
    assert [p.returncode for p in (a, b)] == [0, 0], outs
    results = [json.loads(o) for o, _ in outs]
    assert sorted(r["status"] for r in results) in (["done", "held"], ["done", "done"])
    assert sum(r["units_done"] for r in results) == TOTAL - before  # the second start did nothing twice
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert conn.execute("SELECT COUNT(*), COUNT(DISTINCT run_id || '/' || unit_id) FROM explanations "
                            "WHERE role = 'explanation'").fetchone() == (TOTAL, TOTAL)
        assert conn.execute("SELECT COUNT(*) FROM unit_runs").fetchone()[0] == TOTAL
        n_scores, n_distinct = conn.execute("SELECT COUNT(*), COUNT(DISTINCT explanation_id || split) "
                                            "FROM scores").fetchone()
        assert n_scores == n_distinct >= TOTAL  # every explanation (controls included) scored at most once a split
        assert conn.execute("SELECT status, COUNT(*) FROM runs GROUP BY 1").fetchall() == [("done", 2)]
        sessions = dict(conn.execute("SELECT status || '/' || COALESCE(stop_reason, ''), COUNT(*) FROM sweep_sessions "
                                     "GROUP BY 1").fetchall())
        # killed sessions are marked so by the next start, the SIGTERMed one by itself
        assert sessions.get("stopped/interrupted", 0) == kills + (termed["status"] == "stopped")
    code, out, err = cli("sweep", "status", str(tmp_path / "night.toml"), "--format", "json")
    status = json.loads(out)
    assert code == 0 and status["done"] is True
    assert [(j["units_done"], j["units_todo"]) for j in status["jobs"]] == [(48, 0), (48, 0)]


@pytest.mark.slow
def test_two_runs_of_the_same_command_do_each_unit_once(tmp_path):
    """Issue 15: a second `run` on a run in progress exits 0 saying who holds it, or with --wait waits; every unit
    is done by one process, and the run is complete only when every unit is."""
    from autointerp.config import load_config
    from autointerp.pipeline.session import OpenOptions, RunSession

    db = tmp_path / "r.db"
    args = ["run", "--layer", "3", "--tokens", "2000", "--units", "0:24", "--db", str(db), "--format", "json"]
    cfg = load_config(None, {"layer": 3, "tokens": 2000, "units": "0:24", "db": str(db)})
    held = RunSession.open(cfg, OpenOptions("test holds the run"))  # this process is "the first run", for as long as the test likes
    try:
        second = start(tmp_path, *args)
        out, err = second.communicate(timeout=300)
        assert second.returncode == 0 and out == "" and f"pid {os.getpid()}" in err and "--wait" in err
        waiters = [start(tmp_path, *args, "--wait", stderr=open(tmp_path / f"w{i}.err", "w")) for i in (0, 1)]
        t0 = time.time()
        while not all("waiting" in (tmp_path / f"w{i}.err").read_text() for i in (0, 1)):
            assert time.time() - t0 < 300 and all(w.poll() is None for w in waiters)
            time.sleep(0.2)
        with sqlite3.connect(db) as conn:
            assert conn.execute("SELECT COUNT(*) FROM unit_runs").fetchone()[0] == 0  # nobody worked meanwhile
    finally:
        held.finish(stop=("interrupted", "the test let go"))
        held.close()
    summaries = []
    for w in waiters:
        out, _ = w.communicate(timeout=300)
        assert w.returncode == 0
        summaries.append(json.loads(out))
    this_session = sorted(s["units_done"] - s["units_skipped"] for s in summaries)
    assert this_session == [0, 24]  # one process did every unit; the other found them done
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT COUNT(*), COUNT(DISTINCT unit_id) FROM explanations "
                            "WHERE role = 'explanation'").fetchone() == (24, 24)
        assert conn.execute("SELECT COUNT(*), MIN(status) FROM runs").fetchone() == (1, "done")
        assert conn.execute("SELECT wall_s FROM runs").fetchone()[0] > 0
        assert conn.execute("SELECT COUNT(*) FROM leases").fetchone()[0] == 0
