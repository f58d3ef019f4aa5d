"""The LLM room (imports only autointerp.errors): model profiles, the one chat seam and token counting.

    from autointerp.llm import LLMClient, ModelProfile, resolve_profile
        client = LLMClient(resolve_profile("openai:gpt-4o-mini", {}), "openai:gpt-4o-mini")   # needs OPENAI_API_KEY
    fake = FakeLLM()       # autointerp.testing.fake: the same seam, no network

Modules: ``profiles`` (ModelProfile, resolve_profile), ``client`` (ChatModel, LLMClient, ChatResult, CallRecord,
CallSink, Budget, errors), ``completions`` (the legacy ``/v1/completions`` endpoint), ``tokens`` (TokenCounter).
The test doubles (``FakeLLM``, ``FakeOpenAIServer``) live in their own room, ``autointerp.testing``.
"""

from __future__ import annotations

import importlib

# Names are loaded on first use, so that reading a profile (``autointerp.config``) does not import the OpenAI client.
_WHERE = {
    "Budget": "types", "BudgetExceeded": "types", "RunStop": "types", "CallRecord": "types", "CallSink": "types",
    "ChatResult": "types", "LLMError": "types", "EndpointMismatch": "types", "TokenLogprob": "types", "ToolCall": "types",
    "ChatModel": "client", "LLMClient": "client",
    "ModelProfile": "profiles", "resolve_profile": "profiles",
    "TokenCounter": "tokens",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module 'autointerp.llm' has no attribute {name!r}")
    return getattr(importlib.import_module(f"autointerp.llm.{_WHERE[name]}"), name)
