"""Probe a model endpoint: what it serves, so a profile can say what the tool may ask of it.

    >>> import asyncio
    >>> asyncio.run(check_profile(LLMClient(probing(profile), "smol")))
    {'reachable': True, 'chat': True, 'tools': False, 'logprobs': True, 'echo': True, 'echo_shift': 1,
     'escapes_html': False, 'latency_s': 0.41, 'parallel': 1, 'response_formats': ['json_object'],
     'simulator_methods': ['all_at_once', 'generate'],
     'errors': {'tools': '...'}}

Small requests, a few tokens each, every probe on its own (one that fails is recorded in ``errors`` and the others
go on), whatever the profile claims (``probing`` turns its ``supports_*`` on and its retries off):

- ``chat``: a chat completion answers; ``latency_s`` is its wall time (one short reply, the server's floor).
- ``tools``: a request offering one function comes back with a call to it.
- ``logprobs``: a chat reply carries ``top_logprobs`` (what the ``generate`` simulator reads).
- ``echo``: ``/v1/completions`` with ``echo`` and ``logprobs`` returns the prompt's tokens with their alternatives
  (what the ``all_at_once`` simulator reads); ``echo_shift`` is 1 when entry i predicts token i + 1 (llama-cpp-python
  with a model that has no BOS token), else 0.
- ``escapes_html``: the chat template HTML-escapes message text (llama-cpp-python's function-calling formats): a
  message with ``<start> <end>`` tags then takes several prompt tokens more than the same with ``[start] [end]``
  (from the server's ``usage``; None when it reports none). That corrupts the ``generate`` simulator's prompt; the
  ``all_at_once`` one sends raw text and is not affected.
- ``response_formats``: which dialects of ``response_format`` (``ModelProfile.response_format``) the server honours:
  a request whose schema allows only ``{"answer": "autointerp"}`` gets exactly that back ("json_schema": OpenAI's
  ``{"type": "json_schema", "json_schema": {...}}``; "json_object": ``{"type": "json_object", "schema": {...}}``,
  llama-cpp-python's). A server that ignores the field, or refuses it, is not listed.
- ``parallel``: requests the server serves at once (``autointerp.llm.parallelism.detect_parallelism``); ``reachable``: any probe answered.
"""

from __future__ import annotations

import json
import time
from typing import Any

from autointerp.llm.client import ChatModel, EndpointMismatch, LLMError
from autointerp.llm.parallelism import detect_parallelism
from autointerp.llm.profiles import ModelProfile
from autointerp.llm.wire import response_format

_TOOL = {
    "type": "function",
    "function": {
        "name": "record_number",
        "description": "Record a number.",
        "parameters": {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]},
    },
}
_COUNTING = "1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16"
# Escaping: "<start>" and "[start]" take about as many tokens; HTML-escaped, each "<" or ">" becomes "&lt;"/"&gt;",
# several tokens more. Four tags add a dozen tokens or so when escaped, 0 to 2 when not.
_ANGLED = "<start> <end> <start> <end>"
_ESCAPE_MARGIN = 4
_ONLY_ANSWER = {"type": "object", "properties": {"answer": {"type": "string", "enum": ["autointerp"]}},
                "required": ["answer"]}
_MISSING = -30.0  # logprob of a token absent from top_logprobs, when scoring alignments


def probing(profile: ModelProfile) -> ModelProfile:
    """``profile`` with every capability claimed and no retries: a probe asks for all and reports what works."""
    return profile.model_copy(update={"supports_tools": True, "supports_logprobs": True, "max_retries": 0})


