"""``autointerp sweep run PLAN``: do what the plan still needs, in priority order, until done, budget, stop time or
a signal; safe to start again at any time, and twice at once.

    >>> from autointerp.sweep import run_sweep
    >>> result = run_sweep("nightly.toml")          # or shard=(0, 4), ray="auto"
    >>> result.status, result.reason, result.units_done

How. The plan expands to items (job, layer), each an ordinary run of the pipeline (same run key, same resume). Items
that share a capture key (model, layer, unit space, corpus, tokens, window, ...) form a group: the group's capture
pass is done once and every job of the group explains from it, so comparing explainers never re-runs the subject.
Groups run in the order of their most urgent item (priority, then the order written). One lease per sweep (or per
shard) in the database keeps a second start from doing anything (it says who holds it and exits 0, or waits), and
every run keeps its own lease as ``autointerp run`` does. A (job, layer) that fails is recorded with its reason and
the sweep goes on; the next start retries it until ``max_attempts`` failures. SIGINT/SIGTERM stop the sweep after
the units in flight (during a capture at once: nothing of it is saved anyway); a second signal stops at once.
"""

from __future__ import annotations

import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from autointerp.config import load_config
from autointerp.db import open_db
from autointerp.db.leases import DEFAULT_TTL_S, LeaseHeld, acquire_lease
from autointerp.db.values import utc_iso
from autointerp.errors import UsageError
from autointerp.outcomes import StopReason, SweepState
from autointerp.pipeline.inputs import run_units
from autointerp.pipeline.session import OpenOptions, RunSession
from autointerp.subject.model import Subject, load_subject
from autointerp.subject.units import parse_layers
from autointerp.sweep.ledger import Ledger, deadline, night_start
from autointerp.sweep.plan import Job, Plan, load_plan, resolve_jobs

Event = Callable[[str], None]


@dataclass
class SweepResult:
    sweep: str
    db: str
    status: SweepState  # done | stopped (with stop_reason) | held | failed (autointerp.outcomes)
    reason: str  # in words
    session_id: str | None = None
    units_done: int = 0  # units finished by this session
    captures: int = 0  # capture passes this session made
    items_done: int = 0  # (job, layer) items complete after this session's work on them
    failures: list[dict[str, Any]] = field(default_factory=list)
    holder: str | None = None  # who holds the lease, when status is 'held'
    wall_s: float = 0.0
    stop_reason: StopReason | None = None  # why a stopped sweep stopped: budget, interrupted, deadline, lease


@dataclass
class _Item:
    job: Job
    layer: int
    units_total: int


