"""``autointerp run``: corpus -> subject capture -> records -> explainer -> simulator -> score -> db, for one layer.

    >>> from autointerp.config import load_config
    >>> from autointerp.pipeline import run
    >>> summary = run(load_config(overrides={"layer": 13, "units": "0:8"}))
    >>> summary.mean_score, summary.db

A run is identified by its *run key* (``Config.run_key``): running the same command again finds the unfinished run
with that key and only does the units it has not finished (each unit is committed on its own), so an interrupted
run resumes. The steps, in order: ``open_run`` (components, subject, unit space, the run row), then
``capture_layer`` (one pass over the corpus), then ``explain_units`` (every unit left, ``concurrency`` at a time),
then, with ``cfg.controls``, ``control_units``: every explained unit of the run without controls yet is scored with
a shuffled and an empty explanation under the same simulator (``autointerp.scoring.controls``), and the summary
gets their means (``RunSummary.controls``).

One process per run: ``open_run`` takes the lease ``run:<run key>`` in the database (``autointerp.db.leases``) and
``run`` releases it at the end, so a second process on the same run either waits for it (``wait=True``) or gets
``LeaseHeld`` (the CLI says who holds it and exits 0) and never does a unit twice. A session killed with SIGKILL
leaves its lease behind; the next session takes it over and adds the dead session's time (acquisition to last
heartbeat) to the run's ``wall_s``, which sums every session.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from autointerp.agent.base import Explainer
from autointerp.config import Config
from autointerp.corpus import Corpus, open_corpus
from autointerp.db import Store, open_db
from autointerp.db.leases import DEFAULT_TTL_S, Lease, LeaseInfo, acquire_lease
from autointerp.errors import UsageError
from autointerp.llm.client import BudgetExceeded
from autointerp.pipeline.components import (
    LLMContext,
    check_corpus,
    check_window,
    existing_db,
    make_explainer,
    make_simulator,
    package_versions,
    unit_space,
)
from autointerp.pipeline.measured import compare, estimate_run
from autointerp.scoring.controls import score_controls, shuffled_partners
from autointerp.scoring.scored import process_unit
from autointerp.scoring.simulator import Simulator
from autointerp.subject.capture import CaptureConfig, LayerCapture, capture
from autointerp.subject.model import Subject, load_subject
from autointerp.subject.unit_tools import ExplorationPool, SubjectUnitTools
from autointerp.subject.units import UnitSpace, parse_units

ProgressStart = Callable[[int | None], Callable[[int], None]]


@dataclass
class UnitOutcome:
    unit: int
    explanation: str
    status: str
    score: float | None


@dataclass
class RunSummary:
    run_id: str
    db: str
    layer: int
    explainer: str
    simulator: str
    baseline: bool  # the explainer is the offline baseline
    units_total: int
    units_skipped: int  # already finished by an earlier session of the same run (same key)
    outcomes: list[UnitOutcome] = field(default_factory=list)  # every finished unit, earlier sessions included
    n_tokens: int = 0
    capture_s: float = 0.0  # time of the capture pass in this session (0 when nothing was left to capture)
    explain_s: float = 0.0  # time of the explain + score phase in this session (every unit's LLM work)
    wall_s: float = 0.0
    interrupted: bool = False
    stopped: str | None = None  # why the run stopped before finishing every unit (a budget), if it did
    estimate: dict[str, Any] | None = None  # expected LLM usage of this session, made before spending
    llm_usage: dict[str, Any] | None = None  # what this session's LLM calls used: calls, tokens, cost, per unit
    unit_kind: str = "neuron"  # "neuron", or the dictionary's features: family:hash8 (subject.units)
    controls: list[dict[str, Any]] = field(default_factory=list)  # per control: units, scored, mean (the floor)

    @property
    def estimate_vs_actual(self) -> dict[str, Any] | None:
        """The estimate, scaled to the units this session finished, against what they used (``measured.compare``)."""
        return compare(self.estimate, self.llm_usage, self.units_this_session)

    @property
    def units_this_session(self) -> int:
        return len(self.outcomes) - self.units_skipped

    @property
    def scores(self) -> list[float]:
        return [o.score for o in self.outcomes if o.score is not None]

    @property
    def mean_score(self) -> float | None:
        return statistics.fmean(self.scores) if self.scores else None

    @property
    def median_score(self) -> float | None:
        return statistics.median(self.scores) if self.scores else None


@dataclass
class OpenRun:
    """Everything a run needs once it has a row in the DB: what ``open_run`` builds and the later steps use."""

    cfg: Config
    store: Store
    llm: LLMContext
    explainer: Explainer
    simulator: Simulator
    corpus: Corpus
    subject: Subject
    space: UnitSpace
    model_hash: str
    run_id: str
    todo: list[int]
    summary: RunSummary
    lease: Lease | None = None  # held from open_run until close_run (or run's end)

    def close(self) -> None:
        """Release the run's lease and close the store (idempotent)."""
        if self.lease is not None:
            self.lease.release()
        self.store.close()


