"""The report's reads: the results database opened read-only, and the queries the pages need.

    >>> data = open_readonly("autointerp.db")
    >>> rows = data.unit_rows(Filters(layer=13))          # one row per unit with its best score (or none)
    >>> page = data.unit_page(rows[0]["unit_id"])          # everything one unit page shows

The file is opened through SQLite's read-only URI (``mode=ro``): nothing here can write to it, so ``serve`` may read a
database that a run is writing. The store's own read helpers (``db.views.Reads``: the per-explainer and per-dictionary
summaries with their bootstrap intervals) run over the same read-only connection.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from autointerp.db.migrations import migrations, refuse_newer
from autointerp.db.store import scrub_secrets
from autointerp.db.views import Reads
from autointerp.errors import UsageError


@dataclass(frozen=True)
class Filters:
    """The leaderboard's filters (``autointerp leaderboard``), applied to the whole report."""

    layer: int | None = None
    explainer: str | None = None  # units whose best explanation is by this explainer
    kind: str | None = None  # "neuron", a dictionary's kind ("sae:1f2e3d4c") or a family ("sae")
    min_score: float | None = None

    @property
    def narrows_to_scored(self) -> bool:
        """Whether units without a defined score drop out (they have no best explainer and no score)."""
        return self.explainer is not None or self.min_score is not None


