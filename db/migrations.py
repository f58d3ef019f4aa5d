"""The schema of the autointerp SQLite file, as append-only migrations applied on every open.

    >>> import sqlite_utils
    >>> from autointerp.db.migrations import migrate, migrations
    >>> db = sqlite_utils.Database(memory=True)
    >>> migrate(db, "memory")
    >>> [m.name for m in migrations.applied(db)]  # doctest: +NORMALIZE_WHITESPACE
    ['m001_initial', 'm002_views', 'm003_analyses', 'm004_probes', 'm005_dictionaries', 'm006_probe_kind',
     'm007_probe_context', 'm008_leases_sweeps', 'm009_outcomes', 'm010_outcome_words', 'm011_judgements',
     'm012_shared_example_tokens']

Migrations from ``m008`` on live in their own modules (``db/migrations_m008.py``, ``db/migrations_outcomes.py``,
``db/migrations_judgements.py``)
and are registered, in order, at the end of this module.
The same set also runs from the shell: ``sqlite-utils migrate autointerp.db db/migrations.py``.

Rules. A released migration is never edited. A change to a table or a view is a new function appended at the end
(``m003_...``), which may ``DROP VIEW`` and create it anew. The SQL is written inside each function for that reason:
a shared constant edited later would silently change what an old migration means. Applied migrations are recorded
by ``sqlite_utils.Migrations`` in ``_sqlite_migrations`` (set ``autointerp``); a file that records one this code
does not know was written by a newer autointerp, and ``migrate`` refuses it.

Conventions: JSON lives in TEXT columns; timestamps are ISO-8601 UTC text; a NULL score always carries its reason.
"""

from __future__ import annotations

from sqlite_utils import Database, Migrations

from autointerp.db.migrations_m008 import m008_leases_sweeps
from autointerp.db.migrations_judgements import m011_judgements, m012_shared_example_tokens
from autointerp.db.migrations_outcomes import m009_outcomes
from autointerp.db.migrations_words import m010_outcome_words
from autointerp.db.script import run_script
from autointerp.errors import UsageError

migrations = Migrations("autointerp")


@migrations()
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


@migrations()
def m002_views(db: Database) -> None:
    """The views the CLI, Datasette and ``sqlite-utils`` read: scores per explanation, the leaderboard, summaries."""
    run_script(db,
        """
        -- One row per explanation and simulator with its test score (NULLs when it has none).
        CREATE VIEW explanation_scores AS
        SELECT
            e.id AS explanation_id, e.run_id, e.unit_id,
            u.model_hash, u.kind, u.layer, u.unit,
            e.explainer, e.is_baseline, e.status, e.reason, e.text AS explanation,
            s.simulator, s.score, s.score_top, s.score_random, s.undefined_reason, s.n_windows,
            e.created_at, s.created_at AS scored_at
        FROM explanations e
        JOIN units u ON u.id = e.unit_id
        LEFT JOIN scores s ON s.explanation_id = e.id AND s.split = 'test';

        -- The best defined test score of each unit over every explanation and simulator; ties go to the latest.
        CREATE VIEW leaderboard AS
        SELECT
            model_hash, kind, layer, unit, explanation, explainer, is_baseline, simulator,
            score, score_top, score_random, n_windows, run_id, explanation_id, unit_id, scored_at
        FROM (
            SELECT *, ROW_NUMBER() OVER (
                PARTITION BY unit_id ORDER BY score DESC, scored_at DESC, explanation_id DESC
            ) AS place
            FROM explanation_scores
            WHERE score IS NOT NULL
        )
        WHERE place = 1;

        -- Per explainer and simulator: units and explanations with a defined test score, undefined ones, the mean.
        CREATE VIEW explainer_summary AS
        SELECT
            explainer, simulator,
            COUNT(DISTINCT CASE WHEN score IS NOT NULL THEN unit_id END) AS units,
            COUNT(score) AS explanations,
            COUNT(*) - COUNT(score) AS undefined,
            AVG(score) AS mean_score
        FROM explanation_scores
        WHERE simulator IS NOT NULL
        GROUP BY explainer, simulator;

        -- LLM spend per run and profile.
        CREATE VIEW llm_usage AS
        SELECT
            run_id, profile,
            COUNT(*) AS calls, SUM(attempts) AS attempts,
            SUM(tokens_in) AS tokens_in, SUM(tokens_out) AS tokens_out,
            SUM(cost_usd) AS cost_usd, COUNT(error) AS errors, SUM(latency_s) AS latency_s
        FROM llm_calls
        GROUP BY run_id, profile;
        """
    )



@migrations()
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



@migrations()
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

