"""Migration ``m003_analyses``, registered in order by ``autointerp.db.migrations``, whose rules hold: never edited once
released; a change is a new migration."""

from __future__ import annotations

from sqlite_utils import Database

from autointerp.db.script import run_script


def m003_analyses(db: Database) -> None:
    """Results of ``autointerp analyze``: one analysis run, its per-layer summaries and per-unit analyses."""
    run_script(db,
        """
        CREATE TABLE analysis_runs (
            id TEXT PRIMARY KEY,                -- uuid4 hex
            created_at TEXT NOT NULL,
            command TEXT NOT NULL,
            config TEXT NOT NULL,               -- JSON, scrubbed of secrets
            versions TEXT NOT NULL,             -- JSON
            model TEXT NOT NULL,
            model_hash TEXT NOT NULL,
            corpus TEXT NOT NULL,
            n_tokens INTEGER NOT NULL,          -- content tokens processed (BOS excluded)
            layers TEXT NOT NULL                -- JSON list of the layers analysed
        );
        CREATE TABLE layer_analyses (
            run_id TEXT NOT NULL REFERENCES analysis_runs(id) ON DELETE CASCADE,
            layer INTEGER NOT NULL,
            summary TEXT NOT NULL,              -- JSON: LayerSummary
            PRIMARY KEY (run_id, layer)
        );
        CREATE TABLE unit_analyses (
            run_id TEXT NOT NULL REFERENCES analysis_runs(id) ON DELETE CASCADE,
            unit_id INTEGER NOT NULL REFERENCES units(id),
            dead INTEGER NOT NULL,
            firing_rate REAL NOT NULL,
            token_detector TEXT,                -- JSON {"tokens": [...], "token_ids": [...]} or NULL
            trigram_detector TEXT,              -- JSON or NULL
            ngram_k TEXT NOT NULL,              -- JSON {"1": K1, "2": K2, "3": K3}
            positional_mi REAL NOT NULL,        -- nats
            positional INTEGER NOT NULL,
            positional_kind TEXT,
            suppresses_triggers INTEGER,        -- NULL unless a token detector
            analysis TEXT NOT NULL,             -- JSON: the whole UnitAnalysis, position profile included
            PRIMARY KEY (run_id, unit_id)
        );
        CREATE INDEX unit_analyses_unit ON unit_analyses(unit_id);
        """
    )