async def check_profile(client: ChatModel) -> dict[str, Any]:
    result: dict[str, Any] = {"reachable": False, "chat": None, "tools": None, "logprobs": None, "echo": None,
                              "echo_shift": None, "escapes_html": None, "latency_s": None, "parallel": None,
                              "response_formats": [], "simulator_methods": [], "errors": {}}
    ask = [{"role": "user", "content": "Reply with the single digit 7."}]

    async def probe(name: str, run) -> None:
        try:
            result[name] = await run()
        except (LLMError, EndpointMismatch) as exc:  # a probe that fails is recorded; the others go on
            result["errors"][name] = str(exc)

    async def chat():
        started = time.monotonic()
        reply = await client.chat(ask, purpose="check", max_tokens=5)
        result["latency_s"] = round(time.monotonic() - started, 3)
        return bool(reply.raw.get("choices"))

    async def tools():
        call = [{"role": "user", "content": "Call record_number with n = 7."}]
        reply = await client.chat(call, purpose="check", tools=[_TOOL], max_tokens=40)
        return any(c["name"] == "record_number" for c in reply.tool_calls)

    async def logprobs():
        reply = await client.chat(ask, purpose="check", logprobs=True, top_logprobs=5, max_tokens=5)
        return bool(reply.logprobs) and any(t.top_logprobs for t in reply.logprobs)

    async def echo():
        reply = await client.complete(_COUNTING, purpose="check", echo=True, logprobs=5, max_tokens=1)
        tops = reply.top_logprobs or []
        if not reply.tokens or "".join(reply.tokens).find(_COUNTING) != 0 or not any(tops[1:]):
            return False
        result["echo_shift"] = echo_shift(reply.tokens, tops)
        return True

    async def escaping():
        def message(text):
            return [{"role": "user", "content": f"Repeat: {text}"}]
        angled = await client.chat(message(_ANGLED), purpose="check", max_tokens=1)
        squared = await client.chat(message(_ANGLED.replace("<", "[").replace(">", "]")), purpose="check",
                                    max_tokens=1)
        if not (angled.raw.get("usage") and squared.raw.get("usage")):
            return None  # no prompt token counts: cannot tell
        return angled.tokens_in - squared.tokens_in >= _ESCAPE_MARGIN

    async def response_formats():
        honoured = []
        for kind in ("json_schema", "json_object"):
            try:
                reply = await client.chat([{"role": "user", "content": "Reply with a JSON object."}], purpose="check",
                                          max_tokens=20, response_format=response_format(kind, "check", _ONLY_ANSWER))
            except (LLMError, EndpointMismatch) as exc:
                result["errors"][f"response_format {kind}"] = str(exc)
                continue
            try:
                if json.loads(reply.text) == {"answer": "autointerp"}:
                    honoured.append(kind)
            except ValueError:
                pass
        return honoured

    for name, run in (("chat", chat), ("tools", tools), ("logprobs", logprobs), ("echo", echo),
                      ("escapes_html", escaping), ("response_formats", response_formats)):
        await probe(name, run)
    result["reachable"] = any(result[k] is not None for k in ("chat", "tools", "logprobs", "echo", "escapes_html"))
    base_url = client.profile.resolved_base_url()
    if base_url:
        result["parallel"], _ = await detect_parallelism(base_url)
    if result["echo"]:
        result["simulator_methods"].append("all_at_once")
    if result["chat"]:
        result["simulator_methods"].append("generate" if result["logprobs"] else "generate (parse: no logprobs)")
    return result


def echo_shift(tokens: list[str], top_logprobs: list[dict[str, float] | None]) -> int:
    """0 when ``top_logprobs[i]`` predicted ``tokens[i]``, 1 when it predicts ``tokens[i + 1]``: whichever gives the
    echoed tokens the higher mean logprob (a token absent from the alternatives counts as e^-30)."""
    def mean_logprob(shift: int) -> float:
        scores = [(top or {}).get(tokens[i + shift], _MISSING)
                  for i, top in enumerate(top_logprobs[: len(tokens) - shift]) if top]
        return sum(scores) / len(scores) if scores else _MISSING

    return int(mean_logprob(1) > mean_logprob(0))


def summary(check: dict[str, Any]) -> str:
    """One line for the ``models --check`` table."""
    if not check["reachable"]:
        return "unreachable: " + (next(iter(check["errors"].values()), "no answer"))
    flags = ", ".join(f"{k}={check[k]}" for k in ("chat", "tools", "logprobs", "echo", "escapes_html"))
    methods = ", ".join(check["simulator_methods"]) or "none"
    formats = ", ".join(check.get("response_formats") or []) or "none"
    return (f"reachable, {flags}, latency {check['latency_s']} s, parallel {check['parallel']}; simulators: {methods}; "
            f"response_format: {formats}")
