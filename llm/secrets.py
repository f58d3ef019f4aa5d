"""Secrets never leave the process: the one place that scrubs them, from configs and from text.

    >>> scrub_secrets({"model": "gpt-4o-mini", "api_key": "sk-...", "headers": {"Authorization": "Bearer ..."}})
    {'model': 'gpt-4o-mini', 'headers': {}}
    >>> scrub_text("HTTP 401: bad key sk-live-0123456789abcdef for http://me:pw@host/v1", ["sk-live-0123456789abcdef"])
    'HTTP 401: bad key *** for http://***@host/v1'

Every sink that keeps or shows text from an endpoint (error bodies, replies, tool-call arguments, response bodies)
passes it through ``scrub_text`` *before* cutting it short (``shorten``), so a key that straddles the cut cannot leave
a prefix behind; configs go through ``scrub_secrets``. A response body is scrubbed once, as text, before it is parsed;
when a JSON escape in it may spell a character of the key (``escapes_may_hide``), its parsed strings are scrubbed
instead (``scrub_strings``).
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from pydantic import SecretBytes, SecretStr

REDACTED = "***"
MIN_FRAGMENT = 8  # a run of this many characters of a known secret is scrubbed wherever it appears

_SECRET_KEY = re.compile(r"(^|_)(api_?key|secret|password|passwd|token|credentials?|authorization)$")
_SECRET_VALUE = re.compile(r"^(sk|hf|ghp|gho|xox[abp])[-_][A-Za-z0-9_-]{16,}$")
# Credential shapes found in free text, whoever's they are: provider keys, Authorization values, a URL's user:password,
# and key-like query parameters. A match keeps its group (the prefix that says what follows) and loses the rest. No
# class holds a quote or a backslash, so JSON text stays JSON when scrubbed.
_TEXT_PATTERNS = re.compile(
    r"(?<![A-Za-z0-9])(?:sk|hf|ghp|gho|ghs|xox[abpr]|AKIA)[-_][A-Za-z0-9_\-]{12,}"
    r"|((?i:bearer|basic) +)[A-Za-z0-9._~+/=\-]{8,}"
    r"|(://)[^\s/@\"'\\]+(?=@[^\s/@])"
    r"|([?&](?i:api_?key|access_token|token|key)=)[^\s&\"'\\]+"
)
# Cheap substring tests that every match above needs one of (plain ``in`` is far faster than the regex on long text).
_HINTS = ("sk-", "sk_", "hf_", "ghp_", "gho_", "ghs_", "xox", "AKIA", "earer ", "EARER ", "asic ", "ASIC ", "://",
          "?", "&")


def scrub_secrets(value: Any) -> Any:
    """A copy of a config without secrets, at any depth.

    Dropped: dict entries whose key names a secret (``api_key``, ``apikey``, ``secret``, ``password``, ``token``,
    ``credentials``, ``authorization``, alone or as the last ``_`` part, as in ``hf_token``; ``max_tokens`` stays),
    pydantic ``SecretStr``/``SecretBytes`` values, and strings shaped like provider keys (``sk-...``, ``hf_...``).
    Every other string is passed through ``scrub_text`` (a URL keeps its host but not its ``user:password``).
    """
    if isinstance(value, dict):
        return {
            k: scrub_secrets(v)
            for k, v in value.items()
            if not (_SECRET_KEY.search(str(k).lower().replace("-", "_")) or _is_secret_value(v))
        }
    if isinstance(value, list | tuple):
        return [scrub_secrets(v) for v in value if not _is_secret_value(v)]
    if isinstance(value, str):
        return scrub_text(value)
    return value


def scrub_text(text: str, secrets: Iterable[str] = (), patterns: bool = True) -> str:
    """``text`` with every known secret and every run of ``MIN_FRAGMENT`` or more of its characters (a key the
    endpoint cut short) replaced by ``***``; with ``patterns`` also every credential-shaped string (provider keys,
    ``Bearer``/``Basic`` values, ``user:password@`` in URLs, ``?api_key=`` and similar query parameters).

    ``patterns=False`` is for a model's own words (replies, tool-call arguments), which may legitimately talk about
    such shapes; error messages, headers and configs get both."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = _scrub_known(text, secret)
    if patterns and _may_hold_credentials(text):
        text = _TEXT_PATTERNS.sub(_redact, text)
    return text


