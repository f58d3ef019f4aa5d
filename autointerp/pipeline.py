"""The orchestrator: corpus -> subject capture -> records -> explainer -> simulator -> score -> db.

    >>> from autointerp.config import load_config
    >>> from autointerp.pipeline import run
    >>> summary = run(load_config(overrides={"layer": 13, "units": "0:8"}))
    >>> summary.mean_score, summary.db

This is the only module that imports every stage; the CLI is a thin layer over it. A run is identified by its
*run key* (``Config.run_key``): running the same command again finds the unfinished run with that key and only
does the units it has not finished (each unit is committed on its own), so an interrupted run resumes.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from importlib import metadata
from pathlib import Path
from typing import Any

from autointerp.agent.base import Explainer, Explanation
from autointerp.agent.baseline import BaselineExplainer
from autointerp.agent.graph import AgentLimits
from autointerp.agent.llm_explainer import LLMExplainer
from autointerp.config import Config
from autointerp.corpus import iter_token_windows, open_corpus
from autointerp.db import ScoredExplanation, Store, open_db
from autointerp.errors import UsageError
from autointerp.subject.records import UnitRecord
from autointerp.llm.client import Budget, BudgetExceeded, LLMClient
from autointerp.llm.profiles import SHORTHAND_PREFIX, ModelProfile, resolve_profile
from autointerp.llm.tokens import Estimate, TokenCounter
from autointerp.scoring.baseline import BaselineSimulator
from autointerp.scoring.llm_simulator import LLMSimulator
from autointerp.scoring.score import ScoreResult, score_windows
from autointerp.scoring.simulator import Simulator
from autointerp.subject.capture import CaptureConfig, LayerCapture, capture
from autointerp.subject.analyses import REGULARIZATION_TOP, analyze_layer
from autointerp.subject.probing import (
    BUILTIN_CONCEPTS,
    DEFAULT_TOKENS,
    ProbeResult,
    load_span_concept,
    probe_layers,
)
from autointerp.subject.sae import (
    SAETrainConfig,
    SparseAutoencoder,
    default_basis,
    dictionary_metrics,
    ica_dictionary,
    pca_dictionary,
    random_dictionary,
    spliced_loss,
    train_sae,
)
from autointerp.subject.model import load_subject
from autointerp.subject.unit_tools import ExplorationPool, SubjectUnitTools
from autointerp.subject.units import NEURONS, RESIDUAL, UnitSpace, collect_activations, load_unit_space

class LLMContext:
    """The LLM side of one run: profiles, one client per profile (shared by explainer and simulator), a budget
    shared by all of them, and a sink that logs every call to the results DB under the run's id."""

    def __init__(self, cfg: Config):
        self.profiles = cfg.models
        self.log_logprobs = cfg.log_logprobs
        self.budget = Budget(max_usd=cfg.max_usd, max_calls=cfg.max_calls)
        self.store: Store | None = None
        self.run_id: str | None = None
        self.clients: dict[str, LLMClient] = {}

    def record_call(self, record) -> None:  # the CallSink the clients write to
        if self.store is not None:
            self.store.record_call(record, self.run_id)

    def client(self, name: str) -> tuple[LLMClient, ModelProfile]:
        profile = resolve_profile(name, self.profiles)
        if name not in self.clients:
            self.clients[name] = LLMClient(profile, name, sink=self, budget=self.budget,
                                           log_logprobs=self.log_logprobs)
        return self.clients[name], profile

    def usage(self, n_units: int) -> dict[str, Any] | None:
        """Totals over this session's clients (None when no LLM was used), and per unit over ``n_units``."""
        if not self.clients:
            return None
        t = {"calls": 0, "errors": 0, "tokens_in": 0, "tokens_out": 0, "cost_usd": 0.0}
        for client in self.clients.values():
            for key in t:
                t[key] += getattr(client.totals, key)
        t["per_unit"] = {k: round(t[k] / n_units, 2) for k in ("calls", "tokens_in", "tokens_out")}
        return t

    async def aclose(self) -> None:
        for client in self.clients.values():
            await client.aclose()