@migrations()
def m005_dictionaries(db: Database) -> None:
    """Dictionaries (SAEs and baselines) trained or evaluated by ``autointerp sae``, and the mean explanation score
    per dictionary, the paper's comparison (Cunningham et al. 2023) as a view."""
    run_script(db,
        """
        CREATE TABLE dictionary_evals (
            id TEXT PRIMARY KEY,                -- uuid4 hex
            created_at TEXT NOT NULL,
            command TEXT NOT NULL,
            path TEXT NOT NULL,                 -- the folder, as given
            kind TEXT NOT NULL,                 -- the units' kind: family:hash8 (units.kind of its features)
            family TEXT NOT NULL,               -- sae | pca | ica | random | default
            model TEXT NOT NULL,
            model_hash TEXT NOT NULL,
            layer INTEGER NOT NULL,
            site TEXT NOT NULL,                 -- mlp | resid
            d_in INTEGER NOT NULL,
            n_features INTEGER NOT NULL,
            corpus TEXT NOT NULL,               -- evaluation tokens
            n_tokens INTEGER NOT NULL,
            fvu REAL,                           -- NULL for dictionaries without a decoder (baselines)
            mean_l0 REAL NOT NULL,
            dead_features INTEGER NOT NULL,
            loss_clean REAL,                    -- nats per predicted token; NULL without a decoder
            loss_spliced REAL,
            config TEXT NOT NULL                -- JSON: the folder's cfg.json
        );
        CREATE INDEX dictionary_evals_kind ON dictionary_evals(kind);

        -- Per unit kind (neurons, or one dictionary's features), layer, explainer and simulator: the mean test
        -- score over units with a defined score, and how many units had none (dead features score NULL).
        CREATE VIEW dictionary_scores AS
        SELECT
            model_hash, layer,
            CASE WHEN instr(kind, ':') > 0 THEN substr(kind, 1, instr(kind, ':') - 1) ELSE kind END AS family,
            kind, explainer, simulator,
            COUNT(DISTINCT CASE WHEN score IS NOT NULL THEN unit_id END) AS units,
            COUNT(DISTINCT unit_id) - COUNT(DISTINCT CASE WHEN score IS NOT NULL THEN unit_id END) AS undefined,
            AVG(score) AS mean_score
        FROM explanation_scores
        WHERE status IS NOT NULL
        GROUP BY model_hash, layer, kind, explainer, simulator;
        """
    )


@migrations()
def m006_probe_kind(db: Database) -> None:
    """Probes read either the MLP neurons or a dictionary's features: record which (``units.kind``'s values)."""
    run_script(db,
        """
        ALTER TABLE probe_results ADD COLUMN kind TEXT NOT NULL DEFAULT 'neuron';  -- neuron | family:hash8
        """
    )


@migrations()
def m007_probe_context(db: Database) -> None:
    """Probes feed each window after the text before it: record at most how many tokens of it (NULL on rows
    written before this migration: unknown)."""
    run_script(db,
        """
        ALTER TABLE probe_results ADD COLUMN context INTEGER;  -- preceding tokens fed before each probed window
        """
    )


migrations()(m008_leases_sweeps)  # leases and the sweep ledger (db/migrations_m008.py)
migrations()(m009_outcomes)  # explainer and scoring outcomes, controls, accounting (db/migrations_outcomes.py)
migrations()(m010_outcome_words)  # one vocabulary for outcomes; controls are not baselines (db/migrations_words.py)
migrations()(m011_judgements)  # detection and fuzzing results, and the views that show them (migrations_judgements.py)
migrations()(m012_shared_example_tokens)  # a window's tokens stored once per judgement (migrations_judgements.py)


def _known_names() -> frozenset[str]:
    with Database(memory=True) as empty:  # everything registered is pending on an empty database
        return frozenset(m.name for m in migrations.pending(empty))


KNOWN = _known_names()


def migrate(db: Database, where: str) -> None:
    """Apply the pending migrations, all of them or none, in one write transaction.

    ``where`` names the file in messages. Raises ``UsageError`` when the file records a migration this code does not
    know. SQLite errors (locked, not a database) propagate; ``open_db`` turns them into messages.
    """
    refuse_newer(db, where)
    if not migrations.pending(db):
        return
    db.conn.execute("BEGIN IMMEDIATE")  # re-check under the write lock: another process may have migrated meanwhile
    try:
        refuse_newer(db, where)
        migrations.apply(db)  # nested: each migration is a savepoint inside this transaction
        db.conn.execute("COMMIT")
    except BaseException:
        db.rollback()
        raise


def refuse_newer(db: Database, where: str) -> None:
    """``UsageError`` when the file records a migration this code does not know (a newer autointerp wrote it)."""
    unknown = [m.name for m in migrations.applied(db) if m.name not in KNOWN]
    if unknown:
        raise UsageError(
            f"{where} was written by a newer autointerp (schema {unknown[-1]}); upgrade autointerp or use another --db"
        )
