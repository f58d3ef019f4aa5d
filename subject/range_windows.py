"""Windows from the whole activation range (docs/methods.md §2b): per unit, a uniform sample of the windows on which it
fires, kept in the same single capture pass beside the top windows and the shared random reservoir.

    res = RangeReservoir(n_units=3072, size=20, window=64, seed=0)
    res.update(acts, ids, first_index, thresholds)        # [B, W, U], [B, W] per batch (LayerCapture.update)
    res.entries(unit)                                     # [(index, bin, split, ids, acts)], by activation rank

What is kept. Unit u's reservoir holds ``size`` windows drawn uniformly (Algorithm R, one stream per unit) from the
windows whose max activation is above u's firing threshold (``autointerp.subject.firing``), so every part of the
unit's activation range is represented in proportion to how often it occurs, unlike the top windows. Memory is
``units x size x window`` activations and token ids, whatever the number of tokens (the tensors' bytes:
``nbytes``). The update is vectorised across units: per batch, one random draw per (unit, firing window), and where
several windows of one batch land on the same slot the last one in stream order wins, exactly as the sequential
algorithm would; no Python loop over units.

Bins and splits (read-out, ``entries``). A unit's kept windows are ranked by their max activation (ties by window
index) and cut into ``N_BINS`` equal bins by rank: bin 0 holds the lowest tenth, bin 9 the highest. These are
deciles of the window max over the sample, which estimates the deciles over every firing window of the pass (the
reference choice of §2b). Rank-based bins stay equal in size when many windows share one max (a planted detector's
windows all peak at the same value). Ranks alternate between ``valid`` (even) and ``test`` (odd), so with the
default 100 windows per unit each held-out split gets five windows from every decile (delphi's 50 activating test
examples over 10 quantiles); the explainer never sees them.
``LayerCapture.unit_record`` drops a window that is already one of the unit's top or random windows (it keeps its
own split and takes the bin), so no window is in two splits.

Silent windows (``silent=True``; ``CaptureConfig.silent_windows``): the same sampler over the windows on which the
unit does NOT fire (max at or below its threshold), without bins, dealt alternately into ``valid`` and ``test``: the
non-activating examples of detection for units that fire in most random windows (a unit firing on 5% of tokens is
silent in about 4% of 64-token windows, so the 20 shared random windows rarely hold one).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Optional

import numpy as np
import torch

from autointerp.subject.records import Window

N_BINS = 10  # deciles of the window max
# builds windows in bulk: (indices, ids [n, W], acts [n, W], source, ranks, splits, bins) -> windows
MakeWindows = Callable[[list[int], torch.Tensor, torch.Tensor, str, list[int], list[str], list[Optional[int]]],
                       list[Window]]
SPLITS = ("valid", "test")


class RangeReservoir:
    """Per unit, ``size`` windows drawn uniformly from those on which the unit fires (see the module docstring)."""

    def __init__(self, n_units: int, size: int, window: int, seed: int = 0, silent: bool = False):
        U, R, W = n_units, size, window
        self.size, self.silent = R, silent  # silent: sample the windows where the unit does NOT fire instead
        self.seen = torch.zeros(U, dtype=torch.int64)  # firing windows seen so far per unit
        self.index = torch.full((U, R), -1, dtype=torch.int64)  # corpus window index per slot (-1: empty)
        self.wmax = torch.full((U, R), -torch.inf)  # the window's max activation
        self.acts = torch.zeros(U, R, W)
        self.ids = torch.zeros(U, R, W, dtype=torch.int32)
        self._gen = torch.Generator().manual_seed(seed + 0x5EED)

    @property
    def nbytes(self) -> int:
        """Bytes of the kept tensors: flat in the number of tokens."""
        return sum(t.numel() * t.element_size() for t in (self.seen, self.index, self.wmax, self.acts, self.ids))

    def update(self, acts: torch.Tensor, ids: torch.Tensor, first_index: int, thresholds: torch.Tensor,
               wmax: torch.Tensor | None = None) -> None:
        """Offer a batch: ``acts`` [B, W, U], ``ids`` [B, W], windows numbered ``first_index``.. in stream order;
        ``wmax`` [U, B], each window's max per unit, when the caller has it already.

        The draw is torch's (one ``torch.rand`` per batch with a firing window, from the reservoir's own generator);
        the rest runs on numpy views of the same memory: on these small [units, batch] arrays an operation costs a
        tenth of a torch call's overhead, and the update is two dozen of them (``bench_capture.py --range-speed``)."""
        if self.size == 0:
            return
        B, W, U = acts.shape
        R = self.size
        wmax = acts.amax(dim=1).T if wmax is None else wmax  # [U, B]
        peak, limit = np.ascontiguousarray(wmax.numpy()), thresholds.numpy()[:, None]  # row-major: cumsum by row
        fires = (peak <= limit) if self.silent else (peak > limit)  # the windows sampled
        if not fires.any():
            return
        seen = self.seen.numpy()
        ordinal = seen[:, None] + np.cumsum(fires, axis=1) - 1  # 0-based position of each firing window in u's stream
        seen += fires.sum(1)
        # uniform in 0..ordinal, computed as torch computes float32 x int64 (in float32, truncated)
        drawn = (torch.rand(U, B, generator=self._gen).numpy() * (ordinal + 1).astype(np.float32)).astype(np.int64)
        slot = np.where(ordinal < R, ordinal, drawn)
        take = fires & (slot < R)
        if not take.any():
            return
        u_t, b_t = np.nonzero(take)  # unit by unit, each unit's windows in stream order
        s_t = slot[u_t, b_t]
        # where several windows of the batch land on one slot, the last in stream order wins (as Algorithm R would)
        _, from_end = np.unique((u_t * R + s_t)[::-1], return_index=True)
        last = len(u_t) - 1 - from_end
        u_sel, r_sel, b_sel = u_t[last], s_t[last], b_t[last]
        self.index.numpy()[u_sel, r_sel] = first_index + b_sel
        self.wmax.numpy()[u_sel, r_sel] = peak[u_sel, b_sel]
        self.acts.numpy()[u_sel, r_sel] = acts.float().numpy()[b_sel, :, u_sel]
        self.ids.numpy()[u_sel, r_sel] = ids.numpy()[b_sel]

    def _ranked(self, unit: int) -> torch.Tensor:
        """The slots of the unit's kept windows, lowest max activation first (ties: the earlier window first)."""
        index = self.index[unit]
        kept = (index >= 0).nonzero(as_tuple=True)[0]
        kept = kept[torch.argsort(index[kept])]
        return kept[torch.sort(self.wmax[unit, kept], stable=True).indices]

    def _bins(self, n: int) -> list[int | None]:
        return [None] * n if self.silent else [rank * N_BINS // n for rank in range(n)]

    def entries(self, unit: int) -> list[tuple[int, int | None, str, torch.Tensor, torch.Tensor]]:
        """The unit's kept windows as ``(index, bin, split, ids [W], acts [W])``, lowest max activation first (a
        silent sample: bin None)."""
        slots = self._ranked(unit)
        indices, bins = self.index[unit, slots].tolist(), self._bins(len(slots))
        return [(index, bins[rank], SPLITS[rank % 2], self.ids[unit, k], self.acts[unit, k])
                for rank, (k, index) in enumerate(zip(slots.tolist(), indices))]

    def windows(self, unit: int, windows: list[Window], make: MakeWindows) -> tuple[list[Window], list[Window]]:
        """The unit's top and random ``windows`` and its sampled ones (``make(indices, ids [n, W], acts [n, W],
        source, ranks, splits, bins)`` builds them; source "range", or "silent"): a sampled window already among
        ``windows`` is not repeated, it takes the bin there."""
        windows = list(windows)
        position = {w.index: k for k, w in enumerate(windows)}
        slots = self._ranked(unit)
        indices, bins = self.index[unit, slots].tolist(), self._bins(len(slots))
        fresh = []
        for rank, index in enumerate(indices):
            if index in position:
                windows[position[index]] = replace(windows[position[index]], bin=bins[rank])
            else:
                fresh.append(rank)
        taken = slots[fresh]
        ranged = make([indices[r] for r in fresh], self.ids[unit, taken], self.acts[unit, taken],
                      "silent" if self.silent else "range", fresh, [SPLITS[r % 2] for r in fresh],
                      [bins[r] for r in fresh])
        return windows, ranged