# Registries of the built-in components: name -> factory(config, llm context). Any other name is an LLM profile.
EXPLAINERS: dict[str, Callable[[Config, LLMContext], Explainer]] = {"baseline": lambda cfg, llm: BaselineExplainer()}
SIMULATORS: dict[str, Callable[[Config, LLMContext], Simulator]] = {"baseline": lambda cfg, llm: BaselineSimulator()}


def _profile_or_error(kind: str, name: str, builtins: dict, llm: LLMContext):
    try:
        return llm.client(name)
    except UsageError:
        if name.startswith(SHORTHAND_PREFIX) or name in llm.profiles:
            raise  # a real profile whose key or URL is missing: that message says what to do
        known = sorted(builtins) + sorted(llm.profiles)
        raise UsageError(f"unknown {kind} {name!r}; choose one of: {', '.join(known)}, or openai:MODEL "
                         "(define profiles as [models.NAME] in autointerp.toml)")


class LateTools:
    """The agent's tools factory, bound once capture has run (the explainer is built before, for the run key).

    ``full_records``: the full record of each unit in flight (the pipeline fills it), so the tools, which must know
    every held-out window to keep it out of reach, need not build the record a second time."""

    def __init__(self):
        self.factory: Callable[[UnitRecord], Any] | None = None
        self.full_records: dict[int, UnitRecord] = {}

    def __call__(self, record: UnitRecord):
        assert self.factory is not None, "tools are bound after capture"
        return self.factory(record)


def make_explainer(cfg: Config, llm: LLMContext) -> Explainer:
    if cfg.explainer in EXPLAINERS:
        return EXPLAINERS[cfg.explainer](cfg, llm)
    client, profile = _profile_or_error("explainer", cfg.explainer, EXPLAINERS, llm)
    limits = AgentLimits(max_rounds=cfg.revise_rounds, max_tool_calls=cfg.max_tool_calls,
                         max_tokens=cfg.max_unit_tokens, best_of_k=cfg.best_of)
    return LLMExplainer(client, profile, tools_factory=LateTools() if cfg.max_tool_calls > 0 else None,
                        limits=limits, checkpoint_path=f"{cfg.db}.agent.sqlite")


def bind_explainer(explainer: Explainer, run_id: str, subject, corpus, cfg: Config, cap: LayerCapture,
                   space: UnitSpace = NEURONS) -> None:
    """Give an LLM explainer what exists only once the run has started: its id and the subject-backed tools."""
    if not isinstance(explainer, LLMExplainer):
        return
    explainer.run_id = run_id
    if isinstance(explainer.tools_factory, LateTools):
        pool = ExplorationPool(subject, corpus, cfg.layer, cfg.window, cfg.seed, space=space)
        # the tools get the FULL record (looked up by id) so they know which windows to keep out of reach
        full = explainer.tools_factory.full_records

        def tools(rec: UnitRecord) -> SubjectUnitTools:
            unit = rec.id.unit
            return SubjectUnitTools(subject, cap, full[unit] if unit in full else cap.unit_record(unit, space.kind),
                                    pool)

        explainer.tools_factory.factory = tools


def make_simulator(cfg: Config, llm: LLMContext) -> Simulator:
    if cfg.simulator in SIMULATORS:
        return SIMULATORS[cfg.simulator](cfg, llm)
    client, profile = _profile_or_error("simulator", cfg.simulator, SIMULATORS, llm)
    return LLMSimulator(client, profile, windows_per_request=cfg.windows_per_request)


def unit_space(cfg: Config, subject) -> UnitSpace:
    """The run's units: the MLP neurons, or the features of ``cfg.dictionary`` (a folder) at ``cfg.layer``."""
    if cfg.dictionary is None:
        return NEURONS
    return load_unit_space(cfg.dictionary, cfg.layer, subject)