def scrub_strings(value: Any, secrets: tuple[str, ...]) -> Any:
    """``value`` with every string in it (dict keys included, at any depth) passed through ``scrub_text`` without
    ``patterns``: for a body handed over parsed, or one whose JSON text may spell a secret with escapes."""
    if not secrets:
        return value
    if isinstance(value, str):
        return scrub_text(value, secrets, patterns=False)
    if isinstance(value, dict):
        return {scrub_strings(k, secrets): scrub_strings(v, secrets) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(scrub_strings(v, secrets) for v in value)
    return value


def escapes_may_hide(json_text: str, secrets: Iterable[str]) -> bool:
    """True when a JSON escape in ``json_text`` may spell a character of a secret (``\\u0041`` for ``A``, ``\\/``
    for ``/``): then the parsed strings can hold the secret although the text, scrubbed, does not."""
    return "\\" in json_text and any(_escapes_of(s).search(json_text) for s in secrets if s)


@functools.lru_cache(maxsize=16)
def _escapes_of(secret: str) -> re.Pattern[str]:
    """The JSON escapes that decode to a character of ``secret`` (a character past U+FFFF: its high surrogate)."""
    units = {f"{c if c <= 0xFFFF else 0xD800 + ((c - 0x10000) >> 10):04x}" for c in map(ord, secret)}
    short = "".join(re.escape(e) for c, e in _SHORT_ESCAPES.items() if c in secret)
    return re.compile(r"\\(?:u(?i:" + "|".join(sorted(units)) + ")" + (f"|[{short}]" if short else "") + ")")


_SHORT_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "\b": "b", "\f": "f", "\n": "n", "\r": "r", "\t": "t"}


def shorten(text: str, limit: int = 200, secrets: Iterable[str] = ()) -> str:
    """Scrub, then cut to ``limit`` characters (with ``...``): the order every sink must keep."""
    text = scrub_text(text, secrets)
    return text if len(text) <= limit else text[:limit] + "..."


_KNOWN: set[str] = set()  # keys the LLM clients of this process hold (register_secret), scrubbed from every log record
_FACTORY_INSTALLED = False


def register_secret(secret: str) -> None:
    """Scrub ``secret`` from every log record made from now on (the HTTP libraries log response headers at DEBUG,
    and an endpoint may echo the key in one): installs a log-record factory once per process."""
    global _FACTORY_INSTALLED
    if secret:
        _KNOWN.add(secret)
    if not _FACTORY_INSTALLED:
        previous = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            try:
                message = record.getMessage()
            except Exception:  # a malformed record is left for logging to report as it would
                return record
            scrubbed = scrub_text(message, tuple(_KNOWN))
            if scrubbed != message:
                record.msg, record.args = scrubbed, ()
            return record

        logging.setLogRecordFactory(factory)
        _FACTORY_INSTALLED = True


def url_credentials(url: str | None) -> bool:
    """True when ``url`` carries a user name or password (``http://user:KEY@host/v1``)."""
    if not url:
        return False
    try:
        parts = urlsplit(url)
    except ValueError:
        return "@" in url
    return parts.username is not None or parts.password is not None


def _scrub_known(text: str, secret: str) -> str:
    if secret in text:
        text = text.replace(secret, REDACTED)
    if len(secret) < MIN_FRAGMENT:
        return text
    # A run of MIN_FRAGMENT (= 2 * _BLOCK) characters of the secret holds one of its aligned blocks in full: find the
    # blocks (fast substring search), then grow each hit into the longest run the text and the secret share there.
    runs = []
    for p in range(0, len(secret) - _BLOCK + 1, _BLOCK):
        block = secret[p:p + _BLOCK]
        o = text.find(block)
        while o >= 0:
            left = 0
            while o - left > 0 and p - left > 0 and text[o - left - 1] == secret[p - left - 1]:
                left += 1
            right = o + _BLOCK
            while right < len(text) and p + right - o < len(secret) and text[right] == secret[p + right - o]:
                right += 1
            if right - (o - left) >= MIN_FRAGMENT:
                runs.append((o - left, right))
            o = text.find(block, o + 1)
    if not runs:
        return text
    out, at = [], 0
    for start, end in sorted(runs):
        if end <= at:
            continue
        out.append(text[at:max(at, start)] + REDACTED)
        at = end
    return "".join(out) + text[at:]


_BLOCK = MIN_FRAGMENT // 2


def _may_hold_credentials(text: str) -> bool:
    return any(h in text for h in _HINTS)


def _redact(match: re.Match[str]) -> str:
    return (match.group(1) or match.group(2) or match.group(3) or "") + REDACTED


def _is_secret_value(value: Any) -> bool:
    return isinstance(value, SecretStr | SecretBytes) or (isinstance(value, str) and bool(_SECRET_VALUE.match(value)))
