"""How many requests a local OpenAI-compatible server serves at once, asked of the server itself.

    >>> asyncio.run(detect_parallelism("http://127.0.0.1:8080/v1"))
    (1, 'local server without a parallelism report: one at a time')
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from typing import Any
from urllib.parse import urlparse, urlunparse

from autointerp.llm.profiles import DEFAULT_CONCURRENCY, LOCAL_HOSTS


async def detect_parallelism(base_url: str, timeout_s: float = 5.0) -> tuple[int, str]:
    """Requests a local server serves at once, and how that was found: llama.cpp's server (``llama-server``) answers
    ``GET /props`` with ``total_slots``; vLLM names itself in ``/v1/models`` (``owned_by: vllm``; it batches, so it
    gets as many as a remote endpoint: ``DEFAULT_CONCURRENCY``); anything else on this machine gets 1
    (llama-cpp-python's server answers one request at a time, and a queue of 8 behind one slot turns every wait into a
    timeout)."""
    parts = urlparse(base_url)
    if parts.hostname not in LOCAL_HOSTS:
        return DEFAULT_CONCURRENCY, "remote endpoint"
    root = urlunparse(parts._replace(path="", params="", query="", fragment=""))
    props = await asyncio.to_thread(_get_json, f"{root}/props", timeout_s)
    slots = props.get("total_slots") if isinstance(props, dict) else None
    if isinstance(slots, int) and slots >= 1:
        return slots, "GET /props total_slots"
    models = await asyncio.to_thread(_get_json, f"{base_url.rstrip('/')}/models", timeout_s)
    data = models.get("data") if isinstance(models, dict) else None
    if isinstance(data, list) and any(isinstance(m, dict) and m.get("owned_by") == "vllm" for m in data):
        return DEFAULT_CONCURRENCY, "vLLM (batches requests)"
    return 1, "local server without a parallelism report: one at a time"


def _get_json(url: str, timeout_s: float) -> Any:
    """GET ``url`` (a local server: plain HTTP, no key) and parse its JSON; None on any failure."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return json.loads(response.read())
    except (OSError, ValueError):
        return None
