"""What an HTTP failure means for a call: retried or final, and how long to wait first.

    status_failure(503, "overloaded")                       # RetryableError
    status_failure(500, "[json.exception.type_error.302] type must be string, but is null")   # LLMError: not retried
    retry_after_s({"retry-after": "2"})                     # 2.0
"""

from __future__ import annotations

import math
import re
from typing import Any

from autointerp.llm.types import LLMError, RetryableError


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
