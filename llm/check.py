"""Probe a model profile: is it reachable, does it return logprobs, does it make tool calls?

    >>> import asyncio
    >>> asyncio.run(check_profile(LLMClient(profile, "mini")))
    {'reachable': True, 'logprobs': True, 'tools': True, 'error': None}

Three small chat requests (a few tokens each). A probe that fails says so in ``error`` instead of raising.
"""

from __future__ import annotations

from typing import Any

from autointerp.llm.client import ChatModel, LLMError

_TOOL = {
    "type": "function",
    "function": {
        "name": "record_number",
        "description": "Record a number.",
        "parameters": {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]},
    },
}


async def check_profile(client: ChatModel) -> dict[str, Any]:
    result: dict[str, Any] = {"reachable": False, "logprobs": None, "tools": None, "error": None}
    ask = [{"role": "user", "content": "Reply with the single digit 7."}]
    try:
        reply = await client.chat(ask, purpose="check", max_tokens=5)
        result["reachable"] = bool(reply.raw)
        reply = await client.chat(ask, purpose="check", logprobs=True, top_logprobs=5, max_tokens=5)
        result["logprobs"] = bool(reply.logprobs) and any(t.top_logprobs for t in reply.logprobs)
        call = [{"role": "user", "content": "Call record_number with n = 7."}]
        reply = await client.chat(call, purpose="check", tools=[_TOOL], max_tokens=30)
        result["tools"] = any(c["name"] == "record_number" for c in reply.tool_calls)
    except LLMError as e:
        result["error"] = str(e)
    return result