def open_run(cfg: Config, command: str = "", fresh: bool = False, *, wait: bool = False,
             on_wait: Callable[[LeaseInfo], None] | None = None, subject: Subject | None = None,
             lease_ttl_s: float = DEFAULT_TTL_S) -> OpenRun:
    """Check every input, take the run's lease, then find the run with this key (or start one): its units left and
    a summary so far. ``subject``: an already loaded ``cfg.model`` (a sweep shares one). Raises ``LeaseHeld`` when
    another live process has the run (unless ``wait``: then ``on_wait(holder)`` and wait for it)."""
    if cfg.layer is None:
        raise UsageError("no layer given; pass --layer N (0-based)")
    llm = LLMContext(cfg)
    explainer, simulator = make_explainer(cfg, llm), make_simulator(cfg, llm)  # unknown names, missing keys
    corpus = open_corpus(cfg.corpus, cfg.seed)
    store = existing_db(cfg.db)  # a corrupt, locked or newer file fails now; a new one is created once inputs are ok
    try:
        subject = subject or load_subject(cfg.model, cfg.device, cfg.dtype)
        subject.check_layer(cfg.layer)
        check_window(subject, cfg.window)
        space = unit_space(cfg, subject)
        units = parse_units(cfg.units, space.n_units(subject))
        check_corpus(corpus, subject, cfg.window)
        store = store or open_db(cfg.db)  # every input checked: the first write
        return _open_run(cfg, command, fresh, llm, explainer, simulator, corpus, store, wait, on_wait, subject,
                         space, units, lease_ttl_s)
    except BaseException:
        if store is not None:
            store.close()
        raise


def _open_run(cfg, command, fresh, llm, explainer, simulator, corpus, store, wait, on_wait, subject, space, units,
              lease_ttl_s) -> OpenRun:
    model_hash = subject.weights_hash()
    run_key = cfg.run_key(model_hash, explainer.config(), simulator.config(), space.identity())
    lease = acquire_lease(store.path, f"run:{run_key}", ttl_s=lease_ttl_s, wait=wait, on_wait=on_wait)
    try:
        return _resume_or_start(cfg, command, fresh, llm, explainer, simulator, corpus, store, subject, space, units,
                                model_hash, run_key, lease)
    except BaseException:
        lease.release()
        raise


def _resume_or_start(cfg, command, fresh, llm, explainer, simulator, corpus, store, subject, space, units,
                     model_hash, run_key, lease) -> OpenRun:
    run_id = None if fresh else store.find_resumable_run(run_key)
    if run_id is not None and lease.previous is not None:  # a session died holding the run: count its time
        store.add_run_wall(run_id, max(lease.previous.seconds_held(), 0.0))
    if run_id is None:
        run_id = store.start_run(
            run_key=run_key, command=command, config=cfg.snapshot(), versions=package_versions(), model=cfg.model,
            model_hash=model_hash, layer=cfg.layer, unit_kind=space.kind, corpus=cfg.corpus, seed=cfg.seed,
            explainer=explainer.name, simulator=simulator.name,
        )
    else:
        store.resume_run(run_id)
    llm.store, llm.run_id = store, run_id
    if hasattr(explainer, "run_id"):
        explainer.run_id = run_id  # names the agent's checkpoint threads
    done = store.done_units(run_id)
    todo = [u for u in units if (space.kind, cfg.layer, u) not in done]
    summary = RunSummary(run_id, cfg.db, cfg.layer, explainer.name, simulator.name, explainer.is_baseline,
                         len(units), len(units) - len(todo), unit_kind=space.kind)
    wanted = set(units)
    summary.outcomes = [UnitOutcome(r["unit"], r["explanation"], r["status"], r["score"])
                        for r in store.run_outcomes(run_id) if r["unit"] in wanted and r["kind"] == space.kind]
    return OpenRun(cfg, store, llm, explainer, simulator, corpus, subject, space, model_hash, run_id, todo, summary,
                   lease)


