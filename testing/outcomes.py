"""What a fake model does with a request, for the test server and the in-process fake (``autointerp.testing.server``,
``autointerp.testing.fake``): reply, fail with an HTTP status, hang, or answer garbage; and the shapes real endpoints
bend the protocol into (``CutStream``, ``BodyError``, ``ProxyPage``; the server's ``quirks`` for the rest)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from autointerp.testing.echo_model import TextReply
from autointerp.llm.wire import requested_schema


@dataclass(frozen=True)
class Reply:
    """What the model "generated". ``tokens``: per generated token, (token text, top_logprobs token -> logprob);
    when None the text is split into word/number/space tokens, each certain (logprob 0)."""

    text: str = ""
    tool_calls: Sequence[tuple[str, dict[str, Any] | str]] = ()  # (function name, arguments as dict or JSON text)
    tokens: Sequence[tuple[str, dict[str, float]]] | None = None
    finish_reason: str | None = None  # None: "tool_calls" when there are tool calls, else "stop"


@dataclass(frozen=True)
class HTTPFailure:
    """Answer with this HTTP status and an OpenAI-style error body, with a Retry-After header when given."""

    status: int
    retry_after_s: float | None = None
    message: str = "scripted failure"


@dataclass(frozen=True)
class Hang:
    """Send nothing for ``seconds`` (longer than the client's timeout), then drop the connection."""

    seconds: float


@dataclass(frozen=True)
class Garbage:
    """Answer 200 with a body that is not a chat completion."""

    text: str = "<html><body>502 upstream hiccup</body></html>"
    content_type: str = "application/json"


@dataclass(frozen=True)
class CutStream:
    """Stream ``reply``'s first ``after`` token chunks, then close the connection: no finish_reason, no ``[DONE]``
    (a server that died mid-reply). A request that does not stream gets the reply whole."""

    reply: Reply | str = "a reply that is cut off before its end"
    after: int = 3


@dataclass(frozen=True)
class BodyError:
    """Answer HTTP 200 with an ``{"error": {...}}`` object: the whole body, or, to a streamed request, one event."""

    message: str = "the model is not available"
    type: str = "invalid_request_error"
    code: int | str | None = None


@dataclass(frozen=True)
class ProxyPage:
    """Answer ``status`` with an HTML error page, as a reverse proxy or a load balancer does (502, 504)."""

    status: int = 502
    title: str = "502 Bad Gateway"


Outcome = Reply | TextReply | HTTPFailure | Hang | Garbage | CutStream | BodyError | ProxyPage
Handler = Callable[[dict[str, Any]], Outcome | str]


def constrained(outcome: Any, request: dict[str, Any], honoured: Sequence[str]) -> Any:
    """The outcome as a server that honours ``response_format`` in the ``honoured`` dialects ("json_schema",
    "json_object") sends it: a text reply made into a JSON object of the request's schema (a field with an ``enum``
    gets its first value, ``explanation`` the reply's last EXPLANATION line or its whole text, any other ""). Other
    dialects, failures and tool calls pass unchanged, as from a server that ignores the field."""
    kind, schema = requested_schema(request.get("response_format"))
    if kind not in honoured:
        return outcome
    if isinstance(outcome, str):
        text = outcome
    elif isinstance(outcome, Reply) and not outcome.tool_calls:
        text = outcome.text or "".join(token for token, _ in outcome.tokens or ())
    else:
        return outcome
    answer = {}
    for name, spec in ((schema or {}).get("properties") or {}).items():
        if spec.get("enum"):
            answer[name] = spec["enum"][0]
        else:
            answer[name] = text.rsplit("EXPLANATION:", 1)[-1].strip() if name == "explanation" else ""
    return json.dumps(answer)