def parse_units(spec: str | None, n_units: int) -> list[int]:
    """``None``/``all`` -> every unit; ``a:b`` -> range(a, b); ``3,17,42`` -> those. Out of range -> UsageError."""
    if spec is None or spec == "all":
        return list(range(n_units))
    try:
        if ":" in spec:
            a, _, b = spec.partition(":")
            units = list(range(int(a or 0), int(b) if b else n_units))
        else:
            units = sorted({int(u) for u in spec.split(",") if u.strip()})
    except ValueError:
        raise UsageError(f"--units {spec!r} is not understood; use a range like 0:32 or a list like 3,17,42")
    bad = [u for u in units if not 0 <= u < n_units]
    if bad or not units:
        raise UsageError(f"--units {spec!r} is out of range: this layer has units 0..{n_units - 1}")
    return units


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


def package_versions() -> dict[str, str]:
    names = ["autointerp", "torch", "transformers", "openai", "langgraph", "pydantic", "sqlite-utils", "numpy"]
    out = {}
    for n in names:
        try:
            out[n] = metadata.version(n)
        except metadata.PackageNotFoundError:
            pass
    return out


async def score_explanation(simulator: Simulator, text: str, windows) -> tuple[ScoreResult, list]:
    """Simulate ``windows`` from ``text`` and score; returns the score and per-window (predictions, error)."""
    sim = await simulator.simulate(text, [list(w.tokens) for w in windows])
    return score_windows(windows, sim.predictions), list(zip(sim.predictions, sim.errors))


def estimate_llm_usage(cfg: Config, record: UnitRecord, explainer: Explainer, simulator: Simulator,
                       n_units: int) -> dict[str, Any] | None:
    """Expected LLM calls, tokens and cost for ``n_units`` units like ``record``; None when no LLM is used.

    Each LLM component estimates one unit (``estimate`` methods); the test windows are simulated once per unit.
    """
    counter = TokenCounter(bpe_file=cfg.tiktoken_file)
    parts: dict[str, tuple[Estimate, ModelProfile]] = {}
    if hasattr(explainer, "estimate"):
        parts["explainer"] = (explainer.estimate(record, counter), explainer.profile)
    if hasattr(simulator, "estimate"):
        sample = "x" * 160  # a typical one-sentence explanation
        sim = simulator.estimate([list(w.tokens) for w in record.split("test")], counter, sample)
        limits = getattr(explainer, "limits", None)
        if limits is not None and (limits.best_of_k > 1 or limits.max_rounds > 0):  # candidates scored on valid
            valid = simulator.estimate([list(w.tokens) for w in record.split("valid")], counter, sample)
            sim = sim + valid * (limits.best_of_k + limits.max_rounds)
        parts["simulator"] = (sim, simulator.profile)
    if not parts:
        return None
    total = {"units": n_units, "calls": 0, "tokens_in": 0, "tokens_out": 0, "cost_usd": 0.0,
             "token_counting": counter.method}
    for est, profile in parts.values():
        est = est * n_units
        total["calls"] += est.calls
        total["tokens_in"] += est.tokens_in
        total["tokens_out"] += est.tokens_out
        total["cost_usd"] += profile.cost_usd(est.tokens_in, est.tokens_out)
    return total


def worst_windows(windows, predictions, n: int = 4) -> list[dict[str, Any]]:
    """The ``n`` windows whose simulation was most wrong: largest |true - predicted| on the 0..10 scale, with true
    activations normalised by the max over these windows (METHODS.md's norm). For revision prompts (valid only)."""
    m = max((max(w.activations) for w in windows), default=0.0) or 1.0
    rows = []
    for w, pred in zip(windows, predictions):
        if pred is None:
            continue
        err = max(abs(10 * max(a, 0.0) / m - p) for a, p in zip(w.activations, pred))
        rows.append((err, {"tokens": list(w.tokens), "activations": list(w.activations), "predictions": list(pred),
                           "source": w.source, "error": round(err, 3)}))
    return [row for _, row in sorted(rows, key=lambda t: -t[0])[:n]]


