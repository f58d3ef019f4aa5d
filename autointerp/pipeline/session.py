"""``RunSession``: the one owner of a run's life, from opening it to its final state.

    with RunSession.open(cfg, command="autointerp run --layer 13") as session:   # checks, lease, resume or start
        cap = session.capture()                    # one pass over the corpus (or session.use_capture(shared))
        session.explain_and_score(cap)             # every unit left: explain -> judge -> store; then the controls
    session.summary.outcomes, session.summary.state

The order of a run: ``open`` builds the components by name (``pipeline.components``) and checks every input
(``pipeline.inputs``) before anything is written, takes the run's lease (one process per run), then resumes the run
with the same key or starts one; ``capture`` (or ``use_capture``: a sweep shares one capture between runs);
``explain_and_score`` drives every unit left through the two stages (``pipeline.stages``) ``cfg.concurrency`` at a
time, committing each unit on its own, then the controls; leaving the ``with`` block (or ``close``) ends the session,
and ``finish`` is the only code that writes a run's state (``autointerp.outcomes``): ``done`` when every unit has an
outcome, ``stopped`` with its stop reason (a budget, a signal, a deadline, the lease lost, an endpoint that cannot
answer), ``failed`` when an error ended it (finished units stay; the same command resumes).

A session killed with SIGKILL leaves its lease behind; the next session takes it over and adds the dead session's
time (acquisition to last heartbeat) to the run's ``wall_s``, which sums every session.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from autointerp.agent.base import Explainer
from autointerp.config import Config
from autointerp.db import NewRun, Store, open_db
from autointerp.db.leases import DEFAULT_TTL_S, Lease, LeaseInfo, acquire_lease
from autointerp.errors import UsageError
from autointerp.llm.types import RunStop
from autointerp.outcomes import FINISHED, RunState, StopReason
from autointerp.pipeline.components import CallLog, LLMContext, make_explainer, make_scoring, make_simulator
from autointerp.pipeline.inputs import Inputs, capture_config, existing_db, load_inputs, package_versions, run_units
from autointerp.pipeline.estimate import estimate_run
from autointerp.pipeline.stages import Stages
from autointerp.pipeline.summary import RunSummary, UnitOutcome
from autointerp.scoring.controls import control_sample, control_texts, shuffled_partners
from autointerp.subject.capture import LayerCapture, capture
from autointerp.subject.model import Subject
from autointerp.subject.unit_tools import ExplorationPool, SubjectUnitTools
from autointerp.subject.units import UnitSpace

ProgressStart = Callable[[int | None], Callable[[int], None]]
StopCheck = Callable[[], "tuple[StopReason, str] | None"]  # a sweep's stop time or signal: (reason, words) or None


@dataclass(frozen=True)
class OpenOptions:
    """How ``RunSession.open`` takes the run: ``fresh`` starts a new run even when one with this key exists;
    ``wait`` waits for another live process on the run (``on_wait(holder)``) instead of raising ``LeaseHeld``;
    ``subject``: an already loaded ``cfg.model`` (a sweep shares one)."""

    command: str = ""
    fresh: bool = False
    wait: bool = False
    on_wait: Callable[[LeaseInfo], None] | None = None
    subject: Subject | None = None
    lease_ttl_s: float = DEFAULT_TTL_S


def build_components(cfg: Config) -> tuple[LLMContext, Explainer, Stages]:
    """The run's components by name (an unknown name or a missing key fails here, before anything is loaded)."""
    if cfg.layer is None:
        raise UsageError("no layer given; pass --layer N (0-based)")
    llm = LLMContext(cfg, CallLog())
    explainer, simulator = make_explainer(cfg, llm), make_simulator(cfg, llm)
    return llm, explainer, Stages(explainer, make_scoring(cfg, simulator, llm), cfg.validate_windows)


def run_key(cfg: Config, model_hash: str, explainer: Explainer, stages: Stages, space: UnitSpace) -> str:
    """The identity of a run's results (``Config.run_key``): the same key, the same run to resume."""
    scoring = stages.scoring
    others = {s.name: s.config() for s in scoring.scorers if s is not scoring.simulation}
    return cfg.run_key(model_hash, explainer.config(), scoring.simulation.simulator.config(), space.identity(),
                       others)