class _Stop:
    """Why to stop starting units: a signal, the stop time, the budget, or the sweep's lease lost; as the run
    session's stop check, (stop reason, words) or None."""

    def __init__(self, until: datetime | None, lease):
        self.until, self.lease = until, lease
        self.reason_set: tuple[StopReason, str] | None = None
        self.in_capture = False

    def set(self, reason: StopReason, words: str) -> None:
        self.reason_set = self.reason_set or (reason, words)

    def __call__(self) -> tuple[StopReason, str] | None:
        if self.reason_set is None and self.until is not None and datetime.now(timezone.utc) >= self.until:
            self.set("deadline", f"stop time reached ({self.until.astimezone():%H:%M:%S} local)")
        if self.reason_set is None and self.lease.lost:
            self.set("lease", "lost the sweep's lease to another process")
        return self.reason_set

    @contextmanager
    def signals(self) -> Iterator[None]:
        """SIGINT/SIGTERM: stop after the units in flight (during a capture, or a second signal: at once)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum, frame):
            first = self.reason_set is None or self.reason_set[0] != "interrupted"
            self.set("interrupted", f"signal {signal.Signals(signum).name}")
            if self.in_capture or not first:
                raise KeyboardInterrupt

        old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for s, h in old.items():
                signal.signal(s, h)


def resolve_plan(plan_path: str | Path, config: str | None = None, db: str | None = None
                 ) -> tuple[Plan, list[Job], str]:
    """The plan, its jobs resolved over the configuration, and the one database they all write to. ``db`` (``--db``)
    replaces the configuration's; a plan that names one itself refuses it, and jobs that name different ones are
    refused: ``UsageError``. ``sweep run``, ``status`` and ``report`` all read a plan through here."""
    plan = load_plan(plan_path)
    base = load_config(config).model_dump(exclude_unset=True)
    if db is not None:
        if "db" in plan.defaults or any("db" in j.settings for j in plan.jobs.values()):
            raise UsageError(f"--db given but plan {plan_path} sets db itself; remove db from the plan to choose "
                             "it here")
        base["db"] = db
    jobs = resolve_jobs(plan, base, where=f"plan {plan_path}")
    dbs = {j.cfg.db for j in jobs}
    if len(dbs) > 1:
        raise UsageError(f"plan {plan_path}: every job of a sweep writes to one database, not {sorted(dbs)}; set db "
                         "in [defaults] only")
    return plan, jobs, str(dbs.pop())


def run_sweep(plan_path: str | Path, *, config: str | None = None, shard: tuple[int, int] | None = None,
              wait: bool = False, ray: str | None = None, on_event: Event | None = None, command: str = "",
              db: str | None = None) -> SweepResult:
    """Run the plan's remaining work; see the module docstring. ``ray``: 'auto', 'local' or a cluster address.
    ``db``: the results file instead of the configuration's (a plan that names one itself refuses it)."""
    t0 = time.time()
    lease_ttl_s = DEFAULT_TTL_S  # the sweep's lease and every run's: expired after this long without a heartbeat
    plan, jobs, db = resolve_plan(plan_path, config, db)
    captor = _ray_captor(ray) if ray else None  # fails early when ray is missing or unreachable
    shard_s = None if shard is None else f"{shard[0]}/{shard[1]}"
    store = open_db(db)
    try:
        try:
            lease = acquire_lease(db, f"sweep:{plan.name}" + (f"#shard {shard_s}" if shard_s else ""),
                                  ttl_s=lease_ttl_s, wait=wait,
                                  on_wait=lambda h: on_event and on_event(f"waiting: sweep held by {h.describe()}"))
        except LeaseHeld as e:
            return SweepResult(plan.name, db, "held", "another process is running this sweep", holder=e.info.describe())
        with lease:
            ledger = Ledger(store, plan.name)
            ledger.close_dead_sessions(shard_s)
            sid = ledger.start_session(plan.plan_hash(), shard_s, session_id=lease.info.holder)
            result = SweepResult(plan.name, db, "stopped", "", session_id=sid)
            stop = _Stop(deadline(plan.budget.until), lease)
            sweep = _Sweep(plan, ledger, sid, stop, result, on_event or (lambda m: None), command, lease_ttl_s)
            try:
                with stop.signals():
                    sweep.run(jobs, shard, captor)
                status, why, reason = sweep.outcome()
            except KeyboardInterrupt:
                status, (why, reason) = "stopped", stop.reason_set or ("interrupted", "interrupted")
            except BaseException as e:
                ledger.finish_session(sid, "failed", _one_line(e), result.units_done)
                raise
            result.status, result.stop_reason, result.reason = status, why, reason
            ledger.finish_session(sid, status, reason, result.units_done, why)
    finally:
        store.close()
    result.wall_s = time.time() - t0
    return result