async def process_unit(record: UnitRecord, explainer: Explainer, simulator: Simulator) -> ScoredExplanation:
    """Explain (train windows only), then simulate and score on the test windows."""

    async def validate(text: str):
        valid = record.split("valid")
        result, sims = await score_explanation(simulator, text, valid)
        return result.score, worst_windows(valid, [p for p, _ in sims])

    try:
        explanation = await explainer.explain(record.for_explainer(), validate)
    except BudgetExceeded:
        raise
    except Exception as e:  # an explainer failure ends this unit "failed"; the run goes on
        explanation = Explanation("", status="failed", reason=f"{type(e).__name__}: {e}", explainer=explainer.name)
    test = record.split("test")
    result, sims = (None, [])
    if explanation.text:
        try:
            result, sims = await score_explanation(simulator, explanation.text, test)
        except BudgetExceeded:
            raise
        except Exception as e:  # e.g. LLMError after every retry: the unit fails, with the reason
            explanation = replace(explanation, status="failed", reason=f"scoring failed: {type(e).__name__}: {e}")
        if result is not None and result.n_windows == 0 and result.n_failed:
            first_error = next((err for _, err in sims if err), "unknown error")
            explanation = replace(explanation, status="failed",
                                  reason=f"scoring failed: no test window could be simulated ({first_error})")
    return ScoredExplanation(
        explanation=explanation,
        explainer_config=explainer.config(),
        is_baseline=explainer.is_baseline,
        simulator=simulator.name,
        simulator_config=simulator.config(),
        test=result,
        simulations={w.index: s for w, s in zip(test, sims)},
    )


