"""``autointerp sweep status`` and ``autointerp sweep report``: what is done, left, failed and spent; what a night
changed. Read from the database only (no model is loaded): the plan's expansion is the one its last start wrote.

    >>> from autointerp.sweep import sweep_status, sweep_report
    >>> s = sweep_status("nightly.toml"); s["done"], [j["units_todo"] for j in s["jobs"]]
    >>> r = sweep_report("nightly.toml"); r["units_explained"], r["spend"]["cost_usd"]
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from autointerp.db import Store, open_db
from autointerp.db.leases import lease_holder
from autointerp.errors import UsageError
from autointerp.sweep.ledger import Ledger, night_start
from autointerp.sweep.engine import resolve_plan
from autointerp.sweep.plan import Plan


def _open(plan_path: str | Path, config: str | None, db: str | None) -> tuple[Plan, str, Store]:
    plan, _, db = resolve_plan(plan_path, config, db)
    if not Path(db).is_file():
        raise UsageError(f"no results database at {db}; start the sweep first: autointerp sweep run {plan_path}")
    return plan, db, open_db(db)


def sweep_status(plan_path: str | Path, config: str | None = None, db: str | None = None) -> dict[str, Any]:
    """Per job: units done / failed / to do, attempts, spend (total and tonight), what is left in dollars and
    seconds at the rates measured so far; the lease holder; ``done`` when nothing is left that a start would do."""
    plan, db, store = _open(plan_path, config, db)
    with store:
        ledger = Ledger(store, plan.name)
        since = night_start(plan.budget.night_starts).isoformat()
        items = ledger.items()
        jobs = []
        for name, job in plan.ordered_jobs():
            mine = [i for i in items if i["job"] == name]
            done = failed = todo = 0
            wall = 0.0
            gave_up = ledger.failed_attempts(name, None, plan.plan_hash()) >= plan.max_attempts
            for i in mine:
                c = ledger.item_counts(name, i["layer"])
                done, failed = done + c["done"], failed + c["failed"]
                left = i["units_total"] - c["done"] - c["failed"]
                todo += left
                wall += c["wall_s"]
                if (left or c["failed"]) and ledger.failed_attempts(name, i["layer"], plan.plan_hash()) \
                        >= plan.max_attempts:
                    gave_up = True
            spend, tonight = ledger.spend(job=name), ledger.spend(since=since, job=name)
            per_unit_usd = spend["cost_usd"] / done if done and spend["calls"] else None
            jobs.append({
                "name": name, "priority": job.priority, "layers": [i["layer"] for i in mine],
                "expanded": bool(mine), "units_done": done, "units_failed": failed,
                "units_todo": todo if mine else None, "gave_up": gave_up, "last_failure": ledger.last_failure(name),
                "spend": spend, "spend_tonight": tonight,
                "estimate_left": {"cost_usd": None if per_unit_usd is None else round(per_unit_usd * (todo + failed),
                                                                                      6),
                                  "seconds": round(wall / done * (todo + failed), 1) if done else None,
                                  "basis": f"measured over {done} units" if done else "nothing measured yet"},
            })
        holder = lease_holder(db, f"sweep:{plan.name}")
        sessions = ledger.sessions()
        return {
            "sweep": plan.name, "db": db,
            "done": all((j["expanded"] and j["units_todo"] == 0 and j["units_failed"] == 0) or j["gave_up"]
                        for j in jobs),
            "jobs": jobs, "spend": ledger.spend(), "spend_tonight": ledger.spend(since=since),
            "budget": plan.budget.model_dump(), "lease_holder": holder.describe() if holder else None,
            "last_session": sessions[-1] if sessions else None,
        }


def sweep_report(plan_path: str | Path, config: str | None = None, since: str | None = None,
                 db: str | None = None) -> dict[str, Any]:
    """What the latest night (from ``since``, ISO, else the start of the night of the last session) changed: units
    newly explained, best scores that changed (with the best explanation's detection and fuzzing), the means of the
    night's scores per job and role (``scores``: simulation score, detection and fuzzing, each over the explanations
    with a defined one, and how many), new failures with reasons, spend, and the sessions that did it."""
    plan, db, store = _open(plan_path, config, db)
    with store:
        ledger = Ledger(store, plan.name)
        sessions = ledger.sessions()
        if since is None:
            last = datetime.fromisoformat(sessions[-1]["started_at"]) if sessions else datetime.now(timezone.utc)
            since = night_start(plan.budget.night_starts, last).isoformat()
        q = store.db.execute
        runs = "SELECT run_id FROM sweep_runs WHERE sweep = ?"
        explained = q("SELECT s.job, COUNT(*) FROM unit_runs u JOIN sweep_runs s ON s.run_id = u.run_id "
                      "AND s.sweep = ? WHERE u.status IN ('done', 'gave_up') AND u.finished_at >= ? GROUP BY s.job",
                      [plan.name, since]).fetchall()
        failures = [dict(zip(("job", "layer", "reason", "at"), r)) for r in q(
            "SELECT job, layer, reason, finished_at FROM sweep_attempts WHERE sweep = ? AND status = 'failed' "
            "AND finished_at >= ? ORDER BY id", [plan.name, since]).fetchall()]
        unit_failures = q(f"SELECT COUNT(*) FROM unit_runs WHERE status = 'failed' AND finished_at >= ? AND run_id "
                          f"IN ({runs})", [since, plan.name]).fetchone()[0]
        # best test score per unit explained tonight: before the night and now (any run, any explainer; controls,
        # the shuffled and empty explanations scored beside each unit, excluded)
        best = q(f"""
            WITH tonight AS (SELECT DISTINCT unit_id FROM unit_runs WHERE finished_at >= ? AND run_id IN ({runs}))
            SELECT e.layer, e.unit, e.kind,
                   MAX(CASE WHEN e.created_at < ? THEN e.score END) AS before, MAX(e.score) AS now,
                   lb.detection, lb.fuzzing
            FROM explanation_scores e JOIN tonight t ON t.unit_id = e.unit_id
            LEFT JOIN leaderboard lb ON lb.unit_id = e.unit_id
            WHERE e.role = 'explanation'
            GROUP BY e.unit_id ORDER BY e.layer, e.unit""", [since, plan.name, since]).fetchall()
        changed = [{"layer": r[0], "unit": r[1], "kind": r[2], "before": r[3], "now": r[4], "detection": r[5],
                    "fuzzing": r[6]} for r in best if r[4] is not None and (r[3] is None or r[4] > r[3])]
        # the night's explanations and controls per job: the means of the simulation score, detection and fuzzing
        # (test split; each over the ones defined, with how many that is)
        means = q("""
            SELECT s.job, e.role, COUNT(*), COUNT(e.score), AVG(e.score), COUNT(e.detection), AVG(e.detection),
                   COUNT(e.fuzzing), AVG(e.fuzzing)
            FROM explanation_scores e JOIN sweep_runs s ON s.run_id = e.run_id AND s.sweep = ?
            WHERE e.created_at >= ? GROUP BY s.job, e.role ORDER BY s.job, e.role DESC""", [plan.name, since])
        scores = [dict(zip(("job", "role", "explanations", "scored", "score_mean", "detected", "detection_mean",
                            "fuzzed", "fuzzing_mean"), r)) for r in means.fetchall()]
        return {
            "sweep": plan.name, "db": db, "since": since,
            "sessions": ledger.sessions(since=since),
            "units_explained": sum(n for _, n in explained), "units_explained_by_job": dict(explained),
            "best_scores_changed": len(changed), "new_best": sorted(changed, key=lambda c: -(c["now"] - (
                c["before"] if c["before"] is not None else -1)))[:10],
            "scores": scores, "new_failures": failures, "units_failed": unit_failures,
            "spend": ledger.spend(since=since), "spend_total": ledger.spend(),
        }
