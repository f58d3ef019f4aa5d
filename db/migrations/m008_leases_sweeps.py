"""Migration m008: leases (one live process per run or sweep) and the sweep ledger (items, runs, attempts, sessions).

Registered in order by ``autointerp.db.migrations``, whose rules hold: never edited once released; a change is a new
migration.
"""

from __future__ import annotations

from sqlite_utils import Database

from autointerp.db.script import run_script


def m008_leases_sweeps(db: Database) -> None:
    """Leases with a heartbeat and an expiry; the sweep ledger: which runs a sweep's jobs opened, every attempt
    at a (job, layer) with its outcome and reason, and every session of a sweep with why it stopped."""
    run_script(db,
        """
        CREATE TABLE leases (
            name TEXT PRIMARY KEY,              -- 'run:<run_key>' or 'sweep:<name>[#shard I/N]'
            holder TEXT NOT NULL,               -- uuid4 hex of the holding session
            pid INTEGER NOT NULL,
            host TEXT NOT NULL,
            acquired_at TEXT NOT NULL,
            heartbeat_at TEXT NOT NULL,
            expires_at TEXT NOT NULL            -- after it, another process may take the lease over
        );

        CREATE TABLE sweep_sessions (
            id TEXT PRIMARY KEY,                -- uuid4 hex, the lease holder
            sweep TEXT NOT NULL,
            shard TEXT,                         -- 'I/N', or NULL for the whole plan
            plan_hash TEXT NOT NULL,
            pid INTEGER NOT NULL,
            host TEXT NOT NULL,
            started_at TEXT NOT NULL,
            finished_at TEXT,
            status TEXT NOT NULL DEFAULT 'running'
                CHECK (status IN ('running', 'done', 'stopped', 'interrupted', 'failed')),
            reason TEXT,                        -- why it stopped: done, budget, stop time, signal, error
            units_done INTEGER NOT NULL DEFAULT 0
        );
        CREATE INDEX sweep_sessions_sweep ON sweep_sessions (sweep, started_at);

        CREATE TABLE sweep_items (              -- a sweep's plan expanded: every (job, layer) and its unit count
            sweep TEXT NOT NULL,
            job TEXT NOT NULL,
            layer INTEGER NOT NULL,
            units_total INTEGER NOT NULL,
            priority INTEGER NOT NULL,
            updated_at TEXT NOT NULL,
            PRIMARY KEY (sweep, job, layer)
        );

        CREATE TABLE sweep_runs (               -- the run each (job, layer) of a sweep resolved to
            sweep TEXT NOT NULL,
            job TEXT NOT NULL,
            layer INTEGER NOT NULL,
            run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
            units_total INTEGER NOT NULL,
            created_at TEXT NOT NULL,
            PRIMARY KEY (sweep, job, layer, run_id)
        );

        CREATE TABLE sweep_attempts (
            id INTEGER PRIMARY KEY,
            sweep TEXT NOT NULL,
            session_id TEXT NOT NULL,
            job TEXT NOT NULL,
            layer INTEGER,                      -- NULL when the job failed before its layers were known
            run_id TEXT,
            status TEXT NOT NULL CHECK (status IN ('complete', 'stopped', 'failed')),
            reason TEXT,
            units_done INTEGER NOT NULL DEFAULT 0,
            started_at TEXT NOT NULL,
            finished_at TEXT NOT NULL
        );
        CREATE INDEX sweep_attempts_job ON sweep_attempts (sweep, job, layer);
        """
    )