def run(
    cfg: Config,
    command: str = "",
    on_capture_start: Callable[[int | None], Callable[[int], None]] | None = None,
    on_unit: Callable[[UnitOutcome], None] | None = None,
    fresh: bool = False,
    on_estimate: Callable[[dict[str, Any]], None] | None = None,
) -> RunSummary:
    """Run capture -> explain -> simulate -> score -> store for ``cfg.layer``; see the module docstring.

    ``on_capture_start(total_tokens_or_None)`` returns a per-batch progress callback; ``on_unit`` is called
    after each unit is committed. ``fresh`` starts a new run even when one with the same key exists.
    ``on_estimate`` receives the expected LLM usage of the units left, before any LLM call is made.
    """
    if cfg.layer is None:
        raise UsageError("no layer given; pass --layer N (0-based)")
    t0 = time.time()
    llm = LLMContext(cfg)
    explainer, simulator = make_explainer(cfg, llm), make_simulator(cfg, llm)  # unknown names, missing keys
    corpus = open_corpus(cfg.corpus, cfg.seed)
    store = open_db(cfg.db)  # fails early on a corrupt, locked or newer DB
    subject = load_subject(cfg.model, cfg.device, cfg.dtype)
    subject.check_layer(cfg.layer)
    space = unit_space(cfg, subject)
    units = parse_units(cfg.units, space.n_units(subject))
    model_hash = subject.weights_hash()
    run_key = cfg.run_key(model_hash, explainer.config(), simulator.config(), space.identity())
    run_id = None if fresh else store.find_resumable_run(run_key)
    if run_id is None:
        run_id = store.start_run(
            run_key=run_key, command=command, config=cfg.snapshot(), versions=package_versions(), model=cfg.model,
            model_hash=model_hash, layer=cfg.layer, unit_kind=space.kind, corpus=cfg.corpus, seed=cfg.seed,
            explainer=explainer.name, simulator=simulator.name,
        )
    else:
        store.resume_run(run_id)
    llm.store, llm.run_id = store, run_id
    done = store.done_units(run_id)
    todo = [u for u in units if (space.kind, cfg.layer, u) not in done]
    summary = RunSummary(run_id, cfg.db, cfg.layer, explainer.name, simulator.name, explainer.is_baseline,
                         len(units), len(units) - len(todo), unit_kind=space.kind)
    wanted = set(units)
    summary.outcomes = [UnitOutcome(r["unit"], r["explanation"], r["status"], r["score"])
                        for r in store.run_outcomes(run_id) if r["unit"] in wanted and r["kind"] == space.kind]
    if not todo:
        summary.n_tokens = store.run_tokens(run_id)
        summary.wall_s = time.time() - t0
        store.finish_run(run_id, "complete", summary.wall_s)
        return summary

    def capture_and_explain() -> None:
        cap_cfg = CaptureConfig(layers=[cfg.layer], window=cfg.window, top_k=cfg.top_k, n_random=cfg.n_random,
                                batch_size=cfg.batch_size, max_tokens=cfg.tokens, threshold=cfg.threshold,
                                seed=cfg.seed)
        progress = on_capture_start(cfg.tokens) if on_capture_start else None
        t_capture = time.time()
        layer_cap = capture(subject, corpus, cap_cfg, progress, space)[cfg.layer]
        summary.capture_s = time.time() - t_capture
        summary.n_tokens = layer_cap.n_tokens
        store.set_run_tokens(run_id, layer_cap.n_tokens)
        bind_explainer(explainer, run_id, subject, corpus, cfg, layer_cap, space)
        summary.estimate = estimate_llm_usage(cfg, layer_cap.unit_record(todo[0], space.kind), explainer, simulator,
                                              len(todo))
        if summary.estimate is not None and on_estimate:
            on_estimate(summary.estimate)
        t_explain = time.time()
        try:
            with _llm_phase_gc():
                asyncio.run(_explain_all(store, run_id, model_hash, layer_cap, space.kind, todo, explainer,
                                         simulator, cfg.concurrency, summary, on_unit, llm))
        finally:
            summary.explain_s = time.time() - t_explain

    try:
        capture_and_explain()
    except KeyboardInterrupt:
        summary.interrupted = True
        store.finish_run(run_id, "interrupted", time.time() - t0)
        raise
    except BaseException:
        store.finish_run(run_id, "failed", time.time() - t0)  # finished units stay; the same command resumes
        raise
    summary.wall_s = time.time() - t0
    store.finish_run(run_id, "interrupted" if summary.stopped else "complete", summary.wall_s)
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


async def _explain_all(store: Store, run_id: str, model_hash: str, cap: LayerCapture, kind: str, units: list[int],
                       explainer: Explainer, simulator: Simulator, concurrency: int, summary: RunSummary,
                       on_unit: Callable[[UnitOutcome], None] | None, llm: LLMContext) -> None:
    sem = asyncio.Semaphore(concurrency)
    profiles = cap.position_profile()  # [W, U], once for the run
    late_tools = getattr(explainer, "tools_factory", None)
    late_tools = late_tools if isinstance(late_tools, LateTools) else None

    async def one(unit: int) -> None:
        async with sem:
            if summary.stopped:
                return
            record = cap.unit_record(unit, kind)
            if late_tools is not None:
                late_tools.full_records[unit] = record
            try:
                scored = await process_unit(record, explainer, simulator)
            except BudgetExceeded as e:  # this unit is not saved: the next run does it
                summary.stopped = str(e)
                return
            finally:
                if late_tools is not None:
                    late_tools.full_records.pop(unit, None)
            store.save_unit_result(run_id, record, model_hash, _stats_extra(cap, profiles, unit), [scored])
            outcome = UnitOutcome(unit, scored.explanation.text, scored.explanation.status,
                                  scored.test.score if scored.test else None)
            summary.outcomes.append(outcome)
            if on_unit:
                on_unit(outcome)

    try:
        await asyncio.gather(*(one(u) for u in units))
    finally:
        summary.llm_usage = llm.usage(max(summary.units_this_session, 1))
        if isinstance(explainer, LLMExplainer):
            await explainer.aclose()
        await llm.aclose()


