"""What a capture holds in memory, counted deeply (docs/methods.md §1: flat in the number of tokens).

    from autointerp.subject.memory import held_bytes
    held_bytes(caps[13])     # bytes of every tensor and array the layer's capture keeps, at any depth

Used by ``tests/test_capture.py`` (the count is equal after 10 and 200 windows) and by
``benchmarks/bench_capture.py`` (the kept bytes beside the peak RSS).
"""

from __future__ import annotations

import numpy as np
import torch


def held_bytes(value: object) -> int:
    """Bytes of the tensors and numpy arrays reachable from ``value``: its attributes, and the lists, tuples, sets
    and dicts in them, at any depth (the samplers, the token counts, the n-gram counts and every buffer). A buffer
    seen through several views (slices of a tensor, ``tensor.numpy()``, slices of an array) counts once, at its
    whole size; a numpy view that starts inside a tensor's storage counts apart (capture keeps none)."""
    buffers: dict[int, int] = {}
    _walk(value, set(), buffers)
    return sum(buffers.values())


def _walk(value: object, seen: set[int], buffers: dict[int, int]) -> None:
    if id(value) in seen:
        return
    seen.add(id(value))
    if isinstance(value, torch.Tensor | np.ndarray):
        if isinstance(value, torch.Tensor):
            storage = value.untyped_storage()
            start, size = storage.data_ptr(), storage.nbytes()
        else:
            while isinstance(value.base, np.ndarray):
                value = value.base
            start, size = value.__array_interface__["data"][0], value.nbytes
        buffers[start] = max(buffers.get(start, 0), size)
    elif isinstance(value, dict):
        for v in value.values():
            _walk(v, seen, buffers)
    elif isinstance(value, list | tuple | set | frozenset):
        for v in value:
            _walk(v, seen, buffers)
    elif hasattr(value, "__dict__") and not isinstance(value, type) and type(value).__module__.startswith("autointerp"):
        for v in vars(value).values():
            _walk(v, seen, buffers)
