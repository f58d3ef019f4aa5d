"""Response bodies: parsed from JSON without the per-token ``bytes`` arrays, and shortened for the call log.

    parse_body(text)                        # dict, less every token's "bytes"
    logged_response(body, keep_logprobs)    # the body as the call sink stores it
"""

from __future__ import annotations

import json
import re
from typing import Any


# A token's UTF-8 bytes, sent with every token and alternative when logprobs are on, and never read here. Removed
# before parsing: they are a quarter of a simulator reply and a third of its parse time. The match is structural
# only: it starts at an unescaped quote right after "," (inside a JSON string a quote is always escaped).
_BYTES_FIELD = re.compile(r',\s*"bytes"\s*:\s*(?:\[[\d,\s]*\]|null)')


def parse_body(text: str) -> Any:
    """A response body parsed from JSON, less the per-token ``bytes`` arrays (ValueError when it is not JSON)."""
    if '"bytes"' in text:
        text = _BYTES_FIELD.sub("", text)
    return json.loads(text)


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
            n = len(logprobs.get("content") or [])
            logprobs = {"omitted": f"{n} tokens with their logprobs; log_logprobs = true keeps them"}
        choices.append({**choice, "logprobs": logprobs})
    return {**body, "choices": choices}
