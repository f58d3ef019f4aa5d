"""Streaming per-unit n-gram firing counts and per-n-gram occurrence counts (docs/methods.md §3), bounded in memory.

    >>> from autointerp.subject.ngrams import NGramCounts
    >>> counter = NGramCounts(units=256, vocab=4096)             # n = 2 and 3
    >>> counter.add(ids, fires)                                  # once per batch: ids [B, W] int64, fires [B, W, U]
    >>> counter.counts(unit=7, n=3)                              # {key: firings of unit 7 on that trigram}
    >>> counter.decode(key, 3)                                   # (t1, t2, t3) token ids

**What is counted.** For a window of W content tokens (BOS excluded) and n >= 2, the n-gram *at* position p is
``(ids[p-n+1], ..., ids[p])``, the n tokens ending at the current one. Only positions with at least n-1 predecessors
*inside the window* are counted (p >= n-1): the first n-1 positions of every window are skipped, because their
preceding tokens belong to another window (or to the BOS, which is never counted). So ``total(unit, n)`` is the
unit's firings at positions n-1..W-1, not its overall firing count. Unigrams need nothing here: capture's
``tok_fire`` and ``tok_count`` are the n = 1 case. Occurrences of each n-gram are counted over the same positions.

**Keys.** An n-gram is the exact integer ``sum_i ids[p-n+1+i] * vocab**(n-1-i)`` (a radix-``vocab`` number), so keys
never collide and ``decode`` inverts them. It needs ``vocab**n < 2**63``: true for n <= 3 with any vocabulary below
2,097,152 tokens; a larger combination is refused at construction.

**Memory bound.** Each n keeps two tables: firings per (unit, n-gram) and occurrences per n-gram. A batch's rows
(one per firing, one per n-gram occurrence; one nonzero over the firings, no sort) are buffered as they are and
merged into the table (equal rows summed: one sort per merge) when the buffer holds more than ``max_entries``
rows. After a merge, a table holding more than ``max_entries`` rows keeps the ``max_entries`` largest counts (ties:
the smaller key first) and drops the rest. Memory is therefore at most about ``2 * max_entries`` rows per table plus
one batch (a stored row is two int64, a buffered one int64), whatever the number of tokens processed.

**Exactness after truncation.** Dropped firings are tallied per unit (``dropped[n]``): a unit's counts are exact
while its tally is 0 (``exact(unit, n)``), and stored + dropped == firings at positions >= n-1 always holds
(``total``). A dropped row that fires again later restarts from 0, so stored counts are lower bounds of the true
ones. For occurrences, every truncation adds the largest dropped count to ``occurrence_slack(n)``: the true
occurrence count of any n-gram is at most its stored count plus that slack (0 while nothing was dropped).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

DEFAULT_MAX_ENTRIES = 2_000_000


class _Table:
    """Counts summed per (key, unit) row, merged lazily, truncated to the ``cap`` largest counts.

    After ``merge`` the rows are unique and sorted by (key, unit). ``units == 1`` makes it a plain per-key table.
    When (key, unit) fits one int64 (``direct``), the table is that sorted composite ``rows``; a merge sorts only
    the buffer, finds its rows in the table by binary search and interleaves the new ones in one linear pass, and a
    truncation finds the cut by selection (``kthvalue``), not by sorting: the table is never re-sorted.
    """

    def __init__(self, cap: int, units: int, max_key: int):
        self.cap, self.units = cap, units
        self.direct = max_key * units < 2**63  # (key, unit) fits one int64 without ranking the keys first
        self.rows = torch.zeros(0, dtype=torch.int64)  # direct: key * units + unit, sorted
        self._keys = torch.zeros(0, dtype=torch.int64)  # otherwise: keys and units, sorted by (key, unit)
        self._unit = torch.zeros(0, dtype=torch.int64)
        self.counts = torch.zeros(0, dtype=torch.int64)
        self._buffer: list[tuple[torch.Tensor, ...]] = []  # (rows, counts) when direct, else (keys, unit, counts)
        self._buffered = 0

    @property
    def keys(self) -> torch.Tensor:
        if not self.direct:
            return self._keys
        return self.rows if self.units == 1 else self.rows // self.units  # occurrence tables: the row is the key

    @property
    def unit(self) -> torch.Tensor:
        return self.rows % self.units if self.direct else self._unit

    def add(self, keys: torch.Tensor, unit: torch.Tensor | None = None, counts: torch.Tensor | None = None):
        """Buffer rows (``unit`` None: unit 0; ``counts`` None: 1 each, equal rows need not be summed first);
        returns the rows a truncation dropped (see ``merge``) when this call triggered one."""
        if unit is None:
            unit = torch.zeros_like(keys)
        if self.direct:  # the composite row: one int64, not two
            self._buffer.append((keys if self.units == 1 else keys * self.units + unit, counts))
        else:
            self._buffer.append((keys, unit, counts))
        self._buffered += len(keys)
        return self.merge() if self._buffered > self.cap else None

    @staticmethod
    def _counts(buffer: list[tuple[torch.Tensor, ...]]) -> torch.Tensor | None:
        """The buffer's counts, ones where a part had none; None when no part had any."""
        if all(b[-1] is None for b in buffer):
            return None
        return torch.cat([torch.ones(len(b[0]), dtype=torch.int64) if b[-1] is None else b[-1] for b in buffer])

    def merge(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """Sum the buffer into the table and truncate it; returns the dropped (keys, unit, counts), or None."""
        if not self._buffer:
            return None
        buffer, self._buffer, self._buffered = self._buffer, [], 0
        counts = self._counts(buffer)
        if self.direct:
            self._merge_direct(torch.cat([b[0] for b in buffer]), counts)
        else:  # rank the keys first so that (rank, unit) fits one int64
            keys = torch.cat([b[0] for b in buffer])
            unit = torch.cat([b[1] for b in buffer])
            if counts is None:
                counts = torch.ones(len(keys), dtype=torch.int64)
            keys, unit = torch.cat([self._keys, keys]), torch.cat([self._unit, unit])
            counts = torch.cat([self.counts, counts])
            distinct, rank = torch.unique(keys, return_inverse=True)
            rows, inverse = torch.unique(rank * self.units + unit, return_inverse=True)
            self._keys, self._unit = distinct[rows // self.units], rows % self.units
            self.counts = torch.zeros(len(rows), dtype=torch.int64).index_add_(0, inverse, counts)
        return self._truncate()

    def _merge_direct(self, rows: torch.Tensor, counts: torch.Tensor | None) -> None:
        if counts is None:
            new, new_counts = torch.unique(rows, return_counts=True)
        else:
            new, inverse = torch.unique(rows, return_inverse=True)
            new_counts = torch.zeros(len(new), dtype=torch.int64).index_add_(0, inverse, counts)
        at = torch.searchsorted(self.rows, new)
        inside = at < len(self.rows)
        found = inside.clone()
        found[inside] = self.rows[at[inside]] == new[inside]
        self.counts.index_add_(0, at[found], new_counts[found])
        new, new_counts, at = new[~found], new_counts[~found], at[~found]
        if len(new):  # interleave: the i-th new row lands after the at[i] table rows below it and i new ones
            total = len(self.rows) + len(new)
            place = at + torch.arange(len(new))
            is_new = torch.zeros(total, dtype=torch.bool)
            is_new[place] = True
            rows = torch.empty(total, dtype=torch.int64)
            merged = torch.empty(total, dtype=torch.int64)
            rows[place], merged[place] = new, new_counts
            rows[~is_new], merged[~is_new] = self.rows, self.counts
            self.rows, self.counts = rows, merged

    def _truncate(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """Keep the ``cap`` largest counts (ties: the first rows, i.e. the smaller key), in row order."""
        n = len(self.counts)
        if n <= self.cap:
            return None
        cut = self.counts.kthvalue(n - self.cap + 1).values  # the cap-th largest count
        keep = self.counts > cut
        ties = (self.counts == cut).nonzero(as_tuple=True)[0]
        keep[ties[: self.cap - int(keep.sum())]] = True
        if self.direct:  # split only the dropped rows into (key, unit), not the whole table
            rows = self.rows[~keep]
            dropped = rows // self.units, rows % self.units, self.counts[~keep]
            self.rows = self.rows[keep]
        else:
            dropped = self._keys[~keep], self._unit[~keep], self.counts[~keep]
            self._keys, self._unit = self._keys[keep], self._unit[keep]
        self.counts = self.counts[keep]
        return dropped


class NGramCounts:
    """Per-unit firing counts and per-n-gram occurrence counts for each n in ``n_values`` (see module docstring)."""

    def __init__(self, units: int, vocab: int, n_values: Iterable[int] = (2, 3),
                 max_entries: int = DEFAULT_MAX_ENTRIES):
        self.units, self.vocab, self.max_entries = units, vocab, max_entries
        self.n_values = tuple(sorted(set(n_values)))
        if not self.n_values or self.n_values[0] < 2:
            raise ValueError(f"n_values must be integers >= 2 (unigrams come from capture), got {n_values!r}")
        if vocab ** self.n_values[-1] >= 2**63:
            raise ValueError(f"{self.n_values[-1]}-gram keys over a vocabulary of {vocab} do not fit in 63 bits")
        self._fires = {n: _Table(max_entries, units, vocab**n) for n in self.n_values}
        self._occ = {n: _Table(max_entries, 1, vocab**n) for n in self.n_values}
        self.dropped = {n: torch.zeros(units, dtype=torch.int64) for n in self.n_values}
        self._slack = dict.fromkeys(self.n_values, 0)
        self._rows: dict = {}  # read-outs kept until the next add: n -> rows(n), ("by_unit", n) -> grouped

    # -- accumulation --------------------------------------------------------------------------------------------
    def grams(self, ids: torch.Tensor, n: int) -> torch.Tensor:
        """[B, W] token ids -> [B, W-n+1] keys of the n-grams ending at positions n-1..W-1."""
        W = ids.shape[1]
        key = torch.zeros(ids.shape[0], W - n + 1, dtype=torch.int64)
        for i in range(n):
            key = key * self.vocab + ids[:, i : W - n + 1 + i]
        return key

    def add(self, ids: torch.Tensor, fires: torch.Tensor) -> None:
        """Count one batch: ``ids`` [B, W] int64 content token ids, ``fires`` [B, W, U] bool."""
        B, W, U = fires.shape
        at, u = fires.reshape(B * W, U).nonzero(as_tuple=True)  # at = b * W + p
        p = at % W
        for n in self.n_values:
            if W < n:
                continue
            grams = self.grams(ids, n)
            key = torch.zeros(B, W, dtype=torch.int64)
            key[:, n - 1 :] = grams  # the key of the n-gram ending at each position (positions < n-1: unused)
            keep = p >= n - 1
            dropped = self._fires[n].add(key.view(-1)[at[keep]], u[keep])
            if dropped is not None:
                self.dropped[n].index_add_(0, dropped[1], dropped[2])
            dropped = self._occ[n].add(grams.flatten())
            if dropped is not None:
                self._slack[n] += int(dropped[2].max())
        self._rows.clear()

    def _merge(self, n: int) -> None:
        dropped = self._fires[n].merge()
        if dropped is not None:
            self.dropped[n].index_add_(0, dropped[1], dropped[2])
        dropped = self._occ[n].merge()
        if dropped is not None:
            self._slack[n] += int(dropped[2].max())

    # -- read-out ------------------------------------------------------------------------------------------------
    def rows(self, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(unit, key, firings) of every stored n-gram row, all units together (merged, not grouped by unit)."""
        if n not in self._rows:  # kept until the next add
            self._merge(n)
            table = self._fires[n]
            self._rows[n] = table.unit, table.keys, table.counts
        return self._rows[n]

    def totals(self, n: int) -> torch.Tensor:
        """[U] every unit's ``total(unit, n)`` at once."""
        unit, _, counts = self.rows(n)
        return torch.zeros(self.units, dtype=torch.int64).index_add_(0, unit, counts) + self.dropped[n]

    def unit_counts(self, unit: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(keys, firings) of one unit's stored n-grams, as tensors. The first call after an add groups the table
        by unit (one sort), so that reading many units stays cheap."""
        if ("by_unit", n) not in self._rows:
            units, keys, counts = self.rows(n)
            order = torch.sort(units, stable=True).indices
            offsets = torch.zeros(self.units + 1, dtype=torch.int64)
            offsets[1:] = torch.bincount(units, minlength=self.units).cumsum(0)
            self._rows["by_unit", n] = offsets, keys[order], counts[order]
        offsets, keys, counts = self._rows["by_unit", n]
        a, b = int(offsets[unit]), int(offsets[unit + 1])
        return keys[a:b], counts[a:b]

    def counts(self, unit: int, n: int) -> dict[int, int]:
        """{n-gram key: firings} of one unit (stored rows; see ``exact``)."""
        keys, counts = self.unit_counts(unit, n)
        return dict(zip(keys.tolist(), counts.tolist()))

    def total(self, unit: int, n: int) -> int:
        """The unit's firings at positions >= n-1 (exact, including dropped rows)."""
        return int(self.unit_counts(unit, n)[1].sum()) + int(self.dropped[n][unit])

    def exact(self, unit: int, n: int) -> bool:
        """True while none of this unit's n-gram rows was ever dropped."""
        return int(self.dropped[n][unit]) == 0

    @property
    def truncated(self) -> bool:
        """Whether any table ever dropped a row."""
        return any(bool(d.any()) for d in self.dropped.values()) or any(self._slack.values())

    def occurrences(self, keys: torch.Tensor, n: int) -> torch.Tensor:
        """Stored occurrence counts of n-gram ``keys`` (0 for keys not stored); see ``occurrence_slack``."""
        self._merge(n)
        table = self._occ[n]
        if len(table.keys) == 0:
            return torch.zeros(len(keys), dtype=torch.int64)
        at = torch.searchsorted(table.keys, keys).clamp(max=len(table.keys) - 1)
        return torch.where(table.keys[at] == keys, table.counts[at], 0)

    def occurrence_slack(self, n: int) -> int:
        """Upper bound on the occurrences of any n-gram missing from its stored count (0: counts are exact)."""
        self._merge(n)
        return self._slack[n]

    def decode(self, key: int, n: int) -> tuple[int, ...]:
        """The token ids (oldest first) of an n-gram key."""
        out = []
        for _ in range(n):
            key, t = divmod(int(key), self.vocab)
            out.append(t)
        return tuple(reversed(out))