class ReportData(Reads):
    """Read-only queries over one results file (``Reads`` adds the store's summaries and ``rows``, a query's rows
    with their JSON columns decoded)."""

    def __init__(self, conn: sqlite3.Connection, path: Path):
        self.conn = conn
        self.db = Database(conn)
        self.path = path

    def close(self) -> None:
        self.conn.close()

    # -- the index -----------------------------------------------------------------------------------------------

    def unit_rows(self, f: Filters, unit_ids: Collection[int] | None = None) -> list[dict[str, Any]]:
        """One row per unit a run saved (its latest statistics), with its best test score when it has one, in
        (model, kind, layer, unit) order (``row_order``): the units the report has pages for; only ``unit_ids``
        when given."""
        where, params = ["1 = 1"], []
        if unit_ids is not None:
            where.append("u.id IN (SELECT value FROM json_each(?))")
            params.append(json.dumps(sorted(unit_ids)))
        if f.layer is not None:
            where.append("u.layer = ?")
            params.append(f.layer)
        if f.kind is not None:
            where.append("(u.kind = ? OR u.kind LIKE ? ESCAPE '\\')")
            params += [f.kind, f.kind.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + ":%"]
        if f.explainer is not None:
            where.append("lb.explainer = ?")
            params.append(f.explainer)
        if f.min_score is not None:
            where.append("lb.score >= ?")
            params.append(f.min_score)
        sql = f"""
            WITH latest AS (
                SELECT s.*, ROW_NUMBER() OVER (PARTITION BY s.unit_id ORDER BY r.created_at DESC, r.rowid DESC) AS place
                FROM unit_stats s JOIN runs r ON r.id = s.run_id
            ), defined AS (
                SELECT unit_id, COUNT(*) AS n_explanations, MAX(undefined_reason) AS undefined_reason
                FROM explanation_scores WHERE role = 'explanation' GROUP BY unit_id
            )
            SELECT u.id AS unit_id, u.model_hash, u.kind, u.layer, u.unit, st.run_id, st.firing_rate, st.max,
                   st.fire_count, lb.score, lb.score_top, lb.score_random, lb.detection, lb.fuzzing,
                   lb.explainer, lb.simulator,
                   lb.explanation, lb.is_baseline, d.n_explanations, d.undefined_reason,
                   (SELECT e.text FROM explanations e WHERE e.unit_id = u.id AND e.role = 'explanation'
                    ORDER BY e.created_at DESC, e.id DESC LIMIT 1) AS latest_text
            FROM units u
            JOIN latest st ON st.unit_id = u.id AND st.place = 1
            LEFT JOIN leaderboard lb ON lb.unit_id = u.id
            LEFT JOIN defined d ON d.unit_id = u.id
            WHERE {' AND '.join(where)}
            ORDER BY u.model_hash, u.kind = 'neuron' DESC, u.kind, u.layer, u.unit"""
        return self.rows(sql, params)

    def marks(self) -> dict[str, Any]:
        """Where each table a unit page reads has got to: its newest row id (and, for the tables whose rows a run
        replaces, the newest time written), and the counts that only fall when something was deleted."""
        return dict(zip(MARKS, self.conn.execute(f"SELECT {', '.join(MARKS.values())}").fetchone()))

    def changed_units(self, marks: dict[str, Any]) -> set[int]:
        """The units whose rows were written after ``marks`` (an earlier ``marks()``): a unit a run saved or saved
        again, a new explanation or control, an LLM call, an analysis, a detection or fuzzing judgement. Rows a run
        replaces get new row ids, or, when they were the newest, the same ones again with a newer time: only the last
        ``TAIL`` row ids are looked at for that, so no refresh reads a whole table."""
        sql = f"""SELECT unit_id FROM unit_runs WHERE rowid > :unit_runs - {TAIL}
                      AND (rowid > :unit_runs OR finished_at > :unit_runs_at)
                  UNION SELECT unit_id FROM unit_stats WHERE rowid > :unit_stats
                  UNION SELECT unit_id FROM explanations WHERE id > :explanations - {TAIL}
                      AND (id > :explanations OR created_at > :explanations_at)
                  UNION SELECT unit_id FROM llm_calls WHERE id > :llm_calls AND unit_id IS NOT NULL
                  UNION SELECT unit_id FROM unit_analyses WHERE rowid > :unit_analyses
                  UNION SELECT e.unit_id FROM judgements j JOIN explanations e ON e.id = j.explanation_id
                      WHERE j.id > :judgements - {TAIL} AND (j.id > :judgements OR j.created_at > :judgements_at)"""
        return {r[0] for r in self.conn.execute(sql, marks)}

    def runs(self) -> list[dict[str, Any]]:
        """Every explanation run, newest first, with its config and its LLM spend per profile."""
        runs = self.rows("SELECT * FROM runs ORDER BY created_at DESC, rowid DESC")
        usage: dict[str, list[dict[str, Any]]] = {}
        for u in self.rows("SELECT * FROM llm_usage ORDER BY run_id, profile"):
            usage.setdefault(u["run_id"], []).append(u)
        counts = {r["run_id"]: r for r in self.rows(
            "SELECT run_id, COUNT(*) AS units, SUM(status = 'done') AS done, SUM(status = 'gave_up') AS gave_up, "
            "SUM(status = 'failed') AS failed FROM unit_runs GROUP BY run_id")}
        for r in runs:
            r["config"] = scrub_secrets(r["config"])  # the store scrubs on write; a file from elsewhere may not be
            r["usage"] = usage.get(r["id"], [])
            r["units"] = counts.get(r["id"], {"units": 0, "done": 0, "gave_up": 0, "failed": 0})
            costs = [u["cost_usd"] for u in r["usage"]]
            r["llm_calls"] = sum(u["calls"] for u in r["usage"])
            r["llm_cost"] = None if any(c is None for c in costs) else sum(costs)  # None: a price is unknown
        return runs

    def dictionaries(self) -> list[dict[str, Any]]:
        return self.rows("SELECT * FROM dictionary_evals ORDER BY layer, kind, created_at DESC")

    # -- layer pages ---------------------------------------------------------------------------------------------

    def analysis_layers(self) -> dict[int, dict[str, Any]]:
        """{layer: the latest ``analyze`` summary of it, with its run's model, corpus and tokens}."""
        rows = self.rows("""SELECT la.layer, la.summary, ar.id AS run_id, ar.model, ar.model_hash, ar.corpus,
                                   ar.n_tokens, ar.created_at
                            FROM layer_analyses la JOIN analysis_runs ar ON ar.id = la.run_id
                            ORDER BY ar.created_at, ar.rowid""")
        return {r["layer"]: r for r in rows}  # later runs overwrite earlier ones

    def layer_units(self, run_id: str, layer: int) -> list[dict[str, Any]]:
        """The per-unit analyses of one layer from one ``analyze`` run."""
        return self.rows("""SELECT u.unit, u.kind, ua.* FROM unit_analyses ua JOIN units u ON u.id = ua.unit_id
                            WHERE ua.run_id = ? AND u.layer = ? ORDER BY u.unit""", [run_id, layer])

    # -- unit pages ----------------------------------------------------------------------------------------------

    def unit_page(self, unit_id: int) -> dict[str, Any]:
        """Everything one unit page shows: statistics and windows of the latest run that saved it, every explanation
        with its scores, simulations and detection and fuzzing judgements (``Reads.judgements``), its latest
        analysis, and the LLM calls made for it."""
        (unit,) = self.rows("SELECT * FROM units WHERE id = ?", [unit_id]) or [None]
        if unit is None:
            raise UsageError(f"no unit with id {unit_id} in {self.path}")
        stats = self.rows("""SELECT s.*, r.model, r.corpus, r.created_at AS run_created_at FROM unit_stats s
                             JOIN runs r ON r.id = s.run_id WHERE s.unit_id = ?
                             ORDER BY r.created_at DESC, r.rowid DESC LIMIT 1""", [unit_id])
        run_id = stats[0]["run_id"] if stats else None
        windows = self.rows("""SELECT id, corpus_index, source, split, rank, tokens, activations FROM windows
                               WHERE run_id = ? AND unit_id = ? ORDER BY split, source DESC, rank""",
                            [run_id, unit_id])
        explanations = self.rows("""SELECT * FROM explanations WHERE unit_id = ?
                                    ORDER BY created_at DESC, id DESC""", [unit_id])
        judged = self.judgements([e["id"] for e in explanations])
        for e in explanations:
            e["judgements"] = judged.get(e["id"], [])
            for j in e["judgements"]:
                j["config"] = scrub_secrets(j["config"])
            e["explainer_config"] = scrub_secrets(e["explainer_config"])
            e["scores"] = {s["split"]: s for s in self.rows(
                "SELECT * FROM scores WHERE explanation_id = ? ORDER BY split, simulator", [e["id"]])}
            for s in e["scores"].values():
                s["simulator_config"] = scrub_secrets(s["simulator_config"])
            e["simulations"] = {s["window_id"]: s for s in self.rows(
                "SELECT window_id, simulator, predictions, error FROM simulations WHERE explanation_id = ?",
                [e["id"]])}
        analysis = self.rows("""SELECT ua.*, ar.n_tokens AS analysis_tokens, ar.corpus AS analysis_corpus
                                FROM unit_analyses ua JOIN analysis_runs ar ON ar.id = ua.run_id
                                WHERE ua.unit_id = ? ORDER BY ar.created_at DESC, ar.rowid DESC LIMIT 1""",
                             [unit_id])
        calls = self.rows("""SELECT id, run_id, profile, model, purpose, messages, response, tokens_in, tokens_out,
                                    latency_s, cost_usd, error, attempts, created_at
                             FROM llm_calls WHERE unit_id = ? ORDER BY created_at, id""", [unit_id])
        return dict(unit=unit, run_id=run_id, stats=stats[0] if stats else None, windows=windows,
                    explanations=explanations, analysis=analysis[0] if analysis else None, calls=calls)


