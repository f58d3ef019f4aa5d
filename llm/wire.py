"""Message shapes servers accept and what to change when one rejects a request: small pure functions, so the tests
pin the behaviour of real servers (llama.cpp's, vLLM's, OpenAI's) without them."""

from __future__ import annotations

from typing import Any

from autointerp.llm.types import Message


def sendable(message: Message) -> Message:
    """``message`` as servers accept it: an assistant turn with tool calls carries ``content: ""``, never ``null``
    (llama.cpp's server answers 500 to a null content; OpenAI and vLLM take either)."""
    if message.get("tool_calls") and message.get("content") is None:
        return {**message, "content": ""}
    return message


def rejected_hint(status: int, endpoint: str, params: dict[str, Any]) -> str:
    """What to change when a server rejects a request's shape (a 4xx, or the 500 some servers answer instead)."""
    if status == 404 and endpoint == "completions":
        return ("; the server has no /v1/completions endpoint: set simulator_method = \"generate\" in the model "
                "profile")
    if status in (400, 422, 500) and endpoint == "completions" and params.get("echo"):
        return ("; the server rejected echo with logprobs (the all-at-once simulator needs both): set "
                "simulator_method = \"generate\" in the model profile")
    if status in (400, 422) and params.get("tools"):
        return "; the server rejected tools: set supports_tools = false in the model profile"
    if status in (400, 422) and params.get("logprobs"):
        return "; the server rejected logprobs: set supports_logprobs = false in the model profile"
    return ""