def capture_config(cfg: Config) -> CaptureConfig:
    """The capture settings of a run's config (everything the capture of ``cfg.layer`` depends on)."""
    return CaptureConfig(layers=[cfg.layer], window=cfg.window, top_k=cfg.top_k, n_random=cfg.n_random,
                         batch_size=cfg.batch_size, max_tokens=cfg.tokens, threshold=cfg.threshold,
                         firing=cfg.firing, seed=cfg.seed)


def capture_layer(r: OpenRun, on_capture_start: ProgressStart | None = None) -> LayerCapture:
    """One pass over the corpus: the layer's statistics and windows for every unit of the run's unit space."""
    cfg = r.cfg
    progress = on_capture_start(cfg.tokens) if on_capture_start else None
    t0 = time.time()
    cap = capture(r.subject, r.corpus, capture_config(cfg), progress, r.space)[cfg.layer]
    r.summary.capture_s = time.time() - t0
    use_capture(r, cap)
    return cap


def use_capture(r: OpenRun, cap: LayerCapture) -> None:
    """Record that the run's units come from ``cap`` (captured by this run, or shared with another of a sweep)."""
    r.summary.n_tokens = cap.n_tokens
    r.store.set_run_tokens(r.run_id, cap.n_tokens)


def explain_layer(r: OpenRun, cap: LayerCapture, on_unit: Callable[[UnitOutcome], None] | None = None,
                  stop: Callable[[], str | None] | None = None) -> None:
    """``explain_units`` to the end, timed into ``summary.explain_s``, with the LLM phase's collector settings."""
    t_explain = time.time()
    try:
        with _llm_phase_gc():
            asyncio.run(explain_units(r, cap, on_unit, stop))
    finally:
        r.summary.explain_s = time.time() - t_explain


def run(
    cfg: Config,
    command: str = "",
    on_capture_start: ProgressStart | None = None,
    on_unit: Callable[[UnitOutcome], None] | None = None,
    fresh: bool = False,
    on_estimate: Callable[[dict[str, Any]], None] | None = None,
    wait: bool = False,
    on_wait: Callable[[LeaseInfo], None] | None = None,
) -> RunSummary:
    """Run capture -> explain -> simulate -> score -> store for ``cfg.layer``; see the module docstring.

    ``on_capture_start(total_tokens_or_None)`` returns a per-batch progress callback; ``on_unit`` is called
    after each unit is committed. ``fresh`` starts a new run even when one with the same key exists.
    ``on_estimate`` receives the expected LLM usage of the units left, before any LLM call is made.
    Another live process on the same run: ``LeaseHeld``, or with ``wait`` ``on_wait(holder)`` and wait for it.
    """
    t0 = time.time()
    r = open_run(cfg, command, fresh, wait=wait, on_wait=on_wait)
    try:
        return _run_opened(r, t0, on_capture_start, on_unit, on_estimate)
    finally:
        r.close()


def _run_opened(r: OpenRun, t0: float, on_capture_start, on_unit, on_estimate) -> RunSummary:
    cfg, summary = r.cfg, r.summary
    if not r.todo:
        summary.n_tokens = r.store.run_tokens(r.run_id)
        summary.controls = r.store.run_controls(r.run_id)
        summary.wall_s = time.time() - t0
        r.store.finish_run(r.run_id, "complete", summary.wall_s)
        return summary
    try:
        cap = capture_layer(r, on_capture_start)
        summary.estimate = estimate_run(r.store, cap.unit_record(r.todo[0], r.space.kind), r.explainer, r.simulator,
                                        len(r.todo), cfg.tiktoken_file, controls=cfg.controls)
        if summary.estimate is not None and on_estimate:
            on_estimate(summary.estimate)
        explain_layer(r, cap, on_unit)
    except KeyboardInterrupt:
        summary.interrupted = True
        r.store.finish_run(r.run_id, "interrupted", time.time() - t0)
        raise
    except BaseException:
        r.store.finish_run(r.run_id, "failed", time.time() - t0)  # finished units stay; the same command resumes
        raise
    summary.wall_s = time.time() - t0
    summary.controls = r.store.run_controls(r.run_id)
    r.store.finish_run(r.run_id, "interrupted" if summary.stopped or len(r.todo) > summary.units_this_session
                       else "complete", summary.wall_s)
    return summary


