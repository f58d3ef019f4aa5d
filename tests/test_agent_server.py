"""The LLM explainer over the real ``openai`` client (LLMClient) against the local FakeOpenAIServer: tool calls
and their results go over HTTP in the chat-completions wire format, and the explanation comes back."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from autointerp.agent.graph import AgentLimits
from autointerp.agent.llm_explainer import LLMExplainer
from autointerp.llm.client import LLMClient
from autointerp.llm.profiles import ModelProfile
from autointerp.testing.server import FakeOpenAIServer, Reply

from fakes import SELF, SELF_TEXT, FakeTools, FakeJudge, planted_record

HYPOTHESIS = "class A:\n    def f(self):\n        return self.x\n"


def handler(request: dict[str, Any]) -> Reply:
    """A run_text call testing a hypothesis while tools may be called and none was made yet; else the answer."""
    may_call = "tools" in request and request.get("tool_choice") != "none"
    if may_call and not any(m["role"] == "tool" for m in request["messages"]):
        return Reply(tool_calls=[("run_text", {"text": HYPOTHESIS})])
    return Reply(text=f"It fires on self before attribute access.\n{SELF}")


async def explain_over_http(limits: AgentLimits, validate=None) -> tuple[Any, list[dict[str, Any]]]:
    with FakeOpenAIServer(handler) as server:
        profile = ModelProfile(model="fake-model", base_url=server.base_url, max_retries=0, timeout_s=10)
        async with LLMClient(profile, "local") as client:
            explainer = LLMExplainer(client, profile, FakeTools, limits)
            out = await explainer.explain(planted_record().for_explainer(), validate)
        return out, server.requests


def test_tool_call_and_answer_over_http():
    out, requests = asyncio.run(explain_over_http(AgentLimits(revise_rounds=0, max_tool_calls=2)))
    assert (out.text, out.status, out.explainer) == (SELF_TEXT, "done", "local")
    assert len(requests) == 2 and out.details["llm_calls"] == 2 and out.details["tool_calls"] == 1
    assert [t["function"]["name"] for t in requests[0]["tools"]] == [
        "statistics", "train_windows", "quantile_windows", "run_text"]
    call, result = requests[1]["messages"][-2:]
    assert call["role"] == "assistant" and call["tool_calls"][0]["id"] == "call_0"
    assert json.loads(call["tool_calls"][0]["function"]["arguments"]) == {"text": HYPOTHESIS}
    assert result["role"] == "tool" and result["tool_call_id"] == "call_0"
    assert " self\t10" in result["content"] and "(1 tool call(s) left)" in result["content"]
    assert "tool_choice" not in requests[1]
    assert out.details["tokens_in"] > 0 and out.details["tokens_out"] > 0


def test_spent_tool_budget_asks_for_an_answer_with_tool_choice_none():
    record = planted_record()
    out, requests = asyncio.run(explain_over_http(AgentLimits(revise_rounds=1, max_tool_calls=1), FakeJudge(record)))
    assert out.status == "done" and out.details["tool_calls"] == 1
    assert requests[1]["tool_choice"] == "none"  # the one call is spent, mid-conversation
    assert "tools" not in requests[2]  # the revision starts a fresh conversation with no calls left
    assert "more tool call" not in requests[2]["messages"][0]["content"]
