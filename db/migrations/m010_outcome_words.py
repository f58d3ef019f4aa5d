"""Migration m010: one vocabulary for outcomes (``autointerp/outcomes.py``), and controls that are not baselines.

Registered in order by ``autointerp.db.migrations``, whose rules hold: never edited once released; a change is a new
migration.

What it rewrites, in the file's own transaction:

- ``runs.status``: ``complete`` -> ``done``; ``interrupted`` -> ``stopped`` with ``stop_reason`` ``interrupted``
  (a budget stop and Ctrl-C were both written ``interrupted`` before: the old rows cannot tell them apart).
- ``sweep_sessions.status``: ``interrupted`` -> ``stopped`` (``stop_reason`` ``interrupted``); ``sweep_attempts``:
  ``complete`` -> ``done``.
- ``explanations.is_baseline`` is 0 on control rows: ``is_baseline`` says the explainer is the non-LLM floor;
  ``role`` says a row is a control.

Each table's CHECK constraint names the new words. SQLite cannot alter a CHECK constraint, and rebuilding ``runs``
would fire the ``ON DELETE CASCADE`` of every table that references it (foreign keys are on while migrating), so the
constraint's text is replaced in place in the schema (SQLite's documented procedure for changes that leave the
stored rows' format alone: ``PRAGMA writable_schema``, then a new ``schema_version``), before the rows are rewritten
to the words the new constraint allows.
"""

from __future__ import annotations

from sqlite_utils import Database

from autointerp.db.script import run_script

_CHECKS = {  # table -> (the CHECK as written by m001 / m008, the CHECK with the new words)
    "runs": ("CHECK (status IN ('running', 'complete', 'interrupted', 'failed'))",
             "CHECK (status IN ('running', 'done', 'stopped', 'failed'))"),
    "sweep_sessions": ("CHECK (status IN ('running', 'done', 'stopped', 'interrupted', 'failed'))",
                       "CHECK (status IN ('running', 'done', 'stopped', 'failed'))"),
    "sweep_attempts": ("CHECK (status IN ('complete', 'stopped', 'failed'))",
                       "CHECK (status IN ('done', 'stopped', 'failed'))"),
}
_STOP_REASONS = "('budget', 'interrupted', 'deadline', 'lease', 'endpoint')"


def _replace_checks(db: Database) -> None:
    conn = db.conn
    version = conn.execute("PRAGMA schema_version").fetchone()[0]
    conn.execute("PRAGMA writable_schema = ON")
    try:
        for table, (old, new) in _CHECKS.items():
            sql = conn.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", [table]).fetchone()
            if sql is None or old not in sql[0]:
                raise RuntimeError(f"m010: table {table} does not have the constraint {old}")
            conn.execute("UPDATE sqlite_master SET sql = ? WHERE type = 'table' AND name = ?",
                         [sql[0].replace(old, new), table])
        conn.execute(f"PRAGMA schema_version = {version + 1}")
    finally:
        conn.execute("PRAGMA writable_schema = OFF")


def m010_outcome_words(db: Database) -> None:
    """runs, sweep sessions and sweep attempts in the outcome words of ``autointerp/outcomes.py``, with the stop
    reason apart from the state; control rows not marked as baselines."""
    _replace_checks(db)
    run_script(db,
        f"""
        UPDATE runs SET status = 'done' WHERE status = 'complete';
        UPDATE runs SET status = 'stopped' WHERE status = 'interrupted';
        ALTER TABLE runs ADD COLUMN stop_reason TEXT     -- why a 'stopped' run stopped (autointerp.outcomes)
            CHECK (stop_reason IS NULL OR stop_reason IN {_STOP_REASONS});
        UPDATE runs SET stop_reason = 'interrupted' WHERE status = 'stopped';

        UPDATE sweep_sessions SET status = 'stopped' WHERE status = 'interrupted';
        ALTER TABLE sweep_sessions ADD COLUMN stop_reason TEXT
            CHECK (stop_reason IS NULL OR stop_reason IN {_STOP_REASONS});
        UPDATE sweep_sessions SET stop_reason = 'interrupted' WHERE status = 'stopped' AND reason LIKE 'signal%';
        UPDATE sweep_attempts SET status = 'done' WHERE status = 'complete';

        UPDATE explanations SET is_baseline = 0 WHERE role = 'control';
        """
    )
