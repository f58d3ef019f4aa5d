"""Response bodies for the LLM seam, and ``/v1/completions``: parsing a chat completion (``_result``) and a text
completion (``_text_result``), and ``complete``; mixed into ``ChatModelBase`` (``autointerp.llm.client``), which gives
them the budget, the concurrency slot, retries, logging and key scrubbing (``_call``; a body reaches the parsers
already scrubbed, ``_decode``)."""

from __future__ import annotations

import time
from typing import Any

from autointerp.llm.secrets import shorten
from autointerp.llm.types import ChatResult, CompletionResult, LLMError, ProtocolMismatch, TokenLogprobs, ToolCall


class CompletionsMixin:
    """``complete`` (one legacy text completion through the same ``_call`` as ``chat``) and body parsing."""

    async def complete(
        self,
        prompt: str,
        *,
        purpose: str,
        logprobs: int | None = None,
        echo: bool = False,
        max_tokens: int = 1,
        unit: str | None = None,
        **extra: Any,
    ) -> CompletionResult:
        """One legacy text completion (``/v1/completions``): with ``echo`` and ``logprobs = N`` the response holds every
        prompt token with its N most likely alternatives (what the all-at-once simulator reads). Served by
        llama.cpp's and vLLM's OpenAI-compatible servers, not by OpenAI's current models."""
        params: dict[str, Any] = {"model": self.profile.model, "prompt": prompt, "max_tokens": max_tokens,
                                  "temperature": self.profile.temperature, "echo": echo, **extra}
        if logprobs is not None:
            params["logprobs"] = logprobs
        tokens_in = self.token_counter.count(prompt)
        echoed = tokens_in if echo and logprobs is not None else 0
        params["timeout"] = self.profile.request_timeout_s(tokens_in, max_tokens, echoed)
        return await self._call(lambda: self._send_completion(params), params, [{"role": "prompt", "content": prompt}],
                                purpose, unit, tokens_in, self._text_result)

    async def _send_completion(self, params: dict[str, Any]) -> dict[str, Any] | str:
        """Send one ``/v1/completions`` request (``params["timeout"]``: seconds to wait); as ``_send``."""
        raise LLMError(f"{type(self).__name__} has no /v1/completions endpoint")

    def _text_result(self, body: dict[str, Any], tokens_in_estimate: int, started: float) -> CompletionResult:
        """Parse a ``/v1/completions`` body; a body that is not a text completion is worth a retry."""
        try:
            choice = body["choices"][0]
            text = choice["text"] or ""
            logprobs = choice.get("logprobs") or None
            tokens = offsets = top = None
            if logprobs is not None:
                tokens = [str(t) for t in logprobs["tokens"]]
                top = list(logprobs.get("top_logprobs") or [None] * len(tokens))
                offsets = logprobs.get("text_offset")
                offsets = None if offsets is None else [int(o) for o in offsets]
            usage = body.get("usage") or {}
        except (KeyError, IndexError, TypeError, AttributeError, ValueError) as exc:
            reason = f"response is not a text completion ({shorten(repr(exc), 100, self._secrets)}): "
            raise ProtocolMismatch(reason + shorten(str(body), 200, self._secrets),
                                   "answered /v1/completions with JSON that is not a text completion") from None
        tokens_in = int(usage.get("prompt_tokens") or tokens_in_estimate)
        tokens_out = int(usage.get("completion_tokens") or 0)
        return CompletionResult(
            text=text, tokens=tokens, text_offset=offsets, top_logprobs=top, tokens_in=tokens_in,
            tokens_out=tokens_out, latency_s=time.monotonic() - started,
            cost_usd=self.profile.cost_usd(tokens_in, tokens_out), finish_reason=choice.get("finish_reason"),
            raw=body,
        )

    def _result(self, body: dict[str, Any], tokens_in_estimate: int, started: float) -> ChatResult:
        """Parse a response body; a body that is not a chat completion is worth a retry."""
        try:
            choice = body["choices"][0]
            message = choice["message"]
            text = message.get("content") or ""
            tool_calls: list[ToolCall] = [
                {"id": c["id"], "name": c["function"]["name"], "arguments": c["function"].get("arguments") or ""}
                for c in message.get("tool_calls") or []
            ]
            content_logprobs = (choice.get("logprobs") or {}).get("content")
            logprobs = None if content_logprobs is None else TokenLogprobs(content_logprobs)
            usage = body.get("usage") or {}
        except (KeyError, IndexError, TypeError, AttributeError, ValueError) as exc:
            reason = f"response is not a chat completion ({shorten(repr(exc), 100, self._secrets)}): "
            raise ProtocolMismatch(reason + shorten(str(body), 200, self._secrets),
                                   "answered with JSON that is not a chat completion (no choices[0].message)") from None
        tokens_in = int(usage.get("prompt_tokens") or tokens_in_estimate)
        tokens_out = int(usage.get("completion_tokens") or self.token_counter.count(text))
        return ChatResult(
            text=text,
            tool_calls=tool_calls,
            logprobs=logprobs,
            tokens_in=tokens_in,
            tokens_out=tokens_out,
            latency_s=time.monotonic() - started,
            cost_usd=self.profile.cost_usd(tokens_in, tokens_out),
            finish_reason=choice.get("finish_reason"),
            raw=body,
            stopped=body.get("autointerp_stopped"),
        )
