"""Scheduled overnight sweeps: a plan file, one idempotent command, budgets across nights, a lease, shards, Ray.

    autointerp sweep run nightly.toml             # does what is left; safe from cron, twice at once, after a kill
    autointerp sweep status nightly.toml --format json
    autointerp sweep report nightly.toml          # what the last night changed and spent

- ``plan.py``: the plan file (TOML, validated by pydantic) and its jobs resolved against the configuration;
- ``engine.py``: ``run_sweep``, the work: captures shared by every job that needs them, budget, stop time, signals;
- ``ledger.py``: the sweep's rows in the results database (items, runs, attempts, sessions) and its spend;
- ``status.py``: ``sweep_status`` and ``sweep_report``, read from the database only;
- ``schedule.py``: cron, systemd and Slurm files; ``ray_backend.py``: capture passes as Ray tasks.
"""

from autointerp.sweep.engine import SweepResult, run_sweep
from autointerp.sweep.plan import Plan, load_plan, parse_shard, resolve_jobs
from autointerp.sweep.status import sweep_report, sweep_status

__all__ = ["Plan", "SweepResult", "load_plan", "parse_shard", "resolve_jobs", "run_sweep", "sweep_report",
           "sweep_status"]
