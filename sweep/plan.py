"""The sweep plan: a TOML file saying, once, what should be explained every night, and within what budget.

    name = "nightly"                 # optional; default: the file's stem. Names the sweep in the database.
    max_attempts = 3                 # a (job, layer) that fails this many times is left alone (status says why)

    [defaults]                       # any `autointerp run` setting, the same names as in autointerp.toml
    model = "bundled"
    tokens = 20000
    db = "nightly.db"

    [budget]
    max_usd = 20.0                   # across every night of the sweep
    max_calls = 100000
    per_night_usd = 2.0              # and per night (a night starts at night_starts, local time)
    until = "07:00"                  # stop starting units at this local time (HH:MM or HH:MM:SS)

    [jobs.mlp-baseline]
    layers = "0:4"                   # 13, "0:16", "3,7" or "all"
    units = "0:64"

    [jobs.mlp-gpt]
    layers = "0:4"
    units = "0:64"
    explainer = "gpt"                # a profile of autointerp.toml's [models.NAME] (or [defaults.models.NAME])
    priority = 2                     # lower runs first; ties in the order written

Settings apply in this order, later ones win: autointerp.toml and AUTOINTERP_* (as for ``run``), ``[defaults]``,
then the job's table. Errors name the key: ``plan nightly.toml: jobs.mlp-gpt.tokens: ...``.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from autointerp.config import Config
from autointerp.errors import UsageError

PER_RUN_ONLY = ("layer",)  # set by the job's `layers`, never by defaults or a job
TIME_OF_DAY = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)(?::([0-5]\d))?$")


class BudgetPlan(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    max_usd: float | None = Field(None, ge=0, description="US dollars of LLM calls across every night.")
    max_calls: int | None = Field(None, ge=0, description="LLM calls across every night.")
    per_night_usd: float | None = Field(None, ge=0, description="US dollars of LLM calls per night.")
    per_night_calls: int | None = Field(None, ge=0, description="LLM calls per night.")
    until: str | None = Field(None, description="Local time (HH:MM or HH:MM:SS) after which no unit is started.")
    night_starts: str = Field("12:00", description="Local time at which a night begins, for per-night caps and "
                                                   "`sweep report`.")

    @field_validator("until", "night_starts")
    @classmethod
    def _clock(cls, v: str | None) -> str | None:
        if v is not None and not TIME_OF_DAY.match(v):
            raise ValueError(f"{v!r} is not a time of day; write it as HH:MM or HH:MM:SS, e.g. \"07:00\"")
        return v


class JobPlan(BaseModel):
    """A job: which layers, and the run settings that differ from ``[defaults]`` (kept in ``settings``)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    layers: str = Field(description="Layers: N, N:M, N,M or all.")
    priority: int = Field(0, description="Lower runs first; ties run in the order written.")

    @field_validator("layers", mode="before")
    @classmethod
    def _layers(cls, v: Any) -> str:
        if isinstance(v, bool) or not isinstance(v, int | str | list):
            raise ValueError("layers must be a layer number, a string such as \"0:16\" or \"all\", or a list")
        return ",".join(str(x) for x in v) if isinstance(v, list) else str(v)

    @property
    def settings(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class Plan(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="The sweep's name in the database.")
    max_attempts: int = Field(3, ge=1, description="Failed attempts after which a (job, layer) is left alone.")
    defaults: dict[str, Any] = Field(default_factory=dict, description="Run settings shared by every job.")
    budget: BudgetPlan = Field(default_factory=BudgetPlan)
    jobs: dict[str, JobPlan] = Field(description="[jobs.NAME] tables.")

    def plan_hash(self) -> str:
        return hashlib.sha256(json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()[:16]

    def ordered_jobs(self) -> list[tuple[str, JobPlan]]:
        """Jobs by priority, ties in the order written."""
        items = list(self.jobs.items())
        return sorted(items, key=lambda kv: (kv[1].priority, items.index(kv)))


@dataclass(frozen=True)
class Job:
    """One job resolved against the configuration: its name, layer spec, priority and ``Config`` (``layer`` None)."""

    name: str
    layers: str
    priority: int
    order: int  # position in priority order
    cfg: Config

    def capture_key(self, layer: int) -> tuple:
        """What the capture of this job's layer depends on: jobs with equal keys share one capture pass."""
        c = self.cfg
        return (c.model, c.device, c.dtype, c.dictionary, layer, c.corpus, c.tokens, c.window, c.top_k, c.n_random,
                c.threshold, c.firing, c.seed, c.batch_size)

    def run_config(self, layer: int) -> Config:
        return self.cfg.model_copy(update={"layer": layer})


def load_plan(path: str | Path) -> Plan:
    """Read and validate a plan file; every problem is a one-line ``UsageError`` naming the key."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"plan {path} not found; pass the path of a sweep plan (TOML), see docs/sweeps.md")
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise UsageError(f"plan {path} is not valid TOML ({e}); fix it")
    data.setdefault("name", path.stem)
    try:
        plan = Plan(**data)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "plan"
        msg = "unknown key; see docs/sweeps.md for the plan's keys" if err["type"] == "extra_forbidden" else err["msg"]
        raise UsageError(f"plan {path}: {where}: {msg}")
    if not plan.jobs:
        raise UsageError(f"plan {path}: jobs: no job; add at least one [jobs.NAME] table with layers")
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", plan.name):
        raise UsageError(f"plan {path}: name: {plan.name!r} may use only letters, digits, '_', '.' and '-'")
    return plan


def resolve_jobs(plan: Plan, base: dict[str, Any], where: str = "plan") -> list[Job]:
    """Each job's ``Config``: ``base`` (autointerp.toml and env, as a dict), then ``[defaults]``, then the job's
    settings. Unknown or bad settings are ``UsageError``s naming ``defaults.KEY`` or ``jobs.NAME.KEY``."""
    known = set(Config.model_fields) - set(PER_RUN_ONLY)
    _check_keys(plan.defaults, known, f"{where}: defaults")
    jobs = []
    for order, (name, job) in enumerate(plan.ordered_jobs()):
        _check_keys(job.settings, known, f"{where}: jobs.{name}")
        merged = {**base, **plan.defaults, **job.settings}
        if "models" in plan.defaults or "models" in job.settings:
            merged["models"] = {**base.get("models", {}), **plan.defaults.get("models", {}),
                                **job.settings.get("models", {})}
        merged.pop("layer", None)
        try:
            cfg = Config(**merged)
        except ValidationError as e:
            err = e.errors()[0]
            key = ".".join(str(p) for p in err["loc"])
            src = f"jobs.{name}" if err["loc"] and err["loc"][0] in job.settings else "defaults"
            raise UsageError(f"{where}: {src}.{key}: {err['msg']}")
        jobs.append(Job(name, job.layers, job.priority, order, cfg))
    return jobs


def parse_shard(spec: str | None) -> tuple[int, int] | None:
    """``"I/N"`` -> (I, N) with 0 <= I < N; None stays None."""
    if spec is None:
        return None
    m = re.fullmatch(r"(\d+)/(\d+)", spec.strip())
    if not m or int(m[2]) < 1 or int(m[1]) >= int(m[2]):
        raise UsageError(f"--shard {spec!r} is not valid; use I/N with 0 <= I < N, e.g. --shard 0/4")
    return int(m[1]), int(m[2])


def _check_keys(settings: dict[str, Any], known: set[str], where: str) -> None:
    for key in settings:
        if key in PER_RUN_ONLY:
            raise UsageError(f"{where}.{key}: set layers in a job (layers = \"13\"), not layer")
        if key not in known:
            raise UsageError(f"{where}.{key}: unknown setting; settings are those of autointerp.toml: "
                             f"{', '.join(sorted(known))}")
