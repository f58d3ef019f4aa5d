"""Migration ``m011_judgements``: the results of the classification scorers (detection and fuzzing, docs/methods.md
§2b; ``autointerp.scoring.classify``) and the views that show them beside the simulation score. Registered in order by
``autointerp.db.migrations``, whose rules hold: never edited once released; a change is a new migration.
"""

from __future__ import annotations

from sqlite_utils import Database

from autointerp.db.script import run_script


def m011_judgements(db: Database) -> None:
    """A ``judgements`` table (one row per explanation, scorer, split and judge); ``explanation_scores`` and
    ``leaderboard`` carry ``detection`` and ``fuzzing`` (the balanced accuracy on test, NULL when undefined or not
    judged), ``explainer_summary`` their means."""
    run_script(db,
        """
        CREATE TABLE judgements (
            id INTEGER PRIMARY KEY,
            explanation_id INTEGER NOT NULL REFERENCES explanations (id) ON DELETE CASCADE,
            scorer TEXT NOT NULL CHECK (scorer IN ('detection', 'fuzzing')),
            split TEXT NOT NULL CHECK (split IN ('valid', 'test')),
            judge TEXT NOT NULL,                -- 'quoted' (the non-LLM floor) or the LLM profile's name
            config TEXT NOT NULL,               -- JSON: the scorer's config() (judge, examples per class, seed)
            balanced_accuracy REAL,             -- NULL when undefined or failed; undefined_reason says why
            auroc REAL,                         -- NULL when the judge gave no probabilities
            n_judged INTEGER NOT NULL,          -- examples answered
            n_failed INTEGER NOT NULL,          -- examples whose answer was an error
            undefined_reason TEXT,
            failure TEXT,                       -- why nothing could be judged (the unit's outcome is then failed)
            seed INTEGER NOT NULL,
            examples TEXT NOT NULL,             -- JSON [{index, source, bin, label, tokens, marked, answer, ...}]
            counts TEXT NOT NULL,               -- JSON: the pools the examples were drawn from
            diagnostics TEXT NOT NULL,          -- JSON: the judge's requests, tokens and cost
            created_at TEXT NOT NULL
        );
        CREATE INDEX judgements_explanation ON judgements (explanation_id, scorer, split);

        DROP VIEW leaderboard;
        DROP VIEW explainer_summary;
        DROP VIEW explanation_scores;

        -- As m009 defined it, plus detection and fuzzing: the balanced accuracy on test of the explanation's latest
        -- judgement by each scorer (NULL when it has none or it is undefined).
        CREATE VIEW explanation_scores AS
        SELECT
            e.id AS explanation_id, e.run_id, e.unit_id,
            u.model_hash, u.kind, u.layer, u.unit,
            e.explainer, e.is_baseline,
            CASE WHEN e.scoring = 'failed' THEN 'failed' ELSE e.status END AS status,
            CASE WHEN e.scoring = 'failed' THEN e.scoring_reason ELSE e.reason END AS reason,
            e.text AS explanation,
            COALESCE(s.simulator, e.simulator) AS simulator, s.score, s.score_top, s.score_random, s.undefined_reason, s.n_windows,
            e.created_at, s.created_at AS scored_at,
            e.role, e.status AS explainer_status, e.scoring, e.llm_calls, e.tokens_in, e.tokens_out, e.cost_usd,
            (SELECT j.balanced_accuracy FROM judgements j WHERE j.explanation_id = e.id AND j.scorer = 'detection'
                AND j.split = 'test' ORDER BY j.id DESC LIMIT 1) AS detection,
            (SELECT j.balanced_accuracy FROM judgements j WHERE j.explanation_id = e.id AND j.scorer = 'fuzzing'
                AND j.split = 'test' ORDER BY j.id DESC LIMIT 1) AS fuzzing
        FROM explanations e
        JOIN units u ON u.id = e.unit_id
        LEFT JOIN scores s ON s.explanation_id = e.id AND s.split = 'test';

        -- As m009, with the best explanation's detection and fuzzing beside its score.
        CREATE VIEW leaderboard AS
        SELECT
            model_hash, kind, layer, unit, explanation, explainer, is_baseline, simulator,
            score, score_top, score_random, n_windows, run_id, explanation_id, unit_id, scored_at, detection, fuzzing
        FROM (
            SELECT *, ROW_NUMBER() OVER (
                PARTITION BY unit_id ORDER BY score DESC, scored_at DESC, explanation_id DESC
            ) AS place
            FROM explanation_scores
            WHERE score IS NOT NULL AND role = 'explanation'
        )
        WHERE place = 1;

        -- As m009, with the means of the defined detection and fuzzing scores.
        CREATE VIEW explainer_summary AS
        SELECT
            explainer, simulator,
            COUNT(DISTINCT CASE WHEN score IS NOT NULL THEN unit_id END) AS units,
            COUNT(score) AS explanations,
            COUNT(*) - COUNT(score) AS undefined,
            AVG(score) AS mean_score,
            AVG(detection) AS detection_mean,
            AVG(fuzzing) AS fuzzing_mean
        FROM explanation_scores
        WHERE scored_at IS NOT NULL
        GROUP BY explainer, simulator;
        """
    )
