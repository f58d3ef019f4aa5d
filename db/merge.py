"""``autointerp db merge OUT IN...``: fold results databases (e.g. one per Slurm shard) into one.

    from autointerp.db.merge import merge_databases
    counts = merge_databases("all.db", ["shard0.db", "shard1.db"])   # {"runs": 4, "explanations": 64, ...}

Every source is first brought to the current schema (its pending migrations applied), then copied in one
transaction per source: runs, analyses, probes and dictionary evaluations by their uuid (one already in the target
is skipped, so merging the same file twice adds nothing), units by their identity (model hash, kind, layer, unit),
and rows with integer ids (windows, explanations, simulations, scores, LLM calls, sweep attempts) shifted past the
target's largest id, with every reference shifted alike. Leases are not copied.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from autointerp.db.store import open_db
from autointerp.errors import UsageError

_SHIFTED = ("windows", "explanations", "simulations", "scores", "llm_calls", "sweep_attempts")


def merge_databases(target: str | Path, sources: list[str | Path]) -> dict[str, int]:
    """Copy every source's rows into ``target`` (created when missing); returns rows added per table."""
    target = Path(target)
    for src in sources:
        if not Path(src).is_file():
            raise UsageError(f"no database at {src}; pass existing results files to merge")
        if Path(src).resolve() == target.resolve():
            raise UsageError(f"{src} is the output of the merge; pass it only as OUT")
    added: dict[str, int] = {}
    for src in sources:
        open_db(src).close()  # same schema as the target: pending migrations applied
    with open_db(target) as store:
        conn = store.db.conn
        for src in sources:
            conn.execute("ATTACH DATABASE ? AS src", [str(src)])
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    for table, n in _merge_one(conn).items():
                        added[table] = added.get(table, 0) + n
                    conn.execute("COMMIT")
                except BaseException:
                    conn.rollback()
                    raise
            finally:
                conn.execute("DETACH DATABASE src")
    return added


def _merge_one(conn: sqlite3.Connection) -> dict[str, int]:
    off = {t: conn.execute(f"SELECT COALESCE(MAX(id), 0) FROM main.[{t}]").fetchone()[0] for t in _SHIFTED}
    conn.execute("INSERT INTO main.units (model_hash, layer, unit, kind) SELECT model_hash, layer, unit, kind "
                 "FROM src.units WHERE true ON CONFLICT DO NOTHING")
    conn.execute("DROP TABLE IF EXISTS temp.umap")
    conn.execute("CREATE TEMP TABLE umap AS SELECT s.id AS old, m.id AS new FROM src.units s JOIN main.units m "
                 "USING (model_hash, kind, layer, unit)")
    conn.execute("DROP TABLE IF EXISTS temp.newruns")
    conn.execute("CREATE TEMP TABLE newruns AS SELECT id FROM src.runs WHERE id NOT IN (SELECT id FROM main.runs)")
    conn.execute("DROP TABLE IF EXISTS temp.newsessions")
    conn.execute("CREATE TEMP TABLE newsessions AS SELECT id FROM src.sweep_sessions "
                 "WHERE id NOT IN (SELECT id FROM main.sweep_sessions)")
    unit = "(SELECT new FROM temp.umap WHERE old = unit_id)"
    in_runs = "run_id IN (SELECT id FROM temp.newruns)"
    counts = {
        "runs": _copy(conn, "runs", "id IN (SELECT id FROM temp.newruns)"),
        "unit_stats": _copy(conn, "unit_stats", in_runs, unit_id=unit),
        "windows": _copy(conn, "windows", in_runs, id=f"id + {off['windows']}", unit_id=unit),
        "explanations": _copy(conn, "explanations", in_runs, id=f"id + {off['explanations']}", unit_id=unit),
        "simulations": _copy(conn, "simulations", f"explanation_id IN (SELECT id FROM src.explanations WHERE "
                             f"{in_runs})", id=f"id + {off['simulations']}",
                             explanation_id=f"explanation_id + {off['explanations']}",
                             window_id=f"window_id + {off['windows']}"),
        "scores": _copy(conn, "scores", f"explanation_id IN (SELECT id FROM src.explanations WHERE {in_runs})",
                        id=f"id + {off['scores']}", explanation_id=f"explanation_id + {off['explanations']}"),
        "unit_runs": _copy(conn, "unit_runs", in_runs, unit_id=unit),
        "llm_calls": _copy(conn, "llm_calls", in_runs, id=f"id + {off['llm_calls']}",
                           unit_id=f"CASE WHEN unit_id IS NULL THEN NULL ELSE {unit} END"),
        "sweep_sessions": _copy(conn, "sweep_sessions", "id IN (SELECT id FROM temp.newsessions)"),
        "sweep_attempts": _copy(conn, "sweep_attempts", "session_id IN (SELECT id FROM temp.newsessions)",
                                id=f"id + {off['sweep_attempts']}"),
        "sweep_runs": _copy(conn, "sweep_runs", f"{in_runs}", verb="INSERT OR IGNORE"),
        "sweep_items": _copy(conn, "sweep_items", "true", verb="INSERT OR IGNORE"),
    }
    for table in ("analysis_runs", "probe_results", "dictionary_evals"):
        new = f"id NOT IN (SELECT id FROM main.{table})"
        if table == "analysis_runs":
            conn.execute("DROP TABLE IF EXISTS temp.newanalyses")
            conn.execute(f"CREATE TEMP TABLE newanalyses AS SELECT id FROM src.analysis_runs WHERE {new}")
            in_new = "run_id IN (SELECT id FROM temp.newanalyses)"
            counts["layer_analyses"] = _copy(conn, "layer_analyses", in_new)
            counts["unit_analyses"] = _copy(conn, "unit_analyses", in_new, unit_id=unit)
            new = "id IN (SELECT id FROM temp.newanalyses)"
        counts[table] = _copy(conn, table, new)
    return counts


def _copy(conn: sqlite3.Connection, table: str, where: str, verb: str = "INSERT", **exprs: str) -> int:
    """INSERT INTO main.table SELECT its columns (some replaced by ``exprs``) FROM src.table WHERE ``where``."""
    cols = [r[1] for r in conn.execute(f"PRAGMA main.table_info([{table}])").fetchall()]
    select = ", ".join(exprs.get(c, f"[{c}]") for c in cols)
    sql = (f"{verb} INTO main.[{table}] ({', '.join(f'[{c}]' for c in cols)}) "
           f"SELECT {select} FROM src.[{table}] WHERE {where}")
    return conn.execute(sql).rowcount
