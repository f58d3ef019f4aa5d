"""The LLM explainer: the Explainer for model profiles, running the agent graph (``agent/graph.py``) per unit.

    from autointerp.agent.graph import AgentLimits
    from autointerp.agent.llm_explainer import LLMExplainer
    from autointerp.llm import LLMClient, resolve_profile

    profile = resolve_profile("mini", cfg.models)
    explainer = LLMExplainer(LLMClient(profile, "mini", sink, budget), profile, tools_factory=make_unit_tools,
                             limits=AgentLimits(revise_rounds=1, max_tool_calls=4),
                             checkpoint_path="autointerp.db.agent.sqlite")
    explanation = await explainer.explain(record.for_explainer(), judge, thread=f"{run_id}:{record.id}")
    explanation.status, explanation.reason, explanation.details["llm_calls"]
    explainer.estimate(record, TokenCounter())       # expected calls and tokens per unit, before spending

Tools. Each unit's tools are handed to ``explain(..., tools=...)`` (the pipeline builds a ``SubjectUnitTools`` from
the unit's full record, so that its quantile windows stay clear of valid and test; build the explainer with
``with_tools=True`` so that its config, and the run key, say tools are used); or ``tools_factory`` is called once per
unit with the train-only record. Tools must never hand the agent a way to read valid or test activations.

Outcomes. ``done``: the agent finished its plan (drafts, validation, revisions); the text is the candidate with the
best valid score. ``gave_up``: a hard cap (``max_tool_calls``, ``max_tokens``), a second unacceptable answer, or a
validation that could not simulate a single window (``no_evidence``: no revision without windows) ended the unit;
the text is the best candidate so far (empty when there is none yet: not scored) and ``reason`` says which; a
retry would end the same way, so a resumed run does not retry it. ``failed`` (empty text): an ``LLMError`` (its
message is the reason), retried when the run is resumed. A unit whose statistics say it never fires
is answered without any LLM call: ``Never fires (dead on N tokens).``

``details``: ``llm_calls``, ``tokens_in``, ``tokens_out``, ``cost_usd``, ``tool_calls`` (the explainer's own
calls; the judge's simulations are the scoring stage's), ``drafts``, ``rounds`` (revisions), ``candidates``
(text, origin and valid score of each), ``chosen`` (origin of the text returned) and ``stop``.

``RunStop`` (``BudgetExceeded``, an endpoint that fails the same way on every call) is not turned into an outcome:
it propagates out of ``explain`` (from the agent's calls or the judge's) so the run owner can stop the run cleanly; the unit's checkpoint is kept, so the next session resumes.

Checkpoints. With ``checkpoint_path``, the agent's state is saved after every graph step in that SQLite file (its
own file, never the results DB) by langgraph's ``AsyncSqliteSaver``, under the ``thread`` the caller names (the run
owner passes ``f"{run_id}:{unit}"``). Calling
``explain`` again for a unit whose run was interrupted (an ``LLMError``, ``BudgetExceeded``, a cancelled task, a
killed process) resumes it from its last completed step: finished LLM calls and validations are not repeated. A
unit whose graph runs to its end (done or gave_up) has its thread deleted (its
result lives in the results DB), so the file only holds interrupted units, and a new attempt at such a unit
starts from the draft. Each ``explain`` opens its own connection (SQLite in WAL mode, so concurrent units can share the
file), and closes it before returning.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict
from typing import Any

from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

from autointerp.agent.base import Explanation, Judge
from autointerp.agent.graph import (
    AgentLimits,
    UnitContext,
    best_candidate,
    build_explainer_graph,
    initial_state,
    recursion_limit,
)
from autointerp.agent.prompting import PROMPT_FILES, draft_messages, record_statistics, revise_message, scale
from autointerp.agent.tools import UnitTools
from autointerp.llm.client import ChatModel, LLMError
from autointerp.llm.types import RunStop
from autointerp.llm.profiles import ModelProfile
from autointerp.llm.tokens import Estimate, TokenCounter
from autointerp.prompts.render import templates_sha256
from autointerp.subject.records import UnitRecord

USAGE_KEYS = ("llm_calls", "tokens_in", "tokens_out", "cost_usd", "tool_calls", "drafts", "rounds")
TYPICAL_ANSWER = 'Thinking it over.\nEXPLANATION: The token " self" when a method body reads one of its attributes.'
WORST_WINDOWS = 4  # valid windows a revision prompt typically shows (the run owner's judge returns 4)


class LLMExplainer:
    """Explainer backed by any ``ChatModel`` (``LLMClient``, ``FakeLLM``). See the module docstring."""

    is_baseline = False

    def __init__(
        self,
        llm: ChatModel,
        profile: ModelProfile,
        tools_factory: Callable[[UnitRecord], UnitTools] | None = None,
        limits: AgentLimits = AgentLimits(),
        checkpoint_path: str | None = None,
        with_tools: bool = False,
    ):
        if profile != llm.profile:
            raise ValueError(f"profile {profile.model!r} is not the profile of chat model {llm.name!r}")
        self.llm = llm
        self.profile = profile
        self.name = llm.name  # the profile's registry name
        self.tools_factory = tools_factory  # called with the train-only record of each unit (see the docstring)
        self.with_tools = with_tools  # the caller hands each unit's tools to ``explain`` (``tools=``)
        self.limits = limits
        self.checkpoint_path = checkpoint_path
        self._saver: AsyncSqliteSaver | None = None  # one checkpointer for every unit of the run (see _checkpointer)
        self._saver_cm: Any = None
        self._saver_loop: asyncio.AbstractEventLoop | None = None
        self._saver_lock: asyncio.Lock | None = None
        self._compiled: tuple[Any, Any] | None = None  # (checkpointer, graph compiled with it): one per run

    def _graph(self, saver: AsyncSqliteSaver | None) -> Any:
        """The explainer graph, compiled once per checkpointer (the per-unit state lives in ``context`` and the
        thread id, not in the graph)."""
        if self._compiled is None or self._compiled[0] is not saver:
            self._compiled = (saver, build_explainer_graph(self.llm, limits=self.limits, checkpointer=saver))
        return self._compiled[1]

    def config(self) -> dict[str, Any]:
        """Everything that determines the explanations (part of the run key): the profile's identity (not its
        operational settings: ``autointerp.llm.profiles.OPERATIONAL``), limits, tools, prompt files."""
        return {
            "kind": "llm",
            "name": self.name,
            "profile": self.profile.identity(),
            "limits": asdict(self.limits),
            "tools": self.uses_tools,
            "prompt_sha256": templates_sha256(*PROMPT_FILES),
        }

    @property
    def uses_tools(self) -> bool:
        """Whether units get the tool loop (tools given, supported by the profile, and allowed by the limits)."""
        offered = self.tools_factory is not None or self.with_tools
        return offered and self.profile.supports_tools and self.limits.max_tool_calls > 0

    @property
    def validations(self) -> int:
        """Candidates judged on valid per unit: every draft and revision, when it chooses or revises at all."""
        validating = self.limits.best_of > 1 or self.limits.revise_rounds > 0
        return self.limits.best_of + self.limits.revise_rounds if validating else 0

    def estimate(self, record: UnitRecord, counter: TokenCounter) -> Estimate:
        """Expected LLM usage for one unit like ``record``, before spending: every draft and revision, and every
        allowed tool call (each re-sends about the draft prompt), each answered with a typical reply; re-asks are
        not counted, and the Validator's simulations are the simulator's. Reads only the train windows."""
        record = record.for_explainer()
        train = record.split("train")[: self.limits.windows_shown]
        tool_calls = self.limits.max_tool_calls if self.uses_tools else 0
        draft = draft_messages(record, record_statistics(record), train, tool_calls_left=tool_calls)
        worst = [{"tokens": list(w.tokens), "activations": list(w.activations), "predictions": [0.0] * len(w.tokens)}
                 for w in train[:WORST_WINDOWS]]
        revision = [*draft, {"role": "assistant", "content": TYPICAL_ANSWER},
                    revise_message(TYPICAL_ANSWER, 0.5, worst, scale(train))]
        calls = self.limits.best_of + self.limits.revise_rounds + tool_calls
        tokens_in = ((self.limits.best_of + tool_calls) * counter.count_messages(draft)
                     + self.limits.revise_rounds * counter.count_messages(revision))
        return Estimate(calls, tokens_in, calls * counter.count(TYPICAL_ANSWER), counter.method)

    async def explain(self, record: UnitRecord, judge: Judge | None = None, *,
                      tools: UnitTools | None = None, thread: str = "") -> Explanation:
        record = record.for_explainer()  # whatever the caller hands over, only train windows go further
        if record.stats.dead:
            text = f"Never fires (dead on {record.stats.n_tokens} tokens)."
            return Explanation(text, explainer=self.name, details={"dead": True, **dict.fromkeys(USAGE_KEYS, 0)})
        if tools is None and self.tools_factory is not None:
            tools = self.tools_factory(record)
        context = UnitContext(record=record, tools=tools, judge=judge)
        thread_id = thread or str(record.id)
        config = {"configurable": {"thread_id": thread_id}, "recursion_limit": recursion_limit(self.limits)}
        async with self._checkpointer() as saver:
            graph = self._graph(saver)
            start = initial_state()
            if saver is not None:
                if (await graph.aget_state(config)).next:
                    start = None  # resume the interrupted run from its last completed step
                else:
                    await saver.adelete_thread(thread_id)
            try:
                durability = None if saver is None else "sync"  # "sync": each step is on disk before the next
                final = await graph.ainvoke(start, config, context=context, durability=durability)
            except RunStop:
                raise
            except LLMError as exc:
                values = (await graph.aget_state(config)).values if saver is not None else {}
                details = {**_usage(values), "resumable": saver is not None}
                return Explanation("", status="failed", reason=f"LLM call failed: {exc}", explainer=self.name,
                                   details=details)
            if saver is not None:
                await saver.adelete_thread(thread_id)
        return self._outcome(final)

    @contextlib.asynccontextmanager
    async def _checkpointer(self) -> AsyncIterator[AsyncSqliteSaver | None]:
        """The run's checkpointer, opened once per event loop and shared by every unit: a connection (and its
        aiosqlite thread) per unit, each step fsynced, cost more CPU than the whole LLM exchange at 16 units in
        flight. WAL with synchronous=NORMAL keeps every committed step across a crash of this process."""
        if self.checkpoint_path is None:
            yield None
            return
        loop = asyncio.get_running_loop()
        if self._saver_loop is not loop:  # a new asyncio.run: the old connection belongs to a closed loop
            self._saver = self._saver_cm = None
            self._saver_loop, self._saver_lock = loop, asyncio.Lock()
        async with self._saver_lock:
            if self._saver is None:
                self._saver_cm = AsyncSqliteSaver.from_conn_string(self.checkpoint_path)
                saver = await self._saver_cm.__aenter__()
                await saver.conn.execute("PRAGMA journal_mode=WAL")
                await saver.conn.execute("PRAGMA synchronous=NORMAL")
                self._saver = saver
        yield self._saver

    async def aclose(self) -> None:
        """Close the shared checkpointer (the pipeline calls this when the run's units are done)."""
        if self._saver_cm is not None and self._saver_loop is asyncio.get_running_loop():
            await self._saver_cm.__aexit__(None, None, None)
        self._saver = self._saver_cm = self._saver_loop = None
        self._compiled = None

    def _outcome(self, final: dict[str, Any]) -> Explanation:
        best = best_candidate(final["candidates"])
        details = {
            **_usage(final),
            "candidates": [{"text": c["text"], "origin": c["origin"], "valid_score": c["score"]}
                           for c in final["candidates"]],
            "chosen": None if best is None else best["origin"],
            "stop": final["stop"],
        }
        if best is None:  # stopped before any acceptable sentence: the explainer gave up (an error is "failed")
            status = "gave_up" if final["stop"] is not None else "failed"
            return Explanation("", status=status, reason=final["reason"], explainer=self.name, details=details)
        status = "done" if final["stop"] is None else "gave_up"
        return Explanation(best["text"], status=status, reason=final["reason"], explainer=self.name, details=details)


def _usage(values: dict[str, Any]) -> dict[str, Any]:
    return {key: values.get(key, 0) for key in USAGE_KEYS}
