"""What an HTTP failure means for a call: retried or final, and how long to wait first.

    status_failure(503, "overloaded")                       # RetryableError
    status_failure(500, "[json.exception.type_error.302] type must be string, but is null")   # LLMError: not retried
    retry_after_s({"retry-after": "2"})                     # 2.0
    page_reason("<html><title>502 Bad Gateway</title>...")   # "an HTML page (502 Bad Gateway), not JSON"
    body_error({"message": "model not found", "code": 404})  # EndpointError: the endpoint's message, final
"""

from __future__ import annotations

import math
import re
from typing import Any

from autointerp.llm.types import EndpointError, LLMError, RetryableError


# A 5xx whose body says the request itself was refused: the server's own request validation (OpenAI's error type),
# JSON type checks (llama.cpp's server: "[json.exception.type_error.302] type must be string, but is null" for a
# null content), and a chat template failing on a message shape (llama-cpp-python answers 500 with the Python or
# jinja2 exception). The same request fails the same way every time, so it is never retried.
_VALIDATION_500 = re.compile(
    r"invalid_request_error|validation error|json\.exception|type must be|TemplateError|jinja|can only concatenate|"
    r"NoneType|unexpected keyword argument|missing \d+ required|is not supported|unsupported (?:value|parameter)",
    re.I,
)


def is_validation_error(reason: str) -> bool:
    """Whether an HTTP 5xx error text says the request was refused (see ``_VALIDATION_500``), not that the server
    failed."""
    return _VALIDATION_500.search(reason) is not None


def status_failure(status: int, reason: str, retry_after_s: float | None = None) -> Exception:
    """The exception for an HTTP error status: retryable for 429 and 5xx, final for any other, and for a 5xx that
    is a request-validation error (``is_validation_error``)."""
    message = f"HTTP {status}: {reason}"
    if status >= 500 and is_validation_error(reason):
        return LLMError(f"{message} (the server refused the request itself; not retried)")
    if status == 429 or status >= 500:
        return RetryableError(message, retry_after_s)
    return LLMError(message)


def retry_after_s(headers: Any) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``Retry-After`` (seconds) headers; None when absent or a date."""
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is not None:
            try:
                seconds = float(value) * scale
            except ValueError:
                continue
            if math.isfinite(seconds) and seconds >= 0:
                return seconds
    return None


_TITLE = re.compile(rb"<title[^>]*>(.*?)</title>|<h1[^>]*>(.*?)</h1>", re.I | re.S)
_TAG = re.compile(rb"<[^>]+>")


def is_html(text: str | bytes) -> bool:
    """Whether a body is an HTML page (a proxy's or a load balancer's error page), not JSON."""
    head = (text.encode("utf-8", "replace") if isinstance(text, str) else text)[:200].lstrip().lower()
    return head.startswith((b"<!doctype html", b"<html", b"<head", b"<body", b"<title", b"<h1", b"<center"))


def page_reason(text: str | bytes) -> str:
    """One short line for an HTML body: its title (or first heading), never the page."""
    data = text.encode("utf-8", "replace") if isinstance(text, str) else text
    match = _TITLE.search(data[:20_000])
    title = b" ".join(_TAG.sub(b" ", next(g for g in match.groups() if g is not None)).split()) if match else b""
    title = title.decode("utf-8", "replace")[:80]
    return f"an HTML page ({title}), not JSON" if title else "an HTML page, not JSON"


# Words in an error object's type or code that say the failure is the server's, for now: worth another try.
_TRANSIENT = re.compile(r"rate.?limit|overload|server.?error|unavailable|timeout|timed.?out|busy|capacity|try again",
                        re.I)


def body_error(error: Any) -> Exception:
    """The exception for an ``{"error": ...}`` object the endpoint sent with HTTP 200 (as a body or a stream event):
    a status it names (``code`` or ``status`` as a number) decides as ``status_failure`` does; a type, code or
    message that says the server is busy or failing is retried; any other is final (``EndpointError``), with the
    endpoint's own message."""
    fields = error if isinstance(error, dict) else {"message": error}
    message = " ".join(str(fields.get("message") or fields.get("detail") or fields or "no message").split())[:300]
    kind = " ".join(str(fields.get(k) or "") for k in ("type", "code", "status")).strip()
    reason = f"HTTP 200 with an error object: {message}" + (f" ({kind})" if kind else "")
    for key in ("code", "status"):
        value = fields.get(key)
        if isinstance(value, int) or (isinstance(value, str) and value.isdigit()):
            status = int(value)
            if status >= 400:
                failure = status_failure(status, reason)
                return failure if isinstance(failure, RetryableError) else EndpointError(reason, message[:120])
    if _TRANSIENT.search(f"{kind} {message}"):
        return RetryableError(reason)
    return EndpointError(reason, message[:120])


MISMATCH_CALLS = 3  # calls in a row that fail the same unusable way before the client stops calling the endpoint


class MismatchWatch:
    """Counts calls that failed the same deterministic way in a row (an exception's ``what``: ``ProtocolMismatch``,
    ``EndpointError``) and says when to stop calling the endpoint (``EndpointMismatch``). Any success, or a failure of
    another kind (a timeout, a 503), starts the count again; once tripped, it stays tripped (``tripped``: the line)."""

    def __init__(self, where: str, calls: int = MISMATCH_CALLS):
        self.where = where  # the endpoint: base URL, model and profile, never a key
        self.calls = calls
        self.tripped: str | None = None
        self._last: str | None = None
        self._count = 0

    def success(self) -> None:
        self._last, self._count = None, 0

    def failure(self, what: str | None) -> str | None:
        """Count one failed call (``what``: its deterministic kind, or None); the one-line reason to stop calling the
        endpoint when this is the ``calls``-th in a row of the same ``what``, else None."""
        if what is None or what != self._last:
            self._last, self._count = what, 0
        if what is None:
            return None
        self._count += 1
        if self._count >= self.calls and self.tripped is None:
            self.tripped = (f"endpoint mismatch: {self.where} {what}, on {self._count} calls in a row; stopped "
                            "calling it (check base_url and the model profile's settings against what the server "
                            "serves: autointerp models --check)")
        return self.tripped
