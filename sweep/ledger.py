"""The sweep's ledger in the results database: its items, the runs they resolved to, attempts, sessions, spend.

Everything a sweep writes is in four tables (``sweep_items``, ``sweep_runs``, ``sweep_attempts``,
``sweep_sessions``, migration m008); its results are ordinary runs, which ``leaderboard`` and ``show`` read as they
are. Spend is read from ``llm_calls`` of the sweep's runs, so it is exact even after a killed session.
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from autointerp.db import Store
from autointerp.db.values import utc_iso
from autointerp.outcomes import StopReason, SweepState


def night_start(night_starts: str, now: datetime | None = None) -> datetime:
    """The start of the night containing ``now``: the latest ``night_starts`` (local HH:MM[:SS]) not after it, in
    UTC."""
    local = (now or datetime.now(timezone.utc)).astimezone()
    h, m, *s = (int(x) for x in night_starts.split(":"))
    start = local.replace(hour=h, minute=m, second=s[0] if s else 0, microsecond=0)
    if start > local:
        start -= timedelta(days=1)
    return start.astimezone(timezone.utc)


def deadline(until: str | None, started: datetime | None = None) -> datetime | None:
    """The next local ``until`` (HH:MM[:SS]) after ``started`` (default now), in UTC; None without one."""
    if until is None:
        return None
    local = (started or datetime.now(timezone.utc)).astimezone()
    h, m, *s = (int(x) for x in until.split(":"))
    end = local.replace(hour=h, minute=m, second=s[0] if s else 0, microsecond=0)
    if end <= local:
        end += timedelta(days=1)
    return end.astimezone(timezone.utc)


def _write(store: Store, sql: str, params: list[Any]) -> Any:
    cur = store.db.conn.execute(sql, params)
    store.db.conn.commit()
    return cur


@dataclass
class Ledger:
    """Reads and writes of one sweep's rows (``shard``: 'I/N' or None)."""

    store: Store
    sweep: str

    # -- writes ------------------------------------------------------------------------------------------------

    def start_session(self, plan_hash: str, shard: str | None, session_id: str | None = None) -> str:
        sid = session_id or uuid.uuid4().hex
        _write(self.store, "INSERT INTO sweep_sessions (id, sweep, shard, plan_hash, pid, host, started_at) "
                           "VALUES (?, ?, ?, ?, ?, ?, ?)",
               [sid, self.sweep, shard, plan_hash, os.getpid(), socket.gethostname(), utc_iso()])
        return sid

    def finish_session(self, sid: str, status: SweepState, reason: str, units_done: int,
                       stop_reason: StopReason | None = None) -> None:
        _write(self.store, "UPDATE sweep_sessions SET status = ?, stop_reason = ?, reason = ?, units_done = ?, "
                           "finished_at = ? WHERE id = ?", [status, stop_reason, reason, units_done, utc_iso(), sid])

    def close_dead_sessions(self, shard: str | None) -> None:
        """Sessions of this shard left 'running' by a killed process (the caller holds the shard's lease)."""
        _write(self.store, "UPDATE sweep_sessions SET status = 'stopped', stop_reason = 'interrupted', "
                           "reason = 'killed (no clean stop)' WHERE sweep = ? AND shard IS ? AND status = 'running'",
               [self.sweep, shard])

    def set_items(self, items: list[tuple[str, int, int, int]]) -> None:
        """The plan's expansion: (job, layer, units_total, priority) for every item; items no longer planned go."""
        conn, now = self.store.db.conn, utc_iso()
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute("DELETE FROM sweep_items WHERE sweep = ?", [self.sweep])
            conn.executemany("INSERT INTO sweep_items (sweep, job, layer, units_total, priority, updated_at) "
                             "VALUES (?, ?, ?, ?, ?, ?)", [(self.sweep, *i, now) for i in items])
            conn.execute("COMMIT")
        except BaseException:
            conn.rollback()
            raise

    def link_run(self, job: str, layer: int, run_id: str, units_total: int) -> None:
        _write(self.store, "INSERT OR IGNORE INTO sweep_runs (sweep, job, layer, run_id, units_total, created_at) "
                           "VALUES (?, ?, ?, ?, ?, ?)", [self.sweep, job, layer, run_id, units_total, utc_iso()])

    def attempt(self, sid: str, job: str, layer: int | None, run_id: str | None, status: SweepState, reason: str | None,
                units_done: int, started_at: str) -> None:
        _write(self.store, "INSERT INTO sweep_attempts (sweep, session_id, job, layer, run_id, status, reason, "
                           "units_done, started_at, finished_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
               [self.sweep, sid, job, layer, run_id, status, reason, units_done, started_at, utc_iso()])

    # -- reads -------------------------------------------------------------------------------------------------

    def failed_attempts(self, job: str, layer: int | None, plan_hash: str) -> int:
        """Failed attempts at (job, layer) since its last done one, by sessions of this version of the plan
        (editing the plan, e.g. to fix a model path, starts the count again). Layer None: the whole job failed."""
        same_plan = "session_id IN (SELECT id FROM sweep_sessions WHERE plan_hash = ?)"
        last_ok = self.store.db.execute(
            "SELECT MAX(id) FROM sweep_attempts WHERE sweep = ? AND job = ? AND layer IS ? AND status = 'done'",
            [self.sweep, job, layer]).fetchone()[0] or 0
        return self.store.db.execute(
            "SELECT COUNT(*) FROM sweep_attempts WHERE sweep = ? AND job = ? AND layer IS ? AND status = 'failed' "
            f"AND id > ? AND {same_plan}", [self.sweep, job, layer, last_ok, plan_hash]).fetchone()[0]

    def spend(self, since: str | None = None, job: str | None = None) -> dict[str, Any]:
        """LLM calls, tokens and US dollars of the sweep's runs (of one job), since an ISO time if given."""
        sql = ("SELECT COUNT(*), COALESCE(SUM(tokens_in), 0), COALESCE(SUM(tokens_out), 0), "
               "COALESCE(SUM(cost_usd), 0) FROM llm_calls WHERE run_id IN (SELECT run_id FROM sweep_runs "
               "WHERE sweep = ?" + (" AND job = ?" if job else "") + ")" + (" AND created_at >= ?" if since else ""))
        params = [self.sweep] + ([job] if job else []) + ([since] if since else [])
        calls, tin, tout, usd = self.store.db.execute(sql, params).fetchone()
        return {"calls": calls, "tokens_in": tin, "tokens_out": tout, "cost_usd": round(usd, 6)}

    def items(self) -> list[dict[str, Any]]:
        rows = self.store.db.execute("SELECT job, layer, units_total, priority FROM sweep_items WHERE sweep = ? "
                                     "ORDER BY priority, rowid", [self.sweep]).fetchall()
        return [dict(zip(("job", "layer", "units_total", "priority"), r)) for r in rows]

    def item_counts(self, job: str, layer: int) -> dict[str, Any]:
        """Units done (done or gave_up) and failed in the latest run of (job, layer); its run id and wall time."""
        row = self.store.db.execute(
            "SELECT s.run_id, r.wall_s FROM sweep_runs s JOIN runs r ON r.id = s.run_id WHERE s.sweep = ? "
            "AND s.job = ? AND s.layer = ? ORDER BY s.created_at DESC, s.rowid DESC LIMIT 1",
            [self.sweep, job, layer]).fetchone()
        if row is None:
            return {"run_id": None, "done": 0, "failed": 0, "wall_s": 0.0}
        done, failed = self.store.db.execute(
            "SELECT COALESCE(SUM(status IN ('done', 'gave_up')), 0), COALESCE(SUM(status = 'failed'), 0) "
            "FROM unit_runs WHERE run_id = ?", [row[0]]).fetchone()
        return {"run_id": row[0], "done": done, "failed": failed, "wall_s": row[1] or 0.0}

    def first_unit_failure(self, run_id: str) -> str | None:
        """The reason of one failed unit of the run, for the item's attempt (None when no unit failed)."""
        row = self.store.db.execute("SELECT reason FROM unit_runs WHERE run_id = ? AND status = 'failed' LIMIT 1",
                                    [run_id]).fetchone()
        return row[0] if row else None

    def last_failure(self, job: str) -> str | None:
        row = self.store.db.execute("SELECT reason FROM sweep_attempts WHERE sweep = ? AND job = ? AND "
                                    "status = 'failed' ORDER BY id DESC LIMIT 1", [self.sweep, job]).fetchone()
        return row[0] if row else None

    def sessions(self, since: str | None = None) -> list[dict[str, Any]]:
        cols = ["id", "shard", "pid", "host", "started_at", "finished_at", "status", "reason", "units_done"]
        rows = self.store.db.execute(
            f"SELECT {', '.join(cols)} FROM sweep_sessions WHERE sweep = ?"
            + (" AND started_at >= ?" if since else "") + " ORDER BY started_at",
            [self.sweep] + ([since] if since else [])).fetchall()
        return [dict(zip(cols, r)) for r in rows]