def _stats_extra(cap: LayerCapture, profiles: Any, unit: int) -> dict[str, Any]:
    """Per-unit facts beyond UnitStats that later analyses and the unit card use (``profiles``:
    ``cap.position_profile()``)."""
    profile = profiles[:, unit].tolist()
    return {"position_firing_rate": [round(f, 5) for f in profile], "n_windows": cap.n_windows}


@dataclass
class AnalysisResult:
    run_id: str
    db: str
    n_tokens: int
    summaries: list[dict[str, Any]]  # LayerSummary.to_json() per layer
    units: list[dict[str, Any]]  # UnitAnalysis.to_json() per unit, plus "position_profile"
    capture_s: float
    wall_s: float


def parse_layers(spec: str, n_layers: int) -> list[int]:
    """``all`` -> every layer; ``13`` or ``3,7`` or ``0:4`` -> those (0-based). Out of range -> UsageError."""
    if spec == "all":
        return list(range(n_layers))
    try:
        layers = parse_units(spec, n_layers)
    except UsageError:
        raise UsageError(f"--layer {spec!r} is not valid: use all, N, N:M or N,M with layers 0..{n_layers - 1}")
    return layers


def analyze(cfg: Config, layers: str, command: str = "",
            on_capture_start: Callable[[int | None], Callable[[int], None]] | None = None) -> AnalysisResult:
    """Every statistical analysis (dead units, n-gram coverage, token/trigram detectors, suppression, positional
    units) for ``layers`` in ONE capture pass, stored in the DB (analysis_runs, layer_analyses, unit_analyses)."""
    t0 = time.time()
    corpus = open_corpus(cfg.corpus, cfg.seed)
    store = open_db(cfg.db)
    subject = load_subject(cfg.model, cfg.device, cfg.dtype)
    wanted = parse_layers(layers, subject.n_layers)
    cap_cfg = CaptureConfig(layers=wanted, window=cfg.window, top_k=cfg.top_k, n_random=cfg.n_random,
                            batch_size=cfg.batch_size, max_tokens=cfg.tokens, threshold=cfg.threshold, seed=cfg.seed,
                            ngrams=True, top_units=REGULARIZATION_TOP)
    progress = on_capture_start(cfg.tokens) if on_capture_start else None
    t_capture = time.time()
    caps = capture(subject, corpus, cap_cfg, progress)
    capture_s = time.time() - t_capture
    summaries, units = [], []
    for layer in wanted:
        unit_results, summary = analyze_layer(subject, caps[layer], caps[layer].ngrams)
        profile = caps[layer].position_profile().T  # [U, W]
        summaries.append(summary.to_json())
        units += [{**u.to_json(), "position_profile": [round(x, 5) for x in profile[u.unit].tolist()]}
                  for u in unit_results]
    n_tokens = caps[wanted[0]].n_tokens
    run_id = store.save_analysis(command=command, config=cfg.snapshot(), versions=package_versions(), model=cfg.model,
                                 model_hash=subject.weights_hash(), corpus=cfg.corpus, n_tokens=n_tokens,
                                 summaries=summaries, units=units)
    return AnalysisResult(run_id, cfg.db, n_tokens, summaries, units, capture_s, time.time() - t0)