@contextlib.contextmanager
def _llm_phase_gc() -> Iterator[None]:
    """Garbage collection tuned for the explain + score phase, restored after.

    Everything alive when the phase starts (model, capture, imported modules) lives until the run ends, so it is
    frozen out of the collector's sight; and the phase allocates many short-lived objects (every LLM reply is parsed
    JSON) and few cycles, so the youngest generation is collected 20x less often. Measured with
    ``benchmarks/bench_llm.py`` at 16 units in flight: without the freeze, full collections walking the capture took
    a third of the phase's CPU; the threshold saves another 9% of its wall time."""
    thresholds = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(max(thresholds[0], 14_000), *thresholds[1:])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


async def explain_units(r: OpenRun, cap: LayerCapture, on_unit: Callable[[UnitOutcome], None] | None = None,
                        stop: Callable[[], str | None] | None = None) -> None:
    """Explain, simulate, score and commit every unit left, ``cfg.concurrency`` at a time; a budget stops the run
    (``summary.stopped``) and leaves the unit in hand to the next session. So does ``stop()`` returning a reason
    (checked before each unit: a sweep's stop time or signal), and so does losing the run's lease."""
    summary, kind = r.summary, r.space.kind
    sem = asyncio.Semaphore(r.cfg.concurrency)
    profiles = cap.position_profile()  # [W, U], once for the run
    pool = (ExplorationPool(r.subject, r.corpus, r.cfg.layer, r.cfg.window, r.cfg.seed, space=r.space)
            if getattr(r.explainer, "uses_tools", False) else None)

    async def one(unit: int) -> None:
        async with sem:
            if not summary.stopped and r.lease is not None and r.lease.lost:
                summary.stopped = f"lost the run's lease to another process ({r.lease.name})"
            if not summary.stopped and stop is not None:
                summary.stopped = stop()
            if summary.stopped:
                return
            record = cap.unit_record(unit, kind)
            # the tools get the FULL record, so they know which windows to keep out of the agent's reach
            tools = SubjectUnitTools(r.subject, cap, record, pool) if pool is not None else None
            try:
                scored = await process_unit(record, r.explainer, r.simulator, tools=tools)
            except BudgetExceeded as e:  # this unit is not saved: the next run does it
                summary.stopped = str(e)
                return
            status = r.store.save_unit_result(r.run_id, record, r.model_hash, _stats_extra(cap, profiles, unit),
                                              [scored])
            outcome = UnitOutcome(unit, scored.explanation.text, status, scored.test.score if scored.test else None)
            summary.outcomes.append(outcome)
            if on_unit:
                on_unit(outcome)

    try:
        await asyncio.gather(*(one(u) for u in r.todo))
        if r.cfg.controls and not summary.stopped:
            await control_units(r, cap, sem)
    finally:
        summary.llm_usage = r.llm.usage(max(summary.units_this_session, 1))
        if hasattr(r.explainer, "aclose"):
            await r.explainer.aclose()
        await r.llm.aclose()


async def control_units(r: OpenRun, cap: LayerCapture, sem: asyncio.Semaphore) -> None:
    """Score every explained unit of the run that has no controls yet with a shuffled and an empty explanation
    (``autointerp.scoring.controls``); the shuffled texts are drawn from every explained unit of the run, earlier
    sessions included. A budget stops it like the units (``summary.stopped``)."""
    summary, kind = r.summary, r.space.kind
    texts = {o["unit"]: o["explanation"] for o in r.store.run_outcomes(r.run_id)
             if o["kind"] == kind and o["status"] in ("done", "gave_up") and o["explanation"]}
    live = [u for u in texts if not cap.stats(u).dead]
    partners = shuffled_partners(live, r.cfg.seed)
    done = r.store.controlled_units(r.run_id)
    todo = [u for u in sorted(live) if (kind, r.cfg.layer, u) not in done]

    async def one(unit: int) -> None:
        async with sem:
            if summary.stopped:
                return
            record = cap.unit_record(unit, kind)
            partner = partners.get(unit)
            try:
                controls = await score_controls(record, r.simulator, texts.get(partner), partner,
                                                explainer=r.explainer.name, seed=r.cfg.seed)
            except BudgetExceeded as e:
                summary.stopped = str(e)
                return
            r.store.save_controls(r.run_id, record, r.model_hash, controls)

    await asyncio.gather(*(one(u) for u in todo))


def _stats_extra(cap: LayerCapture, profiles: Any, unit: int) -> dict[str, Any]:
    """Per-unit facts beyond UnitStats that later analyses and the unit card use (``profiles``:
    ``cap.position_profile()``)."""
    profile = profiles[:, unit].tolist()
    return {"position_firing_rate": [round(f, 5) for f in profile], "n_windows": cap.n_windows,
            "firing_rule": cap.firing_rule, "bottom_windows": cap.bottom_windows(unit)}
