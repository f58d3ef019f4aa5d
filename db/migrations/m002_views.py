"""Migration ``m002_views``, registered in order by ``autointerp.db.migrations``, whose rules hold: never edited once
released; a change is a new migration."""

from __future__ import annotations

from sqlite_utils import Database

from autointerp.db.script import run_script


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