def probe(cfg: Config, layers: str, concept: str, method: str = "mean_diff", command: str = "",
          context: int | None = None, residual: bool = False,
          on_progress: Callable[[str, int], None] | None = None) -> list[tuple[ProbeResult, str]]:
    """k-sparse probes of the units of ``layers`` (``N``, ``N:M``, ``N,M`` or ``all``: the MLP neurons, or the features
    of ``cfg.dictionary``, which belongs to one layer) for a built-in concept (labelled by Python's tokenize on
    ``cfg.corpus``) or a JSONL span-concept file, every layer from one set of forward passes; each layer stored as one
    probe_results row. ``context``: preceding tokens fed before each window (default: ``probing.MAX_CONTEXT`` within
    the model's positions). ``residual``: probe the residual stream's coordinates instead (kind ``resid``). Returns
    (ProbeResult, probe id) per layer, in layer order; ``on_progress`` as in ``probing.probe_layers``."""
    if concept.endswith(".jsonl"):
        if not Path(concept).is_file():
            raise UsageError(f"concept file {concept} not found; give a .jsonl of {{\"text\", \"spans\"}} lines")
        target, corpus = load_span_concept(concept), None
    elif concept in BUILTIN_CONCEPTS:
        target, corpus = concept, open_corpus(cfg.corpus, cfg.seed)
    else:
        raise UsageError(f"unknown concept {concept!r}; built-in: {', '.join(BUILTIN_CONCEPTS)}, or a .jsonl file")
    if method not in ("mean_diff", "adaptive"):
        raise UsageError(f"--method {method!r} is not supported; use mean_diff or adaptive")
    store = open_db(cfg.db)
    subject = load_subject(cfg.model, cfg.device, cfg.dtype)
    wanted = parse_layers(layers, subject.n_layers)
    if cfg.dictionary is not None and len(wanted) > 1:
        raise UsageError("a dictionary reads one layer; give --layer N with --units sae:PATH")
    space = RESIDUAL if residual else unit_space(cfg.model_copy(update={"layer": wanted[0]}), subject)
    results = probe_layers(subject, corpus, wanted, target, method=method, max_tokens=cfg.tokens or DEFAULT_TOKENS,
                           window=cfg.window, seed=cfg.seed, space=space, context=context, on_progress=on_progress)
    model_hash = subject.weights_hash()
    return [(result, store.save_probe(command=command, model=cfg.model, model_hash=model_hash,
                                      corpus=None if corpus is None else cfg.corpus, result=result))
            for result in results]


# -- dictionaries (SAEs and baselines) ---------------------------------------------------------------------------
DICTIONARY_FAMILIES = ("sae", "pca", "ica", "random", "default")
FIT_CORPUS = "stdlib:fit"  # dictionaries are fitted on the split the bundled model was trained on, scored on the rest


@dataclass
class DictionaryReport:
    path: str
    kind: str  # the units' kind, family:hash8
    family: str
    layer: int
    site: str
    d_in: int
    n_features: int
    n_tokens: int  # evaluation tokens
    fvu: float | None
    mean_l0: float
    dead_features: int
    loss_clean: float | None  # nats per predicted token (SAEs only)
    loss_spliced: float | None
    n_fit_tokens: int | None = None  # set by train_dictionary
    eval_id: str = ""


