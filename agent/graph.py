"""The explainer agent as a langgraph graph, built by a function that takes the model (never at import time).

    from autointerp.agent.graph import AgentLimits, UnitContext, build_explainer_graph, initial_state, recursion_limit
    limits = AgentLimits(revise_rounds=1, max_tool_calls=4)
    graph = build_explainer_graph(llm, limits=limits)                 # llm: any autointerp.llm ChatModel
    final = await graph.ainvoke(initial_state(), {"recursion_limit": recursion_limit(limits)},
                                context=UnitContext(record.for_explainer(), tools, judge))
    best_candidate(final["candidates"]), final["stop"], final["reason"]

The loop (docs/methods.md §2, Bills et al. 2023)::

    START -> draft -> llm --tool calls--> tools -> llm ...
                      llm --answer--> propose --unparseable, once--> llm (re-ask)
                                      propose --candidate--> validate --> draft (best-of-k) | revise -> llm | END

- ``draft`` opens a new conversation: the train windows (``AgentLimits.windows_shown`` of them) and a compact
  summary of ``UnitTools.statistics()`` (of the record's statistics without tools). ``revise`` opens one showing
  the best candidate so far, its valid score and the valid windows its simulation got most wrong.
- ``llm`` is the one node that calls the model. Tools are offered when the unit has ``UnitTools``, the profile
  ``supports_tools`` and tool calls are left (once they run out mid-conversation, with ``tool_choice="none"``);
  ``tools`` runs the calls (read-only: statistics, train windows, quantile windows, ``run_text``; no code
  execution). Bad arguments go back to the model as an error message.
- ``propose`` reads the ``EXPLANATION:`` line (``prompting.parse_explanation``); an unreadable answer is re-asked
  once per conversation, a second one ends the unit.
- ``validate`` asks the run owner's ``Judge`` (the scoring stage on ``valid``); when it simulated no window (it
  returns no worst windows), the unit ends ``stop="no_evidence"`` with the simulator's first error as the reason:
  a revision prompt always shows real windows. It runs only when there is a choice to make (``best_of > 1`` or ``revise_rounds > 0``): with neither, the unit costs exactly one LLM call.
  The best candidate is the one with the highest valid score (undefined scores lowest, ties to the earliest).

Budgets. ``best_of`` and ``revise_rounds`` are the planned work. ``max_tool_calls`` (all conversations of the unit
together) and ``max_tokens`` (prompt plus generated tokens of every call, checked before each call, so a unit
may pass it by one call) are hard caps: the turn that would pass one ends the unit with ``stop`` naming it and a
``reason``, as does a second unparseable answer. The explainer turns that into status ``gave_up``, with the best
candidate so far or, when there is none, no text (nothing to score).

State is plain JSON-able data, so a checkpointer can store it after every node; the unit's record, tools and
Judge are run-scoped ``UnitContext`` (langgraph's runtime context), never checkpointed.
"""

from __future__ import annotations

import json
import math
import operator
import warnings
from dataclasses import InitVar, dataclass
from typing import Annotated, Any, Literal, TypedDict

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import Runtime
from langgraph.types import Overwrite

from autointerp.agent.base import Judge
from autointerp.agent.prompting import (
    answer_format,
    draft_messages,
    read_explanation,
    reask_message,
    record_statistics,
    revise_message,
    scale,
    tool_specs,
    windows_text,
)
from autointerp.agent.tools import UnitTools
from autointerp.llm.client import ChatModel, Message
from autointerp.subject.records import UnitRecord, Window

Stop = Literal["max_tool_calls", "max_tokens", "unparseable", "no_evidence"]
Phase = Literal["draft", "revision"]
DEFAULT_WINDOWS_FROM_TOOLS = 4  # windows a window tool returns when the model gives no ``n``
MAX_TOOL_RESULT_CHARS = 6000  # longer tool results (statistics) are cut here, saying so


