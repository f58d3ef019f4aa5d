"""Migration ``m005_dictionaries``, registered in order by ``autointerp.db.migrations``, whose rules hold: never edited
once released; a change is a new migration."""

from __future__ import annotations

from sqlite_utils import Database

from autointerp.db.script import run_script


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
