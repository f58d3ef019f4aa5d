"""Migration ``m006_probe_kind``, registered in order by ``autointerp.db.migrations``, whose rules hold: never edited
once released; a change is a new migration."""

from __future__ import annotations

from sqlite_utils import Database

from autointerp.db.script import run_script


def m006_probe_kind(db: Database) -> None:
    """Probes read either the MLP neurons or a dictionary's features: record which (``units.kind``'s values)."""
    run_script(db,
        """
        ALTER TABLE probe_results ADD COLUMN kind TEXT NOT NULL DEFAULT 'neuron';  -- neuron | family:hash8
        """
    )
