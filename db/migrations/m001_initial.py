"""Migration ``m001_initial``, registered in order by ``autointerp.db.migrations``, whose rules hold: never edited once
released; a change is a new migration."""

from __future__ import annotations

from sqlite_utils import Database

from autointerp.db.script import run_script


def m001_initial(db: Database) -> None:
    """Runs, units and everything one run writes per unit; indexes for the resume ledger and the views."""
    run_script(db,
        """
        CREATE TABLE runs (
            id TEXT PRIMARY KEY,                -- uuid4 hex
            run_key TEXT NOT NULL,              -- hash of the output-determining config: what resume matches on
            created_at TEXT NOT NULL,
            finished_at TEXT,
            status TEXT NOT NULL DEFAULT 'running'
                CHECK (status IN ('running', 'complete', 'interrupted', 'failed')),
            command TEXT NOT NULL,
            config TEXT NOT NULL,               -- JSON, scrubbed of secrets
            versions TEXT NOT NULL,             -- JSON {package: version}
            model TEXT NOT NULL,                -- id or path as given
            model_hash TEXT NOT NULL,           -- hash of the weights
            layer INTEGER NOT NULL,
            unit_kind TEXT NOT NULL,
            corpus TEXT NOT NULL,
            n_tokens INTEGER,                   -- content tokens captured; NULL until capture has run
            seed INTEGER NOT NULL,
            explainer TEXT NOT NULL,
            simulator TEXT NOT NULL,
            wall_s REAL                         -- summed over the sessions of a resumed run
        );
        CREATE INDEX runs_run_key ON runs (run_key, created_at);

        CREATE TABLE units (                    -- the same unit across every run of the same weights
            id INTEGER PRIMARY KEY,
            model_hash TEXT NOT NULL,
            layer INTEGER NOT NULL,
            unit INTEGER NOT NULL,
            kind TEXT NOT NULL DEFAULT 'neuron',
            UNIQUE (model_hash, kind, layer, unit)
        );

        CREATE TABLE unit_stats (
            run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
            unit_id INTEGER NOT NULL REFERENCES units (id),
            n_tokens INTEGER NOT NULL,
            fire_count INTEGER NOT NULL,
            firing_rate REAL NOT NULL,
            mean REAL,
            std REAL,
            max REAL,
            min REAL,
            threshold REAL NOT NULL,
            quantiles TEXT NOT NULL,            -- JSON {"q50": ..., "q99": ...}
            top_tokens TEXT NOT NULL,           -- JSON [[token, firings, occurrences], ...]
            extra TEXT NOT NULL,                -- JSON: analyses (dead, detectors, positional MI, ...)
            PRIMARY KEY (run_id, unit_id)
        );

        CREATE TABLE windows (
            id INTEGER PRIMARY KEY,
            run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
            unit_id INTEGER NOT NULL REFERENCES units (id),
            corpus_index INTEGER NOT NULL,
            source TEXT NOT NULL CHECK (source IN ('top', 'random')),
            split TEXT NOT NULL CHECK (split IN ('train', 'valid', 'test')),
            rank INTEGER NOT NULL,
            tokens TEXT NOT NULL,               -- JSON list of str
            token_ids TEXT NOT NULL,            -- JSON list of int
            activations TEXT NOT NULL,          -- JSON list of float, raw
            UNIQUE (run_id, unit_id, corpus_index)
        );

        CREATE TABLE explanations (
            id INTEGER PRIMARY KEY,
            run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
            unit_id INTEGER NOT NULL REFERENCES units (id),
            explainer TEXT NOT NULL,
            explainer_config TEXT NOT NULL,     -- JSON
            is_baseline INTEGER NOT NULL CHECK (is_baseline IN (0, 1)),
            text TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('done', 'gave_up', 'failed')),
            reason TEXT,
            details TEXT NOT NULL,              -- JSON
            created_at TEXT NOT NULL,
            llm_calls INTEGER NOT NULL DEFAULT 0,
            tokens_in INTEGER NOT NULL DEFAULT 0,
            tokens_out INTEGER NOT NULL DEFAULT 0,
            cost_usd REAL                       -- NULL when unknown
        );
        CREATE INDEX explanations_run_unit ON explanations (run_id, unit_id);
        CREATE INDEX explanations_unit ON explanations (unit_id);

        CREATE TABLE simulations (
            id INTEGER PRIMARY KEY,
            explanation_id INTEGER NOT NULL REFERENCES explanations (id) ON DELETE CASCADE,
            window_id INTEGER NOT NULL REFERENCES windows (id) ON DELETE CASCADE,
            simulator TEXT NOT NULL,
            predictions TEXT,                   -- JSON list of float (0..10), NULL when the simulation failed
            error TEXT,
            CHECK (predictions IS NOT NULL OR error IS NOT NULL)
        );
        CREATE INDEX simulations_explanation ON simulations (explanation_id);
        CREATE INDEX simulations_window ON simulations (window_id);

        CREATE TABLE scores (
            id INTEGER PRIMARY KEY,
            explanation_id INTEGER NOT NULL REFERENCES explanations (id) ON DELETE CASCADE,
            simulator TEXT NOT NULL,
            simulator_config TEXT NOT NULL,     -- JSON
            split TEXT NOT NULL CHECK (split IN ('valid', 'test')),
            score REAL,                         -- Pearson pooled over top + random windows
            score_top REAL,
            score_random REAL,
            undefined_reason TEXT,
            per_window TEXT NOT NULL,           -- JSON {"<corpus_index>": r or null}
            n_windows INTEGER NOT NULL,
            created_at TEXT NOT NULL,
            CHECK (score IS NOT NULL OR undefined_reason IS NOT NULL),
            UNIQUE (explanation_id, simulator, split)
        );

        CREATE TABLE unit_runs (                -- the resume ledger: one row per unit finished in a run
            run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
            unit_id INTEGER NOT NULL REFERENCES units (id),
            status TEXT NOT NULL CHECK (status IN ('done', 'gave_up', 'failed')),
            reason TEXT,
            finished_at TEXT NOT NULL,
            PRIMARY KEY (run_id, unit_id)
        );

        CREATE TABLE llm_calls (
            id INTEGER PRIMARY KEY,
            run_id TEXT REFERENCES runs (id) ON DELETE CASCADE,
            unit_id INTEGER REFERENCES units (id),
            profile TEXT NOT NULL,
            model TEXT NOT NULL,
            purpose TEXT NOT NULL,
            messages TEXT NOT NULL,             -- JSON
            response TEXT,                      -- JSON
            tokens_in INTEGER,
            tokens_out INTEGER,
            latency_s REAL,
            cost_usd REAL,
            error TEXT,
            attempts INTEGER NOT NULL DEFAULT 1,
            created_at TEXT NOT NULL
        );
        CREATE INDEX llm_calls_run_profile ON llm_calls (run_id, profile);
        """
    )
