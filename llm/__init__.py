"""LLM access for autointerp: model profiles, the one chat seam, its fakes, and token counting.

    from autointerp.llm import LLMClient, ModelProfile, resolve_profile
        client = LLMClient(resolve_profile("openai:gpt-4o-mini", {}), "openai:gpt-4o-mini")   # needs OPENAI_API_KEY
    fake = FakeLLM()                                                                      # same seam, no network

Modules: ``profiles`` (ModelProfile, resolve_profile), ``client`` (ChatModel, LLMClient, ChatResult, CallRecord,
CallSink, Budget, errors), ``tokens`` (TokenCounter); and for tests and benchmarks, imported from their modules:
``fake`` (FakeLLM, in process) and ``server`` (FakeOpenAIServer, a local OpenAI-compatible HTTP server).
"""

from autointerp.llm.client import (
    Budget,
    BudgetExceeded,
    CallRecord,
    CallSink,
    ChatModel,
    ChatResult,
    LLMClient,
    LLMError,
    TokenLogprob,
    ToolCall,
)
from autointerp.llm.profiles import ModelProfile, resolve_profile
from autointerp.llm.tokens import TokenCounter

__all__ = [
    "Budget",
    "BudgetExceeded",
    "CallRecord",
    "CallSink",
    "ChatModel",
    "ChatResult",
    "LLMClient",
    "LLMError",
    "ModelProfile",
    "TokenCounter",
    "TokenLogprob",
    "ToolCall",
    "resolve_profile",
]