TAIL = 256  # more rows than one unit's save replaces in one table
MARKS = {
    "unit_runs": "(SELECT COALESCE(MAX(rowid), 0) FROM unit_runs)",
    "unit_runs_at": f"(SELECT COALESCE(MAX(finished_at), '') FROM unit_runs WHERE rowid > "
                    f"(SELECT MAX(rowid) FROM unit_runs) - {TAIL})",
    "unit_stats": "(SELECT COALESCE(MAX(rowid), 0) FROM unit_stats)",
    "explanations": "(SELECT COALESCE(MAX(id), 0) FROM explanations)",
    "explanations_at": f"(SELECT COALESCE(MAX(created_at), '') FROM explanations WHERE id > "
                       f"(SELECT MAX(id) FROM explanations) - {TAIL})",
    "llm_calls": "(SELECT COALESCE(MAX(id), 0) FROM llm_calls)",
    "unit_analyses": "(SELECT COALESCE(MAX(rowid), 0) FROM unit_analyses)",
    "judgements": "(SELECT COALESCE(MAX(id), 0) FROM judgements)",
    "judgements_at": f"(SELECT COALESCE(MAX(created_at), '') FROM judgements WHERE id > "
                     f"(SELECT MAX(id) FROM judgements) - {TAIL})",
    "units": "(SELECT COUNT(*) FROM units)",
    "runs": "(SELECT COUNT(*) FROM runs)",
    "unit_runs_n": "(SELECT COUNT(*) FROM unit_runs)",
}
DELETIONS = ("units", "runs", "unit_runs_n")  # counts that never fall unless rows were deleted


def row_order(row: dict[str, Any]) -> tuple[Any, ...]:
    """``unit_rows``'s ORDER BY, in Python."""
    return row["model_hash"], row["kind"] != "neuron", row["kind"], row["layer"], row["unit"]


def open_readonly(path: str | Path) -> ReportData:
    """Open a results file for reading only. ``UsageError`` when it is missing, not a database, or needs migrations
    this reader cannot apply (written by an older or newer autointerp)."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"no results database at {path}; run 'autointerp run --layer N' first or pass --db")
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False)
        data = ReportData(conn, path)
    except sqlite3.DatabaseError as e:
        raise UsageError(f"{path} is not an autointerp results database ({e}); pass another --db") from e
    try:
        refuse_newer(data.db, str(path))  # the store's own check: a migration this code does not know
        applied, pending = migrations.applied(data.db), migrations.pending(data.db)
        if not applied:
            raise UsageError(f"{path} is not an autointerp results database (no autointerp schema); pass another --db")
        if pending:
            raise UsageError(f"{path} was written by an older autointerp; run 'autointerp leaderboard --db {path}' "
                             "once to upgrade it, then build the report")
    except (sqlite3.DatabaseError, UsageError) as e:
        data.close()
        if isinstance(e, UsageError):
            raise
        raise UsageError(f"{path} is not an autointerp results database ({e}); pass another --db") from e
    return data
