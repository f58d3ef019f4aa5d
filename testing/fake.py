"""An in-process fake chat model that plugs into the same seam as ``LLMClient`` (no HTTP, no key).

    import asyncio
    from autointerp.testing.fake import FakeLLM
    from autointerp.testing.server import Reply

    def responder(messages, tools, logprobs):
        if tools:
            return Reply(tool_calls=[("show_examples", {"n": 3})])
        return "Fires on the token \\"def\\"."      # a plain string is the reply text

    fake = FakeLLM(responder)
    result = asyncio.run(fake.chat([{"role": "user", "content": "explain"}], purpose="explain"))
    result.text, fake.totals.calls                 # ('Fires on the token "def".', 1)

A responder gets ``(messages, tools, logprobs)`` and returns what the model does, in the vocabulary of
``autointerp.testing.server``: a ``Reply`` (text, tool calls, per-token top logprobs) or a string, or a failure
(``HTTPFailure``, ``Garbage``, ``Hang``, ``ProxyPage``, ``BodyError``, ``CutStream``), which goes through the same retries as a real endpoint's. Replies become
response bodies with ``server.completion_dict``, the fake server's own encoder, and are parsed, counted, budgeted and
logged to the sink by the same ``ChatModelBase`` code as ``LLMClient``. The default responder is the fake server's
``default_handler``: a deterministic simulator and explainer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from autointerp.llm.client import (
    Budget,
    CallSink,
    ChatModelBase,
    Message,
    RequestTimedOut,
    status_failure,
)
from autointerp.llm.profiles import ModelProfile
from autointerp.testing.echo_model import EchoModel, TextReply, text_completion_dict
from autointerp.llm.failures import page_reason
from autointerp.llm.types import ProtocolMismatch, StreamCut
from autointerp.testing.server import (
    BodyError,
    CutStream,
    Garbage,
    Hang,
    HTTPFailure,
    Outcome,
    ProxyPage,
    completion_dict,
    default_handler,
)

Responder = Callable[[list[Message], list[dict[str, Any]] | None, bool], Outcome | str]


def default_responder(messages: list[Message], tools: list[dict[str, Any]] | None, logprobs: bool) -> Outcome:
    """The fake server's ``default_handler``, called in process."""
    return default_handler({"messages": messages})


class FakeLLM(ChatModelBase):
    """A ``ChatModel`` whose replies come from ``responder``; accounting, retries and sink as ``LLMClient``."""

    def __init__(
        self,
        responder: Responder = default_responder,
        profile: ModelProfile | None = None,
        name: str = "fake",
        sink: CallSink | None = None,
        budget: Budget | None = None,
        completion_handler: Callable[[dict[str, Any]], Outcome | str] | None = None,
        **options: Any,
    ):
        super().__init__(profile or ModelProfile(model="fake-model"), name, sink, budget, **options)
        self.responder = responder
        self.completion_handler = completion_handler or EchoModel()  # answers ``complete`` (/v1/completions)

    async def _send(self, params: dict[str, Any]) -> dict[str, Any]:
        outcome = self.responder(params["messages"], params.get("tools"), bool(params.get("logprobs")))
        return await self._answer(outcome, params)

    async def _send_completion(self, params: dict[str, Any]) -> dict[str, Any]:
        request = {k: v for k, v in params.items() if k != "extra_body"} | params.get("extra_body", {})  # as sent
        return await self._answer(self.completion_handler(request), params)

    async def _answer(self, outcome: Outcome | str, params: dict[str, Any]) -> dict[str, Any]:
        timeout_s = params.get("timeout", self.profile.timeout_s)
        if isinstance(outcome, HTTPFailure):
            raise status_failure(outcome.status, outcome.message, outcome.retry_after_s)
        if isinstance(outcome, Hang):
            await asyncio.sleep(min(outcome.seconds, timeout_s))
            raise RequestTimedOut(f"no answer within {timeout_s:g} s (timeout_s)")
        if isinstance(outcome, Garbage):  # as the real client reads it (``ChatModelBase._decode``)
            raise ProtocolMismatch(f"response body is not JSON: {outcome.text[:200]!r}",
                                   "answered HTTP 200 with a body that is not a JSON object")
        if isinstance(outcome, ProxyPage):
            raise status_failure(outcome.status, page_reason(f"<title>{outcome.title}</title>"))
        if isinstance(outcome, BodyError):
            return {"error": {"message": outcome.message, "type": outcome.type, "code": outcome.code}}
        if isinstance(outcome, CutStream):
            raise StreamCut("the stream was cut mid-reply (CutStream)")
        if isinstance(outcome, TextReply):
            return text_completion_dict(outcome, params)
        return completion_dict(outcome, params)