def train_dictionary(cfg: Config, layer: int, family: str, site: str, out: str, *, ratio: float = 4.0,
                     alpha: float = 1e-3, epochs: int = 10, fit_tokens: int = 200_000, fit_corpus: str = FIT_CORPUS,
                     eval_tokens: int = 50_000, command: str = "") -> DictionaryReport:
    """Fit a dictionary on ``layer``'s ``site`` activations over ``fit_tokens`` of ``fit_corpus``, save it to the
    new folder ``out`` (its metadata names the layer, site and model, so ``run --units sae:OUT`` can check them),
    then evaluate it like ``evaluate_dictionary``.

    Families: ``sae`` (tied for the residual stream, untied for MLP activations, METHODS.md §7; ``ratio`` x d_in
    features, L1 coefficient ``alpha``), ``pca`` and ``ica`` (d_in directions), ``random`` (``ratio`` x d_in / 2
    directions) and ``default`` (the site's own coordinates); baseline directions are sign-split into two features
    each, so every feature is non-negative like a neuron.
    """
    if family not in DICTIONARY_FAMILIES:
        raise UsageError(f"--kind {family!r} is not one of {', '.join(DICTIONARY_FAMILIES)}")
    if site not in ("mlp", "resid"):
        raise UsageError(f"--site {site!r} is not supported; use resid or mlp")
    target = Path(out)
    if target.exists() and any(target.iterdir()):
        raise UsageError(f"{out} already exists and is not empty; choose another --out or remove it")
    store = open_db(cfg.db)
    subject = load_subject(cfg.model, cfg.device, cfg.dtype)
    subject.check_layer(layer)
    model_hash = subject.weights_hash()
    windows = iter_token_windows(open_corpus(fit_corpus, cfg.seed), subject.tokenizer, cfg.window,
                                 max(1, fit_tokens // cfg.window))
    acts = collect_activations(subject, windows, layer, site, max_tokens=fit_tokens, batch_size=cfg.batch_size)
    metadata = {"layer": layer, "site": site, "model": cfg.model, "model_hash": model_hash,
                "fit_corpus": fit_corpus, "fit_tokens": len(acts), "seed": cfg.seed}
    d_in = acts.shape[1]
    if family == "sae":
        dictionary = train_sae(acts, SAETrainConfig(ratio=ratio, alpha=alpha, tied=site == "resid", epochs=epochs,
                                                    seed=cfg.seed, metadata=metadata))
    elif family == "default":
        dictionary = replace(default_basis(d_in, split_signs=True), metadata=metadata)
    elif family == "random":
        dictionary = replace(random_dictionary(acts, max(1, round(ratio * d_in / 2)), seed=cfg.seed),
                             metadata=metadata)
    elif family == "pca":
        dictionary = replace(pca_dictionary(acts, min(d_in, len(acts))), metadata=metadata)
    else:
        dictionary = replace(ica_dictionary(acts, min(d_in, len(acts)), seed=cfg.seed), metadata=metadata)
    dictionary.save(target)
    report = evaluate_dictionary(cfg, out, layer, eval_tokens, command, store=store, subject=subject)
    report.n_fit_tokens = len(acts)
    return report


def evaluate_dictionary(cfg: Config, path: str, layer: int, eval_tokens: int = 50_000, command: str = "", *,
                        store: Store | None = None, subject=None) -> DictionaryReport:
    """FVU, mean L0 and dead features of the dictionary folder ``path`` on ``eval_tokens`` of ``cfg.corpus`` (the
    held-out split by default), and for an SAE the subject's loss with the site replaced by its reconstruction;
    stored in ``dictionary_evals``."""
    store = store or open_db(cfg.db)
    subject = subject or load_subject(cfg.model, cfg.device, cfg.dtype)
    subject.check_layer(layer)
    space = load_unit_space(path, layer, subject)
    max_windows = max(1, eval_tokens // cfg.window)
    windows = list(iter_token_windows(open_corpus(cfg.corpus, cfg.seed), subject.tokenizer, cfg.window, max_windows))
    acts = collect_activations(subject, windows, layer, space.site, max_tokens=eval_tokens,
                               batch_size=cfg.batch_size)
    metrics = dictionary_metrics(space.dictionary, acts)
    loss_clean = loss_spliced = None
    if isinstance(space.dictionary, SparseAutoencoder):
        loss_clean, loss_spliced = spliced_loss(subject, space.dictionary, windows, layer, space.site,
                                                batch_size=cfg.batch_size)
    report = DictionaryReport(
        path=str(path), kind=space.kind, family=space.family, layer=layer, site=space.site,
        d_in=space.dictionary.d_in, n_features=metrics.n_features, n_tokens=metrics.n_tokens, fvu=metrics.fvu,
        mean_l0=metrics.mean_l0, dead_features=metrics.dead_features, loss_clean=loss_clean,
        loss_spliced=loss_spliced,
    )
    config = json.loads((Path(path) / "cfg.json").read_text())
    report.eval_id = store.save_dictionary_eval(command=command, model=cfg.model, model_hash=subject.weights_hash(),
                                                corpus=cfg.corpus, report=report, config=config)
    return report