@dataclass(frozen=True)
class AgentLimits:
    """How much work the agent does per unit; every field is part of the explainer's config. The names are the
    config's (``autointerp.toml``, ``run`` flags); ``max_rounds``, ``best_of_k`` and ``max_tokens`` are accepted for
    one release, with a deprecation warning."""

    revise_rounds: int = 1  # revisions after the drafts (0: none)
    max_tool_calls: int = 4  # tool calls per unit over all its conversations (0: tools never offered); hard cap
    max_unit_tokens: int = 40_000  # prompt + generated tokens of the unit's LLM calls; hard cap, checked before a call
    best_of: int = 1  # independent drafts, the best on valid kept (needs temperature > 0 to differ)
    windows_shown: int = 10  # train windows in the draft prompt, strongest first
    max_rounds: InitVar[int | None] = None  # deprecated name of revise_rounds
    max_tokens: InitVar[int | None] = None  # deprecated name of max_unit_tokens
    best_of_k: InitVar[int | None] = None  # deprecated name of best_of

    def __post_init__(self, max_rounds: int | None, max_tokens: int | None, best_of_k: int | None) -> None:
        for old, new, value in (("max_rounds", "revise_rounds", max_rounds), ("max_tokens", "max_unit_tokens",
                                max_tokens), ("best_of_k", "best_of", best_of_k)):
            if value is not None:
                warnings.warn(f"AgentLimits({old}=...) is deprecated; use {new}=...", DeprecationWarning, stacklevel=3)
                object.__setattr__(self, new, value)
        counts = (self.revise_rounds, self.max_tool_calls)
        sizes = (self.max_unit_tokens, self.best_of, self.windows_shown)
        if min(counts) < 0 or min(sizes) < 1:
            raise ValueError(f"bad agent limits {self}: revise_rounds and max_tool_calls must be >= 0, "
                             "max_unit_tokens, best_of and windows_shown >= 1")


@dataclass(frozen=True)
class UnitContext:
    """What one unit's run may read besides its state (langgraph runtime context; not checkpointed)."""

    record: UnitRecord  # the record handed to the explainer: train windows only
    tools: UnitTools | None  # None: no tool loop, evidence from the record's own statistics
    judge: Judge | None  # None: no validation, so one draft and no revision


class Candidate(TypedDict):
    text: str  # the one-sentence explanation
    origin: str  # the conversation that wrote it: "draft 1", "revision 2", ...
    score: float | None  # pooled Pearson on valid; None when not validated, or undefined
    worst: list[dict[str, Any]]  # the judge's worst valid windows for it, shown if it is revised


class AgentState(TypedDict):
    messages: Annotated[list[Message], operator.add]  # the conversation in progress; draft/revise replace it
    phase: Phase  # what the conversation in progress is for
    drafts: int  # drafts started
    rounds: int  # revisions started
    reasked: bool  # the conversation in progress already had its one re-ask
    candidates: list[Candidate]  # every explanation proposed, in order
    stop: Stop | None  # the cap or failure that ended the unit early; None while going or after finishing the plan
    reason: str | None  # why, in words, when ``stop`` is set
    llm_calls: Annotated[int, operator.add]
    tool_calls: Annotated[int, operator.add]  # tool calls run (a refused call over the cap is not counted)
    tokens_in: Annotated[int, operator.add]
    tokens_out: Annotated[int, operator.add]
    cost_usd: Annotated[float, operator.add]


def initial_state() -> AgentState:
    return AgentState(messages=[], phase="draft", drafts=0, rounds=0, reasked=False, candidates=[], stop=None,
                      reason=None, llm_calls=0, tool_calls=0, tokens_in=0, tokens_out=0, cost_usd=0.0)


def recursion_limit(limits: AgentLimits) -> int:
    """Graph steps a unit can take at most: per conversation draft/revise, llm, propose, re-ask llm, propose and
    validate; plus an llm and a tools step per tool call, and the turn that hits a cap."""
    return 6 * (limits.best_of + limits.revise_rounds) + 2 * (limits.max_tool_calls + 1) + 4


def best_candidate(candidates: list[Candidate]) -> Candidate | None:
    """The candidate with the highest valid score (None scores lowest; ties go to the earliest)."""
    return max(candidates, key=lambda c: -math.inf if c["score"] is None else c["score"], default=None)


