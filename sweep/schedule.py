"""``autointerp sweep schedule PLAN``: the cron line, systemd user units and Slurm array script that start a sweep.

Every file uses absolute paths (cron and systemd start with almost no environment), runs in the plan's folder so
relative paths in the plan mean what they meant, and reads API keys from ``autointerp.env`` beside the plan
(``OPENAI_API_KEY=...``, mode 600) when it exists: keys are never written into the units or the crontab.
"""

from __future__ import annotations

import shlex
import shutil
import sys
from pathlib import Path

from autointerp.sweep.plan import load_plan


def _exe() -> str:
    found = shutil.which("autointerp")
    if found:
        return str(Path(found).resolve())
    return f"{shlex.quote(sys.executable)} -m autointerp.cli"


def cron_line(plan_path: str | Path, at: str = "22:00") -> str:
    plan = Path(plan_path).resolve()
    h, m = (int(x) for x in at.split(":")[:2])
    env = plan.parent / "autointerp.env"
    log = plan.parent / f"sweep-{load_plan(plan).name}.log"
    return (f"{m} {h} * * * cd {shlex.quote(str(plan.parent))} && {{ [ -f {shlex.quote(str(env))} ] && set -a && "
            f". {shlex.quote(str(env))} && set +a; }}; {_exe()} sweep run {shlex.quote(str(plan))} "
            f">> {shlex.quote(str(log))} 2>&1")


def systemd_units(plan_path: str | Path, at: str = "22:00") -> dict[str, str]:
    """{file name: text} of a user service and its timer (install in ~/.config/systemd/user/)."""
    plan = Path(plan_path).resolve()
    name = f"autointerp-sweep-{load_plan(plan).name}"
    service = f"""[Unit]
Description=autointerp sweep {plan.name}

[Service]
Type=exec
WorkingDirectory={plan.parent}
EnvironmentFile=-{plan.parent / "autointerp.env"}
ExecStart={_exe()} sweep run {plan}
# SIGTERM stops the sweep after the units in flight; every finished unit is kept
KillSignal=SIGTERM
TimeoutStopSec=300
"""
    timer = f"""[Unit]
Description=start autointerp sweep {plan.name} every night

[Timer]
OnCalendar=*-*-* {at}:00
Persistent=true

[Install]
WantedBy=timers.target
"""
    return {f"{name}.service": service, f"{name}.timer": timer}


def slurm_script(plan_path: str | Path, shards: int) -> str:
    """An sbatch array script: shard I of N per task, each into its own database, merged by the last step."""
    plan = Path(plan_path).resolve()
    name = load_plan(plan).name
    return f"""#!/bin/bash
#SBATCH --job-name=autointerp-{name}
#SBATCH --array=0-{shards - 1}
#SBATCH --gres=gpu:1
#SBATCH --time=10:00:00
#SBATCH --output=sweep-{name}-%a.log
# Each task does a disjoint, deterministic part of the plan into its own database; afterwards:
#   autointerp db merge {name}.db {name}-shard-*-of-{shards}.db
cd {shlex.quote(str(plan.parent))}
[ -f autointerp.env ] && set -a && . ./autointerp.env && set +a
exec {_exe()} sweep run {shlex.quote(str(plan))} --shard "$SLURM_ARRAY_TASK_ID/{shards}" \\
    --db "{name}-shard-$SLURM_ARRAY_TASK_ID-of-{shards}.db"
"""
