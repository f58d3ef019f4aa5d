"""Migration ``m004_probes``, registered in order by ``autointerp.db.migrations``, whose rules hold: never edited once
released; a change is a new migration."""

from __future__ import annotations

from sqlite_utils import Database

from autointerp.db.script import run_script


def m004_probes(db: Database) -> None:
    """Results of ``autointerp probe``: k-sparse probes of one layer for one concept."""
    run_script(db,
        """
        CREATE TABLE probe_results (
            id TEXT PRIMARY KEY,                -- uuid4 hex
            created_at TEXT NOT NULL,
            command TEXT NOT NULL,
            model TEXT NOT NULL,
            model_hash TEXT NOT NULL,
            corpus TEXT,                        -- NULL for a user concept file (its texts come with it)
            layer INTEGER NOT NULL,
            concept TEXT NOT NULL,
            method TEXT NOT NULL,               -- mean_diff | adaptive
            n_train INTEGER NOT NULL,           -- tokens
            n_test INTEGER NOT NULL,
            best_k INTEGER NOT NULL,
            best_f1 REAL NOT NULL,
            results TEXT NOT NULL               -- JSON: [{k, units, precision, recall, f1}, ...]
        );
        CREATE INDEX probe_results_concept ON probe_results(concept, layer);
        """
    )
