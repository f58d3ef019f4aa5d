"""The run's components, chosen by name through registries: explainers, simulators, LLM clients, the unit space.

    >>> llm = LLMContext(cfg)                          # one client per LLM profile, one budget, calls logged to the DB
    >>> explainer, simulator = make_explainer(cfg, llm), make_simulator(cfg, llm)

``EXPLAINERS`` and ``SIMULATORS`` map a built-in name to a factory ``(config, llm context) -> component``; any other
name is an LLM profile (``[models.NAME]`` in autointerp.toml, or ``openai:MODEL``).
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

from autointerp.agent.base import Explainer
from autointerp.agent.baseline import BaselineExplainer
from autointerp.agent.graph import AgentLimits
from autointerp.agent.llm_explainer import LLMExplainer
from autointerp.config import Config
from autointerp.corpus import Corpus, bos_id, iter_token_windows, open_corpus
from autointerp.db import Store, check_db_target, open_db
from autointerp.errors import UsageError
from autointerp.llm.client import Budget, LLMClient
from autointerp.llm.profiles import SHORTHAND_PREFIX, ModelProfile, resolve_profile
from autointerp.scoring.baseline import BaselineSimulator
from autointerp.scoring.echo_simulator import EchoSimulator
from autointerp.scoring.llm_simulator import LLMSimulator
from autointerp.scoring.simulator import Simulator
from autointerp.subject.model import Subject
from autointerp.subject.units import GUARD_TOKENS, NEURONS, UnitSpace, check_reconstruction, load_unit_space


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


def unit_space(cfg: Config, subject, guard: bool = True) -> UnitSpace:
    """The run's units: the MLP neurons, or the features of ``cfg.dictionary`` (a folder) at ``cfg.layer`` and
    ``cfg.site`` (default: the dictionary's own). With ``guard`` an SAE first reconstructs a few thousand tokens of
    ``cfg.corpus`` at its site: the space's ``check`` holds FVU and mean L0; FVU > 1 is refused unless
    ``cfg.force_sae`` (``units.check_reconstruction``)."""
    if cfg.dictionary is None:
        return NEURONS
    space = load_unit_space(cfg.dictionary, cfg.layer, subject, cfg.site)
    if not guard:
        return space
    windows = iter_token_windows(open_corpus(cfg.corpus, cfg.seed), subject.tokenizer, cfg.window,
                                 -(-GUARD_TOKENS // cfg.window))
    return check_reconstruction(subject, space, cfg.layer, windows, cfg.force_sae, batch_size=cfg.batch_size)


def check_window(subject: Subject, window: int) -> None:
    """UsageError when a window (and the BOS token the model's tokenizer adds) does not fit the model's positions."""
    needed = window + (bos_id(subject.tokenizer) is not None)
    if subject.max_positions is not None and needed > subject.max_positions:
        raise UsageError(f"--window {window} needs {needed} positions but {subject.name} has "
                         f"{subject.max_positions}; use --window {window - needed + subject.max_positions} or less")


def check_corpus(corpus: Corpus, subject: Subject, window: int) -> None:
    """UsageError unless the corpus yields at least one window of ``window`` tokens (read until the first one)."""
    if next(iter_token_windows(corpus, subject.tokenizer, window, 1), None) is None:
        raise UsageError(f"corpus {corpus.spec!r} yields no window of {window} tokens (its documents are empty or "
                         "shorter); use a larger corpus or a smaller --window")


def existing_db(path: str | Path) -> Store | None:
    """The store at ``path`` when the file exists (checked as by ``open_db``), else None after checking that it can be
    created: a command opens its database early this way and creates it only once every input has been checked."""
    if Path(path).exists():
        return open_db(path)
    check_db_target(path)
    return None


def package_versions() -> dict[str, str]:
    names = ["autointerp", "torch", "transformers", "openai", "langgraph", "pydantic", "sqlite-utils", "numpy"]
    out = {}
    for n in names:
        try:
            out[n] = metadata.version(n)
        except metadata.PackageNotFoundError:
            pass
    return out
