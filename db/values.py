"""Values as SQLite and JSON can hold them: no NaN or infinity (None instead), numpy values as Python ones, times as
ISO-8601 text in UTC."""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from typing import Any


def finite(x: float | None) -> float | None:
    """``x`` as a float, or None when it is None, NaN or infinite: SQLite and JSON have no portable NaN."""
    return None if x is None or not math.isfinite(x) else float(x)


def clean(value: Any) -> Any:
    """Non-finite floats to None at any depth; numpy scalars and arrays to Python values."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, float):
        return finite(value)
    if isinstance(value, dict):
        return {k: clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    return value


def to_json(value: Any) -> str:
    """JSON text for a TEXT column; never NaN, anything unknown as its ``str()``.

    orjson writes non-finite floats as null; json's C encoder refuses them (``allow_nan=False``), so the slow
    recursive clean-up runs only for the rare value that holds one (LLM call logs with thousands of logprobs would
    otherwise spend most of a run here). Either way the text is compact JSON (no spaces after separators).
    """
    if orjson is not None:  # a fifth of json's time; writes NaN and infinities as null, as clean() does
        try:
            return orjson.dumps(value, option=_ORJSON_OPTIONS).decode()
        except TypeError:  # a type it does not take as json takes it (numpy scalars, datetimes, integers past 64 bits)
            pass
    try:
        return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=_COMPACT)
    except (ValueError, TypeError):  # a NaN or infinity, or a type json does not know (numpy scalars, ...)
        return json.dumps(clean(value), ensure_ascii=False, allow_nan=False, default=str, separators=_COMPACT)


_COMPACT = (",", ":")


try:  # optional: the project's dependencies install it (llm/wire.py), json does the same without it
    import orjson

    # non-string keys as json writes them; what json would refuse or write as str() goes to the json path
    _ORJSON_OPTIONS = (orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME
                       | orjson.OPT_PASSTHROUGH_SUBCLASS)
except ImportError:  # pragma: no cover
    orjson = None


def utc_iso(t: datetime | None = None) -> str:
    """``t`` (default: now) as ISO-8601 text in UTC, the form of every timestamp in the database."""
    return (t or datetime.now(timezone.utc)).astimezone(timezone.utc).isoformat()
