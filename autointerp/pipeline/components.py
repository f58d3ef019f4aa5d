"""The run's components, chosen by name through registries: explainers, simulators (and the scorers over them), LLM
clients.

    >>> calls = CallLog()                              # the run owner opens it on the run's row once it has one
    >>> llm = LLMContext(cfg, calls)                   # one client per LLM profile, one budget, calls logged to the DB
    >>> explainer, simulator = make_explainer(cfg, llm), make_simulator(cfg, llm)
    >>> scoring = make_scoring(cfg, simulator, llm)    # the scoring stage: cfg.scorers over simulator and cfg.judge

``EXPLAINERS`` and ``SIMULATORS`` map a built-in name to a factory ``(config, llm context) -> component``; any other
name is an LLM profile (``[models.NAME]`` in autointerp.toml, or ``openai:MODEL``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from autointerp.agent.base import Explainer
from autointerp.agent.baseline import BaselineExplainer
from autointerp.agent.graph import AgentLimits
from autointerp.agent.llm_explainer import LLMExplainer
from autointerp.config import Config
from autointerp.db import Store
from autointerp.errors import UsageError
from autointerp.llm.client import Budget, LLMClient
from autointerp.llm.profiles import SHORTHAND_PREFIX, ModelProfile, resolve_profile
from autointerp.scoring.baseline import BaselineSimulator
from autointerp.scoring.classify import ClassificationScorer, Judge, Task
from autointerp.scoring.echo_simulator import EchoSimulator
from autointerp.scoring.judges import LLMJudge, QuotedJudge
from autointerp.scoring.llm_simulator import LLMSimulator
from autointerp.pipeline.stages import ScoringStage
from autointerp.scoring.simulation import SimulationScorer
from autointerp.scoring.simulator import Simulator


class CallLog:
    """Where a run's LLM calls are logged: the results DB under the run's id, from the moment the run owner opens it
    (``open``; no call is made before: components are built, then the run is opened, then units are done)."""

    def __init__(self) -> None:
        self.store: Store | None = None
        self.run_id: str | None = None

    def open(self, store: Store, run_id: str) -> None:
        self.store, self.run_id = store, run_id

    def record_call(self, record) -> None:  # the CallSink the clients write to
        if self.store is None:
            raise RuntimeError("an LLM call before the run was opened: it would not be logged")
        self.store.record_call(record, self.run_id)


class LLMContext:
    """The LLM side of one run: profiles, one client per profile (shared by explainer and simulator), a budget
    shared by all of them, and the run's call log (``CallLog``)."""

    def __init__(self, cfg: Config, calls: CallLog | None = None):
        self.profiles = cfg.models
        self.log_logprobs = cfg.log_logprobs
        self.budget = Budget(max_usd=cfg.max_usd, max_calls=cfg.max_calls)
        self.calls = calls or CallLog()
        self.clients: dict[str, LLMClient] = {}

    def limit(self, max_usd: float | None, max_calls: int | None) -> None:
        """Set the budget every client of the run shares (a sweep gives each run what the plan has left)."""
        self.budget.max_usd, self.budget.max_calls = max_usd, max_calls

    def client(self, name: str) -> tuple[LLMClient, ModelProfile]:
        profile = resolve_profile(name, self.profiles)
        if name not in self.clients:
            self.clients[name] = LLMClient(profile, name, sink=self.calls, budget=self.budget,
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


def make_explainer(cfg: Config, llm: LLMContext) -> Explainer:
    if cfg.explainer in EXPLAINERS:
        return EXPLAINERS[cfg.explainer](cfg, llm)
    client, profile = _profile_or_error("explainer", cfg.explainer, EXPLAINERS, llm)
    if cfg.best_of > 1 and profile.temperature == 0:  # the same prompt at temperature 0: the same draft, paid again
        raise UsageError(f"--best-of {cfg.best_of} at temperature 0 would write the same draft {cfg.best_of} times; "
                         f"set temperature > 0 in [models.{cfg.explainer}] or use --best-of 1")
    limits = AgentLimits(revise_rounds=cfg.revise_rounds, max_tool_calls=cfg.max_tool_calls,
                         max_unit_tokens=cfg.max_unit_tokens, best_of=cfg.best_of)
    return LLMExplainer(client, profile, limits=limits, checkpoint_path=f"{cfg.db}.agent.sqlite",
                        with_tools=cfg.max_tool_calls > 0)


def make_simulator(cfg: Config, llm: LLMContext) -> Simulator:
    if cfg.simulator in SIMULATORS:
        return SIMULATORS[cfg.simulator](cfg, llm)
    client, profile = _profile_or_error("simulator", cfg.simulator, SIMULATORS, llm)
    if profile.simulator_method == "all_at_once":
        return EchoSimulator(client, profile, windows_per_request=cfg.windows_per_request)
    return LLMSimulator(client, profile, windows_per_request=cfg.windows_per_request)


def make_judge(cfg: Config, llm: LLMContext | None) -> Judge:
    """The detection and fuzzing judge, ``cfg.judge``: "baseline" (the non-LLM floor, ``QuotedJudge``: quoted
    tokens of the explanation) or a model profile name (``LLMJudge``, ``cfg.judge_batch`` examples per request,
    through the run's ``llm``)."""
    if cfg.judge == "baseline":
        return QuotedJudge()
    if llm is None:
        raise ValueError(f"judge {cfg.judge!r} calls an LLM: pass the run's LLMContext")
    try:
        client, profile = llm.client(cfg.judge)
    except UsageError:
        if cfg.judge in llm.profiles or ":" in cfg.judge:
            raise  # a real profile whose key or URL is missing: that message says what to do
        known = ", ".join(["baseline", *sorted(llm.profiles)])
        raise UsageError(f"unknown judge {cfg.judge!r}; choose one of: {known}, or openai:MODEL "
                         "(define profiles as [models.NAME] in autointerp.toml)")
    return LLMJudge(client, profile, examples_per_request=cfg.judge_batch)


def make_classifiers(cfg: Config, llm: LLMContext | None, names: Sequence[Task] = ("detection", "fuzzing")
                     ) -> list[ClassificationScorer]:
    """One classification scorer per name (``cfg.judge_examples`` examples per class and split, seeded by
    ``cfg.seed``), sharing one judge."""
    judge = make_judge(cfg, llm)
    return [ClassificationScorer(name, judge, n_per_class=cfg.judge_examples, seed=cfg.seed) for name in names]


def make_scoring(cfg: Config | None, simulator: Simulator, llm: LLMContext | None = None) -> ScoringStage:
    """The run's scoring stage: the simulation scorer over ``simulator`` (the score of record), then the other
    scorers ``cfg.scorers`` names, in that order (``cfg`` None: simulation alone; ``llm``: the run's context, which
    an LLM judge calls through)."""
    others = [name for name in (cfg.scorers if cfg is not None else ()) if name != "simulation"]
    classifiers = make_classifiers(cfg, llm, others) if others else []
    return ScoringStage([SimulationScorer(simulator), *classifiers])
