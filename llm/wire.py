"""Message shapes servers accept and what to change when one rejects a request: small pure functions, so the tests
pin the behaviour of real servers (llama.cpp's, vLLM's, OpenAI's) without them."""

from __future__ import annotations

import gc
import json
import re
from typing import Any, AnyStr

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


# A token's UTF-8 bytes, sent with every token and alternative when logprobs are on, and never read here. Removed
# before the parse where they are written in one of the two common layouts, without spaces (OpenAI's streams, vLLM,
# llama.cpp) or as Python's json.dumps writes them: each pattern starts with a literal, so the regex engine jumps
# from one field to the next, and the parse then builds no list for them, which leaves each alternative's dict
# untracked by the cyclic garbage collector. Indented JSON keeps them: no pass over its text is cheaper than parsing
# them. ``python benchmarks/bench_parse.py`` times each layout both ways, the collection the parse triggers included.
# The match is structural only: it starts at an unescaped quote after "," or ", " (inside a JSON string a quote is
# always escaped).
_BYTES_FIELDS = ((',"bytes":[', re.compile(r',"bytes":\[[\d,]*\]')),
                 (', "bytes": [', re.compile(r', "bytes": \[[\d, ]*\]')))
_BYTES_FIELDS_B = tuple((literal.encode(), re.compile(pattern.pattern.encode())) for literal, pattern in _BYTES_FIELDS)


def strip_bytes_fields(data: AnyStr) -> AnyStr:
    """``data`` (JSON text, str or bytes) without the per-token ``"bytes"`` fields, when the first one is written in
    a common layout (a serializer writes them all alike)."""
    binary = isinstance(data, bytes)
    at = data.find(b'"bytes"' if binary else '"bytes"')
    if at < 0:
        return data
    for literal, pattern in _BYTES_FIELDS_B if binary else _BYTES_FIELDS:
        if data.startswith(literal, at - literal.index(b'"' if binary else '"')):
            return pattern.sub(b"" if binary else "", data)
    return data


_PAUSE_GC_OVER = 32_768  # characters of JSON above which the cyclic garbage collector waits for the parse


def loads(text: str | bytes) -> Any:
    """JSON text parsed (``ValueError`` when it is not JSON): orjson, with json for what orjson refuses (NaN,
    Infinity, integers past 64 bits) or when it is not installed.

    A long text is parsed with the cyclic garbage collector paused: a simulator reply with logprobs is tens of
    thousands of small dicts and lists, and the collections their allocation triggers (none of which can free
    anything: a parse makes no cycles) took three quarters of the parse's time. The parse holds the event loop and
    lasts milliseconds; the collector's previous state is restored after it."""
    if len(text) < _PAUSE_GC_OVER or not gc.isenabled():
        return _loads(text)
    gc.disable()
    try:
        return _loads(text)
    finally:
        gc.enable()


try:  # a third of json's time on the many small objects of a streamed reply; json when it is not installed
    import orjson

    def _loads(text: str | bytes) -> Any:
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            return json.loads(text)

    def dumps(value: Any) -> str:
        """``value`` as JSON text (orjson: a fifth of json's time on a reply's thousands of logprob entries)."""
        try:
            return orjson.dumps(value).decode()
        except TypeError:  # e.g. an integer past 64 bits
            return json.dumps(value)
except ImportError:  # pragma: no cover
    _loads, dumps = json.loads, json.dumps


def response_format(kind: str, name: str, schema: dict[str, Any]) -> dict[str, Any] | None:
    """The ``response_format`` request field that holds a chat answer to the JSON ``schema``, in the dialect a server
    takes (``ModelProfile.response_format``): "json_schema" (OpenAI, vLLM, llama.cpp's llama-server) or
    "json_object" (llama-cpp-python's server: the schema beside the type); None for "none"."""
    if kind == "json_schema":
        return {"type": "json_schema", "json_schema": {"name": name, "schema": schema}}
    if kind == "json_object":
        return {"type": "json_object", "schema": schema}
    return None


def requested_schema(field: dict[str, Any] | None) -> tuple[str | None, dict[str, Any] | None]:
    """(dialect, schema) of a request's ``response_format`` field, as ``response_format`` writes it."""
    kind = (field or {}).get("type")
    if kind == "json_object":
        return kind, field.get("schema")
    if kind == "json_schema":
        return kind, (field.get("json_schema") or {}).get("schema")
    return kind, None


def parse_body(text: str) -> Any:
    """A response body parsed from JSON, less its per-token ``bytes`` arrays where they are written in a common
    layout (``strip_bytes_fields``); ValueError when it is not JSON."""
    return loads(strip_bytes_fields(text))


def logged_response(body: dict[str, Any], keep_logprobs: bool) -> dict[str, Any]:
    """The response body as the sink stores it: per-token logprobs are replaced by their count unless kept.

    They are nine tenths of a simulator reply (every generated token with its alternatives; about 280 KB per
    ten windows), and what they mean is stored with the simulation (the expected value at every position)."""
    if keep_logprobs or not any((c or {}).get("logprobs") for c in body.get("choices") or []):
        return body
    choices = []
    for choice in body["choices"]:
        logprobs = choice.get("logprobs")
        if logprobs:
            n = len(logprobs.get("content") or logprobs.get("tokens") or [])
            logprobs = {"omitted": f"{n} tokens with their logprobs; log_logprobs = true keeps them"}
        choices.append({**choice, "logprobs": logprobs})
    return {**body, "choices": choices}


def too_slow(profile: Any, name: str, timeout_s: float, what: str = "no answer") -> str:
    """The one-line message of a request that ran past its scaled timeout: which settings to change."""
    p = profile
    return (f"{what} within {timeout_s:.0f} s (timeout_s {p.timeout_s:g} + the request's tokens at "
            f"prompt_tokens_per_s {p.prompt_tokens_per_s:g} and tokens_per_s {p.tokens_per_s:g}); the server is "
            f"slower than that: lower tokens_per_s in [models.{name}], set concurrency = 1 if it serves one "
            f"request at a time, or send fewer windows per request (windows_per_request)")
