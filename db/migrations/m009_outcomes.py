"""Migration ``m009_outcomes``, registered in order by ``autointerp.db.migrations``, whose rules hold: never edited once
released; a change is a new migration."""

from __future__ import annotations

from sqlite_utils import Database

from autointerp.db.script import run_script


def m009_outcomes(db: Database) -> None:
    """The explainer's outcome and the scoring's outcome as separate fields, the simulator on every explanation
    (scored or not), controls (a floor, never a unit's best), the simulator's diagnostics with each score; the
    leaderboard without controls and a per-pair view of outcomes that lists pairs whose units all failed."""
    run_script(db,
        """
        ALTER TABLE explanations ADD COLUMN simulator TEXT;      -- the simulator that scored it (or was to)
        ALTER TABLE explanations ADD COLUMN scoring TEXT         -- scored | failed | not_scored (no text)
            CHECK (scoring IS NULL OR scoring IN ('scored', 'failed', 'not_scored'));
        ALTER TABLE explanations ADD COLUMN scoring_reason TEXT; -- why scoring failed or did not happen
        ALTER TABLE explanations ADD COLUMN role TEXT NOT NULL DEFAULT 'explanation'
            CHECK (role IN ('explanation', 'control'));          -- control: shuffled or empty explanation
        ALTER TABLE scores ADD COLUMN diagnostics TEXT;          -- JSON: the simulator's details of this simulation

        -- rows written before: the simulator from their score or their run; scoring failures were written into
        -- the explainer's status and reason, which cannot be told apart any more than by that reason's prefix
        UPDATE explanations SET simulator = COALESCE(
            (SELECT s.simulator FROM scores s WHERE s.explanation_id = explanations.id AND s.split = 'test'),
            (SELECT r.simulator FROM runs r WHERE r.id = explanations.run_id));
        UPDATE explanations SET scoring = CASE
            WHEN reason LIKE 'scoring failed%' THEN 'failed'
            WHEN text = '' THEN 'not_scored'
            ELSE 'scored' END;
        UPDATE explanations SET scoring_reason = reason WHERE scoring = 'failed';

        DROP VIEW leaderboard;
        DROP VIEW explainer_summary;
        DROP VIEW dictionary_scores;
        DROP VIEW explanation_scores;

        -- One row per explanation and simulator with its test score (NULLs when it has none). status is the unit's
        -- outcome for the explanation: failed when scoring failed, else the explainer's (explainer_status); the
        -- simulator is the one that scored it, or was to.
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
            e.role, e.status AS explainer_status, e.scoring, e.llm_calls, e.tokens_in, e.tokens_out, e.cost_usd
        FROM explanations e
        JOIN units u ON u.id = e.unit_id
        LEFT JOIN scores s ON s.explanation_id = e.id AND s.split = 'test';

        -- The best defined test score of each unit over every explanation and simulator (controls excluded); ties
        -- go to the latest.
        CREATE VIEW leaderboard AS
        SELECT
            model_hash, kind, layer, unit, explanation, explainer, is_baseline, simulator,
            score, score_top, score_random, n_windows, run_id, explanation_id, unit_id, scored_at
        FROM (
            SELECT *, ROW_NUMBER() OVER (
                PARTITION BY unit_id ORDER BY score DESC, scored_at DESC, explanation_id DESC
            ) AS place
            FROM explanation_scores
            WHERE score IS NOT NULL AND role = 'explanation'
        )
        WHERE place = 1;

        -- As m002 and m005 defined them, over the explanations that were scored (their semantics unchanged now that
        -- unscored explanations also name their simulator).
        CREATE VIEW explainer_summary AS
        SELECT
            explainer, simulator,
            COUNT(DISTINCT CASE WHEN score IS NOT NULL THEN unit_id END) AS units,
            COUNT(score) AS explanations,
            COUNT(*) - COUNT(score) AS undefined,
            AVG(score) AS mean_score
        FROM explanation_scores
        WHERE scored_at IS NOT NULL
        GROUP BY explainer, simulator;

        CREATE VIEW dictionary_scores AS
        SELECT
            model_hash, layer,
            CASE WHEN instr(kind, ':') > 0 THEN substr(kind, 1, instr(kind, ':') - 1) ELSE kind END AS family,
            kind, explainer, simulator,
            COUNT(DISTINCT CASE WHEN score IS NOT NULL THEN unit_id END) AS units,
            COUNT(DISTINCT unit_id) - COUNT(DISTINCT CASE WHEN score IS NOT NULL THEN unit_id END) AS undefined,
            AVG(score) AS mean_score
        FROM explanation_scores
        WHERE scored_at IS NOT NULL
        GROUP BY model_hash, layer, kind, explainer, simulator;

        -- Per explainer and simulator, every pair that wrote an explanation, scored or not: how the units ended
        -- (done / gave_up / failed, failed split into the explainer's and the scoring's failures), the mean of the
        -- defined test scores, and the LLM calls, tokens and cost spent.
        CREATE VIEW explainer_outcomes AS
        SELECT
            e.explainer, e.simulator, e.role,
            COUNT(*) AS explanations,
            SUM(e.scoring IS NOT 'failed' AND e.status = 'done') AS done,
            SUM(e.scoring IS NOT 'failed' AND e.status = 'gave_up') AS gave_up,
            SUM(e.scoring = 'failed' OR e.status = 'failed') AS failed,
            SUM(e.status = 'failed') AS explainer_failed,
            SUM(e.scoring = 'failed' AND e.status != 'failed') AS scoring_failed,
            COUNT(s.score) AS scored,
            COUNT(*) - COUNT(s.score) AS unscored,
            AVG(s.score) AS mean_score,
            SUM(e.llm_calls) AS llm_calls, SUM(e.tokens_in) AS tokens_in, SUM(e.tokens_out) AS tokens_out,
            SUM(e.cost_usd) AS cost_usd
        FROM explanations e
        LEFT JOIN scores s ON s.explanation_id = e.id AND s.split = 'test'
        GROUP BY e.explainer, e.simulator, e.role;
        """
    )