def build_explainer_graph(
    llm: ChatModel, *, limits: AgentLimits, checkpointer: BaseCheckpointSaver | None = None
) -> CompiledStateGraph:
    """The compiled agent graph for ``llm`` under ``limits``; run it per unit with a ``UnitContext``."""

    def tools_on(ctx: UnitContext) -> bool:
        return ctx.tools is not None and llm.profile.supports_tools and limits.max_tool_calls > 0

    def validating(ctx: UnitContext) -> bool:
        return ctx.judge is not None and (limits.best_of > 1 or limits.revise_rounds > 0)

    def calls_left(state: AgentState, ctx: UnitContext) -> int:
        return limits.max_tool_calls - state["tool_calls"] if tools_on(ctx) else 0

    def shown(ctx: UnitContext) -> list[Window]:
        return ctx.record.split("train")[: limits.windows_shown]

    def opening(state: AgentState, ctx: UnitContext) -> list[Message]:
        statistics = ctx.tools.statistics() if ctx.tools is not None else record_statistics(ctx.record)
        return draft_messages(ctx.record, statistics, shown(ctx), tool_calls_left=calls_left(state, ctx))

    async def draft(state: AgentState, runtime: Runtime[UnitContext]) -> dict[str, Any]:
        return {"messages": Overwrite(opening(state, runtime.context)), "phase": "draft",
                "drafts": state["drafts"] + 1, "reasked": False}

    async def revise(state: AgentState, runtime: Runtime[UnitContext]) -> dict[str, Any]:
        ctx = runtime.context
        best = best_candidate(state["candidates"])
        assert best is not None, "revise runs only after a candidate was validated"
        answer: Message = {"role": "assistant", "content": f"EXPLANATION: {best['text']}"}
        request = revise_message(best["text"], best["score"], best["worst"], scale(shown(ctx)))
        return {"messages": Overwrite([*opening(state, ctx), answer, request]), "phase": "revision",
                "rounds": state["rounds"] + 1, "reasked": False}

    async def call_llm(state: AgentState, runtime: Runtime[UnitContext]) -> dict[str, Any]:
        used = state["tokens_in"] + state["tokens_out"]
        if used >= limits.max_unit_tokens:
            return {"stop": "max_tokens",
                    "reason": f"max_unit_tokens cap ({limits.max_unit_tokens}) reached: the unit's LLM calls used {used} tokens"}
        ctx = runtime.context
        offer: dict[str, Any] = {}
        if calls_left(state, ctx) > 0:
            offer = {"tools": tool_specs()}
        elif any(m.get("tool_calls") for m in state["messages"]):  # ran out mid-conversation: answer now
            offer = {"tools": tool_specs(), "tool_choice": "none"}
        answer = answer_format(llm.profile.response_format)
        if answer is not None:
            offer["response_format"] = answer
        result = await llm.chat(state["messages"], purpose="explain" if state["phase"] == "draft" else "revise",
                                unit=str(ctx.record.id), **offer)
        message: Message = {"role": "assistant", "content": result.text or ""}  # "" with tool calls, never null
        if result.tool_calls:
            message["tool_calls"] = [
                {"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}}
                for c in result.tool_calls
            ]
        return {"messages": [message], "llm_calls": 1, "tokens_in": result.tokens_in,
                "tokens_out": result.tokens_out, "cost_usd": result.cost_usd}

    async def run_tools(state: AgentState, runtime: Runtime[UnitContext]) -> dict[str, Any]:
        ctx = runtime.context
        calls = state["messages"][-1]["tool_calls"]
        left = calls_left(state, ctx)
        if len(calls) > left:
            return {"stop": "max_tool_calls",
                    "reason": f"max_tool_calls cap ({limits.max_tool_calls}) reached: the model asked for "
                              f"{len(calls)} more tool call(s) with {left} left"}
        assert ctx.tools is not None  # tools_on
        m = scale(shown(ctx))
        results = [
            {"role": "tool", "tool_call_id": call["id"],
             "content": f"{run_tool(ctx.tools, call['function']['name'], call['function']['arguments'], m)}\n"
                        f"({left - i} tool call(s) left)"}
            for i, call in enumerate(calls, start=1)
        ]
        return {"messages": results, "tool_calls": len(calls)}

    async def propose(state: AgentState) -> dict[str, Any]:
        sentence, problem = read_explanation(state["messages"][-1]["content"] or "")
        if sentence is not None:
            n = state["drafts"] if state["phase"] == "draft" else state["rounds"]
            candidate = Candidate(text=sentence, origin=f"{state['phase']} {n}", score=None, worst=[])
            return {"candidates": [*state["candidates"], candidate]}
        if not state["reasked"]:
            return {"messages": [reask_message(problem)], "reasked": True}
        return {"stop": "unparseable",
                "reason": f"no acceptable EXPLANATION line in the {state['phase']} answer, even after one re-ask "
                          f"({problem})"}

    async def validate(state: AgentState, runtime: Runtime[UnitContext]) -> dict[str, Any]:
        judge = runtime.context.judge
        assert judge is not None  # validating
        *older, latest = state["candidates"]
        verdict = await judge.validate(latest["text"])
        score, worst = verdict.score, list(verdict.worst)
        score = score if score is not None and math.isfinite(score) else None
        update: dict[str, Any] = {"candidates": [*older, Candidate(**{**latest, "score": score, "worst": worst})]}
        if not worst:  # nothing to revise on, nor to choose between drafts by: no revision without windows
            why = f" ({verdict.error})" if verdict.error else ""
            update.update(stop="no_evidence",
                          reason=f"validation could not simulate any valid window{why}; no revision without windows")
        return update

    def after_llm(state: AgentState) -> Literal["tools", "propose", "__end__"]:
        if state["stop"] is not None:
            return END
        return "tools" if state["messages"][-1].get("tool_calls") else "propose"

    def after_tools(state: AgentState) -> Literal["llm", "__end__"]:
        return END if state["stop"] is not None else "llm"

    def after_propose(state: AgentState, runtime: Runtime[UnitContext]) -> Literal["llm", "validate", "__end__"]:
        if state["stop"] is not None:
            return END
        if state["messages"][-1]["role"] == "user":  # propose re-asked
            return "llm"
        return "validate" if validating(runtime.context) else END

    def after_validate(state: AgentState) -> Literal["draft", "revise", "__end__"]:
        if state["stop"] is not None:
            return END
        if state["drafts"] < limits.best_of:
            return "draft"
        return "revise" if state["rounds"] < limits.revise_rounds else END

    builder = StateGraph(AgentState, context_schema=UnitContext)
    builder.add_node("draft", draft)
    builder.add_node("revise", revise)
    builder.add_node("llm", call_llm)
    builder.add_node("tools", run_tools)
    builder.add_node("propose", propose)
    builder.add_node("validate", validate)
    builder.add_edge(START, "draft")
    builder.add_edge("draft", "llm")
    builder.add_edge("revise", "llm")
    builder.add_conditional_edges("llm", after_llm, ["tools", "propose", END])
    builder.add_conditional_edges("tools", after_tools, ["llm", END])
    builder.add_conditional_edges("propose", after_propose, ["llm", "validate", END])
    builder.add_conditional_edges("validate", after_validate, ["draft", "revise", END])
    return builder.compile(checkpointer=checkpointer)


class ToolArgumentError(ValueError):
    """The model's arguments for a tool do not fit its schema; the message goes back to the model."""


def run_tool(tools: UnitTools, name: str, arguments: str, m: float) -> str:
    """Run one tool call and return its result as text for the model; bad calls return ``error: ...``.

    Windows and ``run_text`` activations are shown as ``token<TAB>value`` lines normalised by ``m`` (the draft's
    scale). Arguments are checked against the schema in ``prompts/explainer_tools.json``; a ``ValueError`` from the
    tool itself (e.g. text it cannot run) is reported to the model the same way.
    """
    specs = {spec["function"]["name"]: spec["function"]["parameters"] for spec in tool_specs()}
    if name not in specs:
        return f"error: there is no tool {name!r}; the tools are {', '.join(specs)}"
    try:
        args = _checked_arguments(arguments, specs[name])
        if name == "statistics":
            text = json.dumps(tools.statistics(), ensure_ascii=False, default=str)
            return text if len(text) <= MAX_TOOL_RESULT_CHARS else text[:MAX_TOOL_RESULT_CHARS] + " ... (cut)"
        if name == "run_text":
            pairs = tools.run_text(args["text"])
            if not pairs:
                return "the text has no tokens"
            return windows_text([([t for t, _ in pairs], [a for _, a in pairs])], m)
        n = args.get("n", DEFAULT_WINDOWS_FROM_TOOLS)
        if name == "train_windows":
            windows = tools.train_windows(offset=args["offset"], n=n)
        else:
            if args["lo"] >= args["hi"]:
                raise ToolArgumentError(f"lo ({args['lo']}) must be below hi ({args['hi']})")
            windows = tools.quantile_windows(args["lo"], args["hi"], n=n)
        if not windows:
            return "no windows match"
        return windows_text([(w.tokens, w.activations) for w in windows], m)
    except ValueError as exc:
        return f"error: {exc}"


def _checked_arguments(arguments: str, schema: dict[str, Any]) -> dict[str, Any]:
    """The JSON ``arguments`` as a dict that fits ``schema`` (the subset the tool schemas use), else an error."""
    try:
        args = json.loads(arguments or "{}")
    except ValueError:
        raise ToolArgumentError(f"arguments are not JSON: {arguments[:200]!r}") from None
    if not isinstance(args, dict):
        raise ToolArgumentError("arguments must be a JSON object")
    properties = schema["properties"]
    if unknown := sorted(set(args) - set(properties)):
        raise ToolArgumentError(f"unknown argument(s) {', '.join(unknown)}; allowed: {', '.join(properties) or 'none'}")
    if missing := sorted(set(schema.get("required", [])) - set(args)):
        raise ToolArgumentError(f"missing argument(s) {', '.join(missing)}")
    kinds = {"integer": (int,), "number": (int, float), "string": (str,)}
    for key, value in args.items():
        spec = properties[key]
        if isinstance(value, bool) or not isinstance(value, kinds[spec["type"]]):
            raise ToolArgumentError(f"{key} must be a {spec['type']}, not {json.dumps(value)[:50]}")
        size = len(value) if isinstance(value, str) else value
        low, high = spec.get("minimum", spec.get("minLength")), spec.get("maximum", spec.get("maxLength"))
        if (low is not None and size < low) or (high is not None and size > high):
            raise ToolArgumentError(f"{key} must be between {low} and {high}" +
                                    (" characters long" if isinstance(value, str) else ""))
    return args
