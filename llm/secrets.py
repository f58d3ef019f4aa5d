"""Secrets never leave the process: one scrubbing function for every config that is stored or shown.

    >>> scrub_secrets({"model": "gpt-4o-mini", "api_key": "sk-...", "headers": {"Authorization": "Bearer ..."}})
    {'model': 'gpt-4o-mini', 'headers': {}}
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import SecretBytes, SecretStr

_SECRET_KEY = re.compile(r"(^|_)(api_?key|secret|password|passwd|token|credentials?|authorization)$")
_SECRET_VALUE = re.compile(r"^(sk|hf|ghp|gho|xox[abp])[-_][A-Za-z0-9_-]{16,}$")


def scrub_secrets(value: Any) -> Any:
    """A copy of a config without secrets, at any depth.

    Dropped: dict entries whose key names a secret (``api_key``, ``apikey``, ``secret``, ``password``, ``token``,
    ``credentials``, ``authorization``, alone or as the last ``_`` part, as in ``hf_token``; ``max_tokens`` stays),
    pydantic ``SecretStr``/``SecretBytes`` values, and strings shaped like provider keys (``sk-...``, ``hf_...``).
    """
    if isinstance(value, dict):
        return {
            k: scrub_secrets(v)
            for k, v in value.items()
            if not (_SECRET_KEY.search(str(k).lower().replace("-", "_")) or _is_secret_value(v))
        }
    if isinstance(value, list | tuple):
        return [scrub_secrets(v) for v in value if not _is_secret_value(v)]
    return value


def _is_secret_value(value: Any) -> bool:
    return isinstance(value, SecretStr | SecretBytes) or (isinstance(value, str) and bool(_SECRET_VALUE.match(value)))
