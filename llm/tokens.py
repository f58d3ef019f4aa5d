"""Count tokens for cost estimates: tiktoken when its encoding is on disk, else a local file, else an estimate.

    >>> from autointerp.llm.tokens import TokenCounter
    counter = TokenCounter()                 # or TokenCounter(bpe_file="/data/cl100k_base.tiktoken")
    counter.method                           # "tiktoken", "file" or "estimate": say which in the CLI
    counter.count("hello world")             # 2 with cl100k_base, 3 by the estimate
    counter.count_messages([{"role": "user", "content": "hi"}])

Never fails and never downloads: ``tiktoken.get_encoding`` fetches its vocabulary over the network unless the file is
already in tiktoken's cache (``TIKTOKEN_CACHE_DIR``, else ``DATA_GYM_CACHE_DIR``, else ``<tmp>/data-gym-cache``, named
by the SHA-1 of its URL), so it is only called when that cached file exists and has the expected hash. A local
``.tiktoken`` file (base64 token, rank per line) is read with the cl100k pre-tokenisation pattern. The estimate is
one token per four characters, rounded up.
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

Method = Literal["tiktoken", "file", "estimate"]

_BLOB = "https://openaipublic.blob.core.windows.net/encodings/"
# encoding name -> (URL tiktoken downloads, SHA-256 it expects); from tiktoken_ext/openai_public.py
KNOWN_ENCODINGS = {
    "cl100k_base": (_BLOB + "cl100k_base.tiktoken", "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"),
    "o200k_base": (_BLOB + "o200k_base.tiktoken", "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"),
}
CL100K_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|"""
    r"""\s+(?!\S)|\s"""
)
MESSAGE_OVERHEAD_TOKENS = 4  # role and separators of one chat message (OpenAI's cookbook figure)


def tiktoken_cache_path(url: str) -> Path | None:
    """Where tiktoken caches the file it downloads from ``url``; None when its cache is disabled."""
    cache_dir = os.environ.get("TIKTOKEN_CACHE_DIR", os.environ.get("DATA_GYM_CACHE_DIR"))
    if cache_dir is None:
        cache_dir = os.path.join(tempfile.gettempdir(), "data-gym-cache")
    if cache_dir == "":
        return None
    return Path(cache_dir) / hashlib.sha1(url.encode()).hexdigest()


@functools.lru_cache(maxsize=8)
def _load(encoding: str, cached: str | None, bpe_file: str | None) -> tuple[Method, Any]:
    """(method, tiktoken.Encoding or None). ``cached``: tiktoken's cache file for ``encoding``, if it could exist.
    Cached per argument, so each vocabulary is read once per process."""
    try:
        import tiktoken
        from tiktoken.load import check_hash, load_tiktoken_bpe
    except Exception:
        return "estimate", None
    if cached is not None:
        try:
            if Path(cached).is_file() and check_hash(Path(cached).read_bytes(), KNOWN_ENCODINGS[encoding][1]):
                return "tiktoken", tiktoken.get_encoding(encoding)
        except Exception:
            pass
    if bpe_file is not None:
        try:
            ranks = load_tiktoken_bpe(bpe_file)
            return "file", tiktoken.Encoding(
                name=Path(bpe_file).stem, pat_str=CL100K_PATTERN, mergeable_ranks=ranks, special_tokens={}
            )
        except Exception:
            pass
    return "estimate", None


class TokenCounter:
    """Counts tokens of text and chat messages by the best method available here (see ``method``)."""

    def __init__(self, encoding: str = "cl100k_base", bpe_file: str | Path | None = None):
        cached = tiktoken_cache_path(KNOWN_ENCODINGS[encoding][0]) if encoding in KNOWN_ENCODINGS else None
        self.method, self._encoding = _load(
            encoding, None if cached is None else str(cached), None if bpe_file is None else str(bpe_file)
        )

    def count(self, text: str) -> int:
        if self._encoding is None:
            return math.ceil(len(text) / 4)
        return len(self._encoding.encode(text, disallowed_special=()))

    def count_messages(self, messages: list[dict[str, Any]]) -> int:
        """Prompt tokens of chat messages: their text plus a small per-message overhead."""
        return sum(self.count(message_text(message)) + MESSAGE_OVERHEAD_TOKENS for message in messages)


def message_text(message: dict[str, Any]) -> str:
    """The text of one chat message, whether its content is a string or a list of parts."""
    content = message.get("content") or ""
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content if isinstance(part, dict))


@dataclass(frozen=True)
class Estimate:
    """Expected LLM usage: calls, prompt tokens, completion tokens (and the counting method behind them)."""

    calls: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    method: str = "estimate"

    def __add__(self, other: Estimate) -> Estimate:
        return Estimate(self.calls + other.calls, self.tokens_in + other.tokens_in,
                        self.tokens_out + other.tokens_out, self.method)

    def __mul__(self, n: int) -> Estimate:
        return Estimate(self.calls * n, self.tokens_in * n, self.tokens_out * n, self.method)
