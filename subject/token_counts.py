"""Per-(token, unit) firing counts kept by capture (docs/methods.md §1: sparse for large vocabularies)."""

from __future__ import annotations

import torch

DENSE_TOKEN_COUNTS_MAX = 1 << 26  # vocab x units cells kept dense up to 64M (256 MB of int32), sparse beyond


class TokenCounts:
    """Per-(token, unit) firing counts: dense when vocab x units is small, sparse (merged COO) otherwise."""

    def __init__(self, vocab: int, units: int):
        self.vocab, self.units = vocab, units
        self.dense = torch.zeros(vocab, units, dtype=torch.int32) if vocab * units <= DENSE_TOKEN_COUNTS_MAX else None
        self._keys: list[torch.Tensor] = []
        self._counts: list[torch.Tensor] = []
        self._pending = 0
        self._by_unit: tuple[torch.Tensor, torch.Tensor, list[int]] | None = None  # built by column, reset by add

    def add(self, ids: torch.Tensor, fires: torch.Tensor) -> None:
        """ids: [N] token ids; fires: [N, units] bool."""
        if self.dense is not None:
            self.dense.index_add_(0, ids, fires.to(torch.int32))
            return
        self._by_unit = None
        rows, cols = fires.nonzero(as_tuple=True)
        keys, counts = torch.unique(ids[rows] * self.units + cols, return_counts=True)
        self._keys.append(keys)
        self._counts.append(counts)
        self._pending += len(keys)
        if self._pending > 4_000_000:
            self._merge()

    def _merge(self) -> None:
        if len(self._keys) > 1:
            keys, inverse = torch.unique(torch.cat(self._keys), return_inverse=True)
            counts = torch.zeros(len(keys), dtype=torch.int64).index_add_(0, inverse, torch.cat(self._counts))
            self._keys, self._counts = [keys], [counts]
        self._pending = len(self._keys[0]) if self._keys else 0

    def column(self, unit: int) -> dict[int, int]:
        """{token id: firings} of one unit."""
        if self.dense is not None:
            col = self.dense[:, unit]
            nz = col.nonzero(as_tuple=True)[0]
            return dict(zip(nz.tolist(), col[nz].tolist()))
        if self._by_unit is None:  # one sort by (unit, token) after the last add, then a slice per unit
            self._merge()
            keys = self._keys[0] if self._keys else torch.zeros(0, dtype=torch.int64)
            counts = self._counts[0] if self._counts else torch.zeros(0, dtype=torch.int64)
            units, tokens = keys % self.units, keys // self.units
            order = torch.argsort(units * self.vocab + tokens)
            bounds = torch.searchsorted(units[order], torch.arange(self.units + 1)).tolist()
            self._by_unit = tokens[order], counts[order], bounds
        tokens, counts, bounds = self._by_unit
        a, b = bounds[unit], bounds[unit + 1]
        return dict(zip(tokens[a:b].tolist(), counts[a:b].tolist()))