def controlled_units(cfg: Config, n_units: int, already: int = 0) -> int:
    """How many more units get controls in a run of ``n_units`` units, ``already`` of which have them."""
    if not cfg.controls:
        return 0
    target = n_units if cfg.controls_units == 0 else min(cfg.controls_units, n_units)
    return max(0, target - already)


class RunSession:
    """One session of one run: its typed components, its row, its lease, the units left and the summary so far."""

    def __init__(self, cfg: Config, inputs: Inputs, space: UnitSpace, llm: LLMContext, explainer: Explainer,
                 stages: Stages, store: Store):
        self.cfg, self.subject, self.corpus, self.space = cfg, inputs.subject, inputs.corpus, space
        self.llm, self.explainer, self.stages, self.store = llm, explainer, stages, store
        self.model_hash = self.subject.weights_hash()
        self.run_id = ""
        self.lease: Lease | None = None
        self.todo: list[int] = []
        self.summary: RunSummary | None = None
        self.stop_reason: tuple[StopReason, str] | None = None  # why units stopped being started, in words too
        self._busy_s = 0.0  # this session's time on the run: opening, capture, explain + score (summed as wall_s)

    # -- opening -----------------------------------------------------------------------------------------------

    @classmethod
    def open(cls, cfg: Config, options: OpenOptions = OpenOptions()) -> RunSession:
        """Check every input, take the run's lease, then resume the run with this key (or start one). Raises
        ``LeaseHeld`` when another live process has the run (unless ``options.wait``)."""
        t0 = time.time()
        llm, explainer, stages = build_components(cfg)
        store = existing_db(cfg.db)  # a corrupt, locked or newer file fails now; a new one once inputs are ok
        try:
            inputs = load_inputs(cfg, subject=options.subject, layers=[cfg.layer])
            space, units = run_units(cfg, inputs.subject)
            store = store or open_db(cfg.db)  # every input checked: the first write
            session = cls(cfg, inputs, space, llm, explainer, stages, store)
            session._take(units, options)
            session._busy_s += time.time() - t0
            return session
        except BaseException:
            if store is not None:
                store.close()
            raise

    def run_key(self) -> str:
        return run_key(self.cfg, self.model_hash, self.explainer, self.stages, self.space)

    def _snapshot(self) -> dict:
        """The config saved with the run; with a dictionary, what its guard measured (``unit_space``)."""
        snapshot = self.cfg.snapshot()
        return snapshot if self.space.check is None else {**snapshot, "dictionary_check": self.space.check}

    def _take(self, units: list[int], options: OpenOptions) -> None:
        """The lease, then the run row (resumed or new), the units left and the summary of earlier sessions."""
        cfg, store = self.cfg, self.store
        key = self.run_key()
        self.lease = acquire_lease(store.path, f"run:{key}", ttl_s=options.lease_ttl_s, wait=options.wait,
                                   on_wait=options.on_wait)
        try:
            run_id = None if options.fresh else store.find_resumable_run(key)
            if run_id is not None and self.lease.previous is not None:  # a session died holding the run
                store.add_run_wall(run_id, max(self.lease.previous.seconds_held(), 0.0))
            if run_id is None:
                run_id = store.start_run(NewRun(
                    run_key=key, command=options.command, config=self._snapshot(), versions=package_versions(),
                    model=cfg.model, model_hash=self.model_hash, layer=cfg.layer, unit_kind=self.space.kind,
                    corpus=cfg.corpus, seed=cfg.seed, explainer=self.explainer.name,
                    simulator=self.stages.scoring.simulation.simulator.name))
            else:
                store.resume_run(run_id)
        except BaseException:
            self.lease.release()
            raise
        self.run_id = run_id
        self.llm.calls.open(store, run_id)
        done = store.done_units(run_id)
        self.todo = [u for u in units if (self.space.kind, cfg.layer, u) not in done]
        wanted = set(units)
        self.summary = RunSummary(run_id, cfg.db, cfg.layer, self.explainer.name,
                                  self.stages.scoring.simulation.simulator.name, self.explainer.is_baseline,
                                  len(units), len(units) - len(self.todo), unit_kind=self.space.kind,
                                  dictionary_check=self.space.check,
                                  classifiers=tuple(s.name for s in self.stages.scoring.scorers
                                                    if s is not self.stages.scoring.simulation))
        self.summary.outcomes = [UnitOutcome(r["unit"], r["explanation"], r["status"], r["score"], r["detection"],
                                             r["fuzzing"])
                                 for r in store.run_outcomes(run_id)
                                 if r["unit"] in wanted and r["kind"] == self.space.kind]

    # -- the work ----------------------------------------------------------------------------------------------

    def capture(self, on_capture_start: ProgressStart | None = None) -> LayerCapture:
        """One pass over the corpus: the layer's statistics and windows for every unit of the run's unit space."""
        progress = on_capture_start(self.cfg.tokens) if on_capture_start else None
        t0 = time.time()
        cap = capture(self.subject, self.corpus, capture_config(self.cfg, [self.cfg.layer]), progress,
                      self.space)[self.cfg.layer]
        self.summary.capture_s = time.time() - t0
        self._busy_s += self.summary.capture_s
        self.use_capture(cap)
        return cap

    def use_capture(self, cap: LayerCapture) -> None:
        """Record that the run's units come from ``cap`` (captured here, or shared with another run of a sweep)."""
        self.summary.n_tokens = cap.n_tokens
        self.store.set_run_tokens(self.run_id, cap.n_tokens)

    def estimate(self, cap: LayerCapture) -> dict[str, Any] | None:
        """The expected LLM usage of the units left (None when no LLM is used or nothing is left)."""
        if not self.todo:
            return None
        record = cap.unit_record(self.todo[0], self.space.kind)
        controlled = controlled_units(self.cfg, self.summary.units_total, len(self.store.controlled_units(self.run_id)))
        self.summary.estimate = estimate_run(self.store, record, self.explainer, self.stages,
                                             len(self.todo), self.cfg.tiktoken_file, controlled)
        return self.summary.estimate

    def limit_budget(self, max_usd: float | None, max_calls: int | None) -> None:
        """The LLM budget of this session (a sweep gives each run what its plan has left)."""
        self.llm.limit(max_usd, max_calls)

    def explain_and_score(self, cap: LayerCapture, on_unit: Callable[[UnitOutcome], None] | None = None,
                          stop: StopCheck | None = None) -> None:
        """Every unit left through explain -> judge -> store, then the controls; timed into ``summary.explain_s``, its
        CPU time into ``explain_cpu_s``. ``stop()`` is asked before each unit (a sweep's stop time or signal); a
        ``RunStop`` (budget, endpoint) or the lost lease stops the run too, leaving the unit in hand to the next
        session."""
        t0, cpu0 = time.time(), time.process_time()
        try:
            with _llm_phase_gc():
                asyncio.run(self._units(cap, on_unit, stop))
        finally:
            self.summary.explain_s = time.time() - t0
            self.summary.explain_cpu_s = time.process_time() - cpu0
            self._busy_s += self.summary.explain_s

    def _should_stop(self, stop: StopCheck | None) -> bool:
        if self.stop_reason is None and self.lease is not None and self.lease.lost:
            self.stop_reason = ("lease", f"lost the run's lease to another process ({self.lease.name})")
        if self.stop_reason is None and stop is not None:
            self.stop_reason = stop()
        return self.stop_reason is not None

    async def _units(self, cap: LayerCapture, on_unit, stop: StopCheck | None) -> None:
        sem = asyncio.Semaphore(self.cfg.concurrency)
        profiles = cap.position_profile()  # [W, U], once for the run
        pool = (ExplorationPool(self.subject, self.corpus, self.cfg.layer, self.cfg.window, self.cfg.seed,
                                space=self.space) if self.explainer.uses_tools else None)

        async def one(unit: int) -> None:
            async with sem:
                if self._should_stop(stop):
                    return
                record = cap.unit_record(unit, self.space.kind)
                # the tools get the FULL record, so they know which windows to keep out of the agent's reach
                tools = SubjectUnitTools(self.subject, cap, record, pool) if pool is not None else None
                try:
                    scored = await self.stages.unit(record, tools, thread=f"{self.run_id}:{record.id}")
                except RunStop as e:  # this unit is not saved: the next session does it
                    self.stop_reason = self.stop_reason or (e.reason, str(e))
                    return
                status = self.store.save_unit_result(self.run_id, record, self.model_hash,
                                                     _stats_extra(cap, profiles, unit), [scored])
                tests = {j.scorer: j.value for j in scored.judgements if j.split == "test"}
                outcome = UnitOutcome(unit, scored.explanation.text, status,
                                      scored.test.score if scored.test else None, tests.get("detection"),
                                      tests.get("fuzzing"))
                self.summary.outcomes.append(outcome)
                if on_unit:
                    on_unit(outcome)

        try:
            await asyncio.gather(*(one(u) for u in self.todo))
            if self.cfg.controls and self.stop_reason is None:
                await self._controls(cap, sem)
        finally:
            self.summary.llm_usage = self.llm.usage(max(self.summary.units_this_session, 1))
            await self.explainer.aclose()
            await self.llm.aclose()

    async def _controls(self, cap: LayerCapture, sem: asyncio.Semaphore) -> None:
        """A seeded sample of the run's explained live units (``cfg.controls_units``), judged with a shuffled and an
        empty explanation (``scoring.controls``); shuffled texts come from every explained unit of the run, earlier
        sessions too."""
        kind = self.space.kind
        texts = {o["unit"]: o["explanation"] for o in self.store.run_outcomes(self.run_id)
                 if o["kind"] == kind and o["status"] in FINISHED and o["explanation"]}
        live = [u for u in texts if not cap.stats(u).dead]
        partners = shuffled_partners(live, self.cfg.seed)
        done = {u for k, layer, u in self.store.controlled_units(self.run_id) if k == kind and layer == self.cfg.layer}
        sample = control_sample(live, done, self.cfg.controls_units, self.cfg.seed)

        async def one(unit: int) -> None:
            async with sem:
                if self.stop_reason is not None:
                    return
                record = cap.unit_record(unit, kind)
                try:
                    controls = await self.stages.controls(record, control_texts(
                        texts, partners, unit, explainer=self.explainer.name, seed=self.cfg.seed))
                except RunStop as e:
                    self.stop_reason = self.stop_reason or (e.reason, str(e))
                    return
                self.store.save_controls(self.run_id, record, self.model_hash, controls)

        await asyncio.gather(*(one(u) for u in sample))

    # -- the end -----------------------------------------------------------------------------------------------

    def finish(self, error: BaseException | None = None, stop: tuple[StopReason, str] | None = None) -> RunState:
        """Decide and write the run's state: the one place it is written (see the module docstring). ``error``: what
        ended the session early; ``stop``: why its owner stopped it before it started (a sweep's budget or signal)."""
        s = self.summary
        s.wall_s = self._busy_s
        self.stop_reason = self.stop_reason or stop
        if isinstance(error, KeyboardInterrupt):
            self.stop_reason = self.stop_reason or ("interrupted", "interrupted")
        if error is not None and not isinstance(error, KeyboardInterrupt):
            state, reason = "failed", None
        elif self.stop_reason is not None:
            state, reason = "stopped", self.stop_reason[0]
            s.stopped = self.stop_reason[1]
        else:
            state, reason = "done", None
        s.state, s.stop_reason = state, reason
        s.n_tokens = s.n_tokens or self.store.run_tokens(self.run_id)
        s.controls = self.store.run_controls(self.run_id)
        self.store.finish_run(self.run_id, state, s.wall_s, reason)
        return state

    def close(self) -> None:
        """Release the run's lease and close the store (idempotent)."""
        if self.lease is not None:
            self.lease.release()
        self.store.close()

    def __enter__(self) -> RunSession:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if self.summary is not None and self.summary.state == "running":
                self.finish(exc)
        finally:
            self.close()


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


def _stats_extra(cap: LayerCapture, profiles: Any, unit: int) -> dict[str, Any]:
    """Per-unit facts beyond UnitStats that later analyses and the unit card use (``profiles``:
    ``cap.position_profile()``)."""
    profile = profiles[:, unit].tolist()
    return {"position_firing_rate": [round(f, 5) for f in profile], "n_windows": cap.n_windows,
            "firing_rule": cap.firing_rule, "bottom_windows": cap.bottom_windows(unit)}