class _Sweep:
    def __init__(self, plan: Plan, ledger: Ledger, sid: str, stop: _Stop, result: SweepResult, say: Event,
                 command: str, lease_ttl_s: float):
        self.plan, self.ledger, self.sid, self.stop, self.result, self.say = plan, ledger, sid, stop, result, say
        self.command, self.lease_ttl_s = command, lease_ttl_s
        self.plan_hash = plan.plan_hash()
        self.subjects: dict[tuple, Subject] = {}
        self.left = 0  # items this session could not finish (held elsewhere, failed)

    # -- expansion ---------------------------------------------------------------------------------------------

    def subject(self, job: Job) -> Subject:
        key = (job.cfg.model, job.cfg.device, job.cfg.dtype)
        if key not in self.subjects:
            self.subjects.clear()  # one model in memory at a time
            self.subjects[key] = load_subject(*key)
        return self.subjects[key]

    def expand(self, jobs: list[Job]) -> list[_Item]:
        items: list[_Item] = []
        for job in jobs:
            if self.gave_up(job.name, None):
                continue
            try:
                subject = self.subject(job)
                for layer in parse_layers(job.layers, subject.n_layers):
                    items.append(_Item(job, layer, len(run_units(job.run_config(layer), subject, guard=False)[1])))
            except Exception as e:
                self.fail(job.name, None, None, e, utc_iso())
        self.ledger.set_items([(i.job.name, i.layer, i.units_total, i.job.priority) for i in items])
        return items

    def groups(self, items: list[_Item], shard: tuple[int, int] | None) -> list[list[_Item]]:
        """Items by capture key, groups in order of their first item; a shard takes every N-th group."""
        by_key: dict[tuple, list[_Item]] = {}
        for item in sorted(items, key=lambda i: (i.job.order, i.layer)):
            by_key.setdefault(item.job.capture_key(item.layer), []).append(item)
        groups = list(by_key.values())
        return groups if shard is None else [g for k, g in enumerate(groups) if k % shard[1] == shard[0]]

    # -- the work ----------------------------------------------------------------------------------------------

    def run(self, jobs: list[Job], shard: tuple[int, int] | None, captor) -> None:
        groups = self.groups(self.expand(jobs), shard)
        window = captor.window if captor else 1
        pending: deque = deque()
        todo = iter(groups)
        while True:
            while len(pending) < window and not self.stop():
                group = next(todo, None)
                if group is None:
                    break
                opened = self.open_group(group)
                if opened:
                    pending.append((opened, captor.submit(opened[0][1]) if captor else None))
            if not pending:
                break
            opened, handle = pending.popleft()
            self.explain_group(opened, handle, captor)
        for opened, _ in pending:  # stopped with captures in flight: their runs keep every finished unit
            for _, r, _ in opened:
                self.end(r, stop=self.stop())

    def open_group(self, group: list[_Item]) -> list[tuple[_Item, RunSession, str]]:
        opened = []
        for item in group:
            if self.stop() or self.gave_up(item.job.name, item.layer):
                continue
            started = utc_iso()
            try:
                r = RunSession.open(item.job.run_config(item.layer), OpenOptions(
                    self.command, subject=self.subject(item.job), lease_ttl_s=self.lease_ttl_s))
            except LeaseHeld as e:
                same = [r for _, r, _ in opened if r.lease is not None and r.lease.name == e.info.name]
                if same:  # two jobs that differ in nothing a run's results depend on: one run serves both
                    self.ledger.link_run(item.job.name, item.layer, same[0].run_id, same[0].summary.units_total)
                    continue
                self.left += 1
                self.say(f"{item.job.name} layer {item.layer}: skipped, its run is held by {e.info.describe()}")
                continue
            except Exception as e:
                self.fail(item.job.name, item.layer, None, e, started)
                continue
            self.ledger.link_run(item.job.name, item.layer, r.run_id, r.summary.units_total)
            if not r.todo:
                self.end(r)
                continue
            opened.append((item, r, started))
        return opened

    def explain_group(self, opened: list[tuple[_Item, RunSession, str]], handle, captor) -> None:
        first = opened[0][1]
        try:
            self.stop.in_capture = True
            self.say(f"capture: {first.cfg.model} layer {first.cfg.layer} for "
                     f"{', '.join(i.job.name for i, _, _ in opened)}")
            cap = captor.get(handle, first) if captor else first.capture()
            self.result.captures += 1
        except KeyboardInterrupt as e:
            for _, r, _ in opened:
                self.end(r, e)
            raise
        except Exception as e:
            for item, r, started in opened:
                self.end(r, e)
                self.fail(item.job.name, item.layer, r.run_id, e, started)
            return
        finally:
            self.stop.in_capture = False
        for item, r, started in opened:
            self.explain_item(item, r, cap, started)

    def explain_item(self, item: _Item, r: RunSession, cap, started: str) -> None:
        name = f"{item.job.name} layer {item.layer}"
        if self.stop() or not self.within_budget(r):
            self.end(r, stop=self.stop())
            return
        r.use_capture(cap)
        try:
            r.explain_and_score(cap, stop=self.stop)
        except KeyboardInterrupt as e:
            self.end(r, e)
            raise
        except Exception as e:
            self.end(r, e)
            self.fail(item.job.name, item.layer, r.run_id, e, started)
            return
        n = r.summary.units_this_session
        self.result.units_done += n
        state = self.end(r)
        stopped = r.summary.stopped
        if r.summary.stop_reason == "budget":
            self.stop.set("budget", f"budget: {stopped}")
        counts = self.ledger.item_counts(item.job.name, item.layer)
        if state == "stopped":
            self.ledger.attempt(self.sid, item.job.name, item.layer, r.run_id, "stopped", stopped, n, started)
        elif counts["failed"]:
            reason = self.ledger.first_unit_failure(r.run_id)
            self.fail(item.job.name, item.layer, r.run_id, f"{counts['failed']} units failed, e.g.: {reason}",
                      started, units_done=n)
        else:
            self.result.items_done += 1
            self.ledger.attempt(self.sid, item.job.name, item.layer, r.run_id, "done", None, n, started)
        self.say(f"{name}: {n} units" + (f"; stopped: {stopped}" if stopped else ""))

    # -- bookkeeping -------------------------------------------------------------------------------------------

    def within_budget(self, r: RunSession) -> bool:
        """Give the run's LLM budget what the sweep has left (total and tonight); False when nothing is left."""
        b = self.plan.budget
        total = self.ledger.spend()
        night = self.ledger.spend(since=night_start(b.night_starts).isoformat())
        usd = [x for x in (r.cfg.max_usd, _left(b.max_usd, total["cost_usd"]), _left(b.per_night_usd,
               night["cost_usd"])) if x is not None]
        calls = [x for x in (r.cfg.max_calls, _left(b.max_calls, total["calls"]), _left(b.per_night_calls,
                 night["calls"])) if x is not None]
        if (usd and min(usd) <= 0) or (calls and min(calls) <= 0):
            self.stop.set("budget", f"budget: spent ${total['cost_usd']:.4f} in {total['calls']} calls "
                                    f"(tonight ${night['cost_usd']:.4f} in {night['calls']})")
            return False
        r.limit_budget(min(usd) if usd else None, int(min(calls)) if calls else None)
        return True

    def gave_up(self, job: str, layer: int | None) -> bool:
        return self.ledger.failed_attempts(job, layer, self.plan_hash) >= self.plan.max_attempts

    def fail(self, job: str, layer: int | None, run_id: str | None, e: BaseException | str, started: str,
             units_done: int = 0) -> None:
        reason = e if isinstance(e, str) else _one_line(e)
        self.left += 1
        self.result.failures.append({"job": job, "layer": layer, "reason": reason})
        self.ledger.attempt(self.sid, job, layer, run_id, "failed", reason, units_done, started)
        self.say(f"{job}" + (f" layer {layer}" if layer is not None else "") + f": failed: {reason}")

    def end(self, r: RunSession, error: BaseException | None = None, stop: tuple[StopReason, str] | None = None
            ) -> str:
        """End a run's session: the session decides and writes the run's state (``RunSession.finish``)."""
        try:
            return r.finish(error, stop)
        finally:
            r.close()

    def outcome(self) -> tuple[SweepState, StopReason | None, str]:
        """The session's state, stop reason and reason in words."""
        reason = self.stop()
        if reason:
            return "stopped", reason[0], reason[1]
        if self.left:
            return "stopped", None, f"{self.left} items not finished (failed or held elsewhere); the next start retries"
        return "done", None, "every item of the plan is done"


def _left(cap: float | None, spent: float) -> float | None:
    return None if cap is None else cap - spent


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return f"{type(e).__name__}: {text}"[:300]


def _ray_captor(address: str):
    from autointerp.sweep.ray_backend import RayCaptor

    return RayCaptor.connect(address)
