"""Migration ``m007_probe_context``, registered in order by ``autointerp.db.migrations``, whose rules hold: never edited
once released; a change is a new migration."""

from __future__ import annotations

from sqlite_utils import Database

from autointerp.db.script import run_script


def m007_probe_context(db: Database) -> None:
    """Probes feed each window after the text before it: record at most how many tokens of it (NULL on rows
    written before this migration: unknown)."""
    run_script(db,
        """
        ALTER TABLE probe_results ADD COLUMN context INTEGER;  -- preceding tokens fed before each probed window
        """
    )
