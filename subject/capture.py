"""One streaming pass over the corpus that keeps, per unit, everything later stages need (docs/methods.md §1).

    >>> from autointerp.subject.model import load_subject
    >>> from autointerp.subject.capture import CaptureConfig, capture
    >>> from autointerp.corpus import open_corpus
    >>> subject = load_subject("bundled")
    >>> caps = capture(subject, open_corpus("stdlib"), CaptureConfig(layers=[13], max_tokens=100_000))
    >>> rec = caps[13].unit_record(7)              # an autointerp.subject.records.UnitRecord with split windows

Kept per unit (memory independent of the number of tokens): firing count, sum, sum of squares, max, min, a
fixed-bin histogram, the top-k windows by max activation and (gated/non-ReLU units) the most negative windows,
per-position and per-token firing counts, with ``CaptureConfig.ngrams`` bigram/trigram firing counts (ngrams.py);
per layer: per-token occurrences and a reservoir of random windows shared by all units (every unit's activations);
per unit, windows sampled from those where it fires (by activation decile) and where it does not (range_windows.py).
"Fires" follows the firing rule (``autointerp.subject.firing``). The pass stops after the deepest hooked layer.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
import torch

from autointerp.corpus import Corpus, bos_id, iter_token_windows
from autointerp.errors import UsageError
from autointerp.subject.firing import CALIBRATION_TOKENS, bottom_k, describe, max_fraction_thresholds, resolve_rule
from autointerp.subject.records import UnitId, UnitRecord, UnitStats, Window, deal_splits
from autointerp.subject.model import Subject
from autointerp.subject.hooks import batches, run_batch
from autointerp.subject.ngrams import NGramCounts
from autointerp.subject.range_windows import RangeReservoir
from autointerp.subject.token_counts import TokenCounts
from autointerp.subject.units import NEURONS, UnitSpace

# Fixed histogram edges, the same for every unit and model: 0, then +-geomspace(1e-4, 1e4, 64).
_POS = np.geomspace(1e-4, 1e4, 64)
HIST_EDGES = np.concatenate([-_POS[::-1], [0.0], _POS])
TEXTS_KEPT = 4096  # windows whose ids and token texts unit records share (LayerCapture._built): ~13 MB at 64 tokens


@dataclass(frozen=True)
class CaptureConfig:
    layers: list[int]
    window: int = 64  # content tokens per window (BOS excluded)
    top_k: int = 30  # top windows kept per unit: dealt 10/10/10 into train/valid/test
    n_random: int = 20  # random windows in the shared reservoir: dealt 10/10 into valid/test
    batch_size: int = 32
    max_tokens: int | None = None  # stop after this many content tokens (None: the whole corpus)
    threshold: float = 0.0  # firing rule "fixed": "fires" means activation > threshold
    firing: str = "auto"  # the firing rule (autointerp.subject.firing): auto, fixed or max_fraction
    calibration_tokens: int = CALIBRATION_TOKENS  # max_fraction: tokens whose per-unit maxima set the thresholds
    seed: int = 0
    ngrams: bool = False  # also count firings per bigram and trigram (autointerp.subject.ngrams), for the analyses
    top_units: int | None = None  # also count, per unit, the tokens where it fires and is among this many of the
    #                               layer's most activated units (VISIT's regularization check uses 100)
    range_windows: int = 100  # per unit, sampled from the windows where it fires (range_windows.py): 5 per decile
    #                           in each held-out split, delphi's 50 activating test examples over 10 quantiles
    silent_windows: int = 100  # per unit, sampled from the windows where it does not fire (range_windows.py)


@dataclass
class LayerCapture:
    """Everything one pass kept for one layer. Arrays are indexed [unit, ...] unless said otherwise."""

    layer: int
    config: CaptureConfig
    n_units: int
    vocab: int
    tokenizer: object = field(repr=False)
    n_windows: int = 0
    n_tokens: int = 0  # content tokens (BOS excluded)
    fire_count: torch.Tensor = None  # [U] int64
    act_sum: torch.Tensor = None  # [U] float64
    act_sq: torch.Tensor = None  # [U] float64
    act_max: torch.Tensor = None  # [U]
    act_min: torch.Tensor = None  # [U]
    hist: torch.Tensor = None  # [U, len(HIST_EDGES) + 1] int64 (bucketize bins)
    pos_fire: torch.Tensor = None  # [W, U] int64 firings at each content position
    tok_count: torch.Tensor = None  # [V] int64 occurrences of each token
    tok_fire: TokenCounts = None  # firings per (token, unit)
    top_val: torch.Tensor = None  # [U, K] max activation of each kept window, descending
    top_index: torch.Tensor = None  # [U, K] corpus window index (-1: empty slot)
    top_acts: torch.Tensor = None  # [U, K, W] the unit's activations on each kept window
    top_ids: torch.Tensor = None  # [U, K, W] token ids of each kept window
    res_index: list[int] = field(default_factory=list)  # reservoir: corpus window indices
    res_ids: list[torch.Tensor] = field(default_factory=list)  # [W] token ids each
    res_acts: list[torch.Tensor] = field(default_factory=list)  # [W, U] activations of every unit each
    ngrams: NGramCounts | None = None  # per-unit bigram/trigram firing counts when config.ngrams
    top_hits: torch.Tensor | None = None  # [U] int64 tokens where the unit fires among the top config.top_units
    rule: str = "fixed"  # the firing rule in force (resolved: fixed or max_fraction)
    bottom_k: int = 0  # most negative windows kept per unit (firing.bottom_k)
    thresholds: torch.Tensor = None  # [U] a unit fires when its activation is above its threshold
    bot_val: torch.Tensor = None  # [U, bottom_k] minus the min activation of each kept window, descending
    bot_index: torch.Tensor = None  # [U, bottom_k]
    bot_acts: torch.Tensor = None  # [U, bottom_k, W]
    bot_ids: torch.Tensor = None  # [U, bottom_k, W]
    range_sample: RangeReservoir = None  # per unit, windows where it fires, across its activation range
    silent_sample: RangeReservoir = None  # per unit, windows where it does not fire

    def __post_init__(self):
        U, K, W = self.n_units, self.config.top_k, self.config.window
        self.fire_count = torch.zeros(U, dtype=torch.int64)
        self.act_sum = torch.zeros(U, dtype=torch.float64)
        self.act_sq = torch.zeros(U, dtype=torch.float64)
        self.act_max = torch.full((U,), -torch.inf)
        self.act_min = torch.full((U,), torch.inf)
        self.hist = torch.zeros(U, len(HIST_EDGES) + 1, dtype=torch.int64)
        self.pos_fire = torch.zeros(W, U, dtype=torch.int64)
        self.tok_count = torch.zeros(self.vocab, dtype=torch.int64)
        self.tok_fire = TokenCounts(self.vocab, U)
        self.top_val = torch.full((U, K), -torch.inf)
        self.top_index = torch.full((U, K), -1, dtype=torch.int64)
        self.top_acts = torch.zeros(U, K, W)
        self.top_ids = torch.zeros(U, K, W, dtype=torch.int32)
        self.thresholds = torch.full((U,), float(self.config.threshold))
        B = self.bottom_k
        self.bot_val, self.bot_index = torch.full((U, B), -torch.inf), torch.full((U, B), -1, dtype=torch.int64)
        self.bot_acts, self.bot_ids = torch.zeros(U, B, W), torch.zeros(U, B, W, dtype=torch.int32)
        self.range_sample = RangeReservoir(U, self.config.range_windows, W, self.config.seed)
        self.silent_sample = RangeReservoir(U, self.config.silent_windows, W, self.config.seed + 1, silent=True)
        self._edges = torch.tensor(HIST_EDGES, dtype=torch.float32)
        self._decoded: dict[int, str] = {}
        self._texts: dict[int, tuple[tuple[int, ...], tuple[str, ...]]] = {}  # window index -> (ids, tokens): _built
        if self.config.ngrams:
            self.ngrams = NGramCounts(units=U, vocab=self.vocab)
        if self.config.top_units:
            self.top_hits = torch.zeros(U, dtype=torch.int64)

    # -- accumulation ------------------------------------------------------------------------------------------
    def update(self, acts: torch.Tensor, ids: torch.Tensor, first_index: int) -> None:
        """acts: [B, W, U] float32 on CPU; ids: [B, W] int64; windows numbered first_index.. in corpus order."""
        B, W, U = acts.shape
        flat = acts.reshape(-1, U)
        fires = flat > self.thresholds
        self.n_tokens += B * W
        self.n_windows += B
        batch_fires = fires.sum(0)
        self.fire_count += batch_fires
        self.act_sum += flat.sum(0, dtype=torch.float64)
        self.act_sq += (flat * flat).sum(0, dtype=torch.float64)
        self.act_max = torch.maximum(self.act_max, flat.max(0).values)
        self.act_min = torch.minimum(self.act_min, flat.min(0).values)
        bins = torch.bucketize(flat, self._edges) + torch.arange(U) * self.hist.shape[1]
        self.hist += torch.bincount(bins.flatten(), minlength=self.hist.numel()).view_as(self.hist)
        self.pos_fire += fires.view(B, W, U).sum(0)
        flat_ids = ids.flatten()
        self.tok_count += torch.bincount(flat_ids, minlength=self.vocab)
        self.tok_fire.add(flat_ids, fires)
        if self.ngrams is not None:
            self.ngrams.add(ids, fires.view(B, W, U))
        if self.top_hits is not None:
            self.top_hits += self._top_hits(flat, fires, batch_fires)
        wmax = acts.amax(dim=1).T  # [U, B]
        for sample in (self.range_sample, self.silent_sample):
            sample.update(acts, ids, first_index, self.thresholds, wmax)
        self.top_val, self.top_index, self.top_acts, self.top_ids = _merge_best(
            (self.top_val, self.top_index, self.top_acts, self.top_ids), wmax, acts, ids, first_index)
        if self.bottom_k:
            self.bot_val, self.bot_index, self.bot_acts, self.bot_ids = _merge_best(
                (self.bot_val, self.bot_index, self.bot_acts, self.bot_ids), acts.amin(dim=1).neg().T, acts, ids,
                first_index)

    def _top_hits(self, flat: torch.Tensor, fires: torch.Tensor, batch_fires: torch.Tensor) -> torch.Tensor:
        """[U] tokens of this batch where each unit fires and fewer than ``top_units`` units have a strictly larger
        activation (ties at the k-th value all in, as lens.regularization_units). Where at most k units fire, every
        firing unit qualifies, so the k-th value is computed only for the tokens with more than k firing."""
        k = min(self.config.top_units, flat.shape[1])
        crowded = fires.sum(1) > k
        if not crowded.any():
            return batch_fires
        sub, sub_fires = flat[crowded], fires[crowded]
        kth = sub.topk(k, dim=1).values[:, -1:]
        return batch_fires - ((sub < kth) & sub_fires).sum(0)

    def put_reservoir(self, slot: int, index: int, ids: torch.Tensor, acts: torch.Tensor) -> None:
        """Store window ``index`` in reservoir slot ``slot`` (chosen by ``reservoir_slot``, shared by all layers)."""
        item = (index, ids.clone(), acts.clone())
        if slot == len(self.res_index):
            self.res_index.append(item[0]), self.res_ids.append(item[1]), self.res_acts.append(item[2])
        else:
            self.res_index[slot], self.res_ids[slot], self.res_acts[slot] = item

    # -- read-out ----------------------------------------------------------------------------------------------
    def stats(self, unit: int) -> UnitStats:
        n = self.n_tokens
        mean = float(self.act_sum[unit] / n) if n else 0.0
        var = float(self.act_sq[unit] / n) - mean * mean if n else 0.0
        return UnitStats(
            n_tokens=n,
            fire_count=int(self.fire_count[unit]),
            threshold=float(self.thresholds[unit]),
            mean=mean,
            std=max(var, 0.0) ** 0.5,
            max=float(self.act_max[unit]) if n else 0.0,
            min=float(self.act_min[unit]) if n else 0.0,
            quantiles=self.quantiles(unit),
        )

    @property
    def firing_rule(self) -> str:
        """The rule in force, in one line (stored with the results)."""
        return describe(self.rule, self.config.threshold, self.config.calibration_tokens, self.n_tokens)

    def bottom_windows(self, unit: int) -> list[dict]:
        """The unit's most negative windows (firing.bottom_k; none under the fixed rule), most negative first, as
        {"index", "min", "tokens", "activations"}: kept for review, never dealt into the explainer's splits."""
        keep = (self.bot_index[unit] >= 0).nonzero(as_tuple=True)[0].tolist()
        out = []
        for k in keep:
            w = self._window(int(self.bot_index[unit, k]), self.bot_ids[unit, k], self.bot_acts[unit, k], "top", k,
                             "train")
            out.append({"index": w.index, "min": float(-self.bot_val[unit, k]), "tokens": list(w.tokens),
                        "activations": list(w.activations)})
        return out

    def calibrate(self, unit_max: torch.Tensor) -> None:
        """Set the max_fraction thresholds from each unit's maximum over the calibration tokens."""
        self.thresholds = max_fraction_thresholds(unit_max)

    def position_profile(self) -> torch.Tensor:
        """[W, U] firing frequency f(p) of each unit at each content position (every window has all W positions)."""
        return self.pos_fire.double() / max(self.n_windows, 1)

    def quantile_values(self, unit: int, qs: Iterable[float]) -> list[float]:
        """Quantiles from the fixed-bin histogram: the upper edge of the bin holding each quantile, clipped to
        the observed [min, max] (resolution: one bin, ~16% relative width). Empty when nothing was seen."""
        counts = self.hist[unit].numpy()
        total = counts.sum()
        if total == 0:
            return []
        cum = np.cumsum(counts) / total
        upper = np.concatenate([HIST_EDGES, [np.inf]])
        lo, hi = float(self.act_min[unit]), float(self.act_max[unit])
        return [float(np.clip(upper[min(np.searchsorted(cum, q), len(upper) - 1)], lo, hi)) for q in qs]

    def quantiles(self, unit: int, qs=(0.5, 0.9, 0.99, 0.999)) -> dict[str, float]:
        """{"q50": ..., "q90": ..., "q99": ..., "q999": ...} (see quantile_values)."""
        return {f"q{q * 100:g}".replace(".", ""): v for q, v in zip(qs, self.quantile_values(unit, qs))}

    def top_tokens(self, unit: int, n: int = 10) -> list[tuple[str, int, int]]:
        """(token, firings, occurrences) of the tokens this unit fires on most often."""
        col = self.tok_fire.column(unit)
        best = sorted(col.items(), key=lambda kv: (-kv[1], kv[0]))[:n]
        return [(self.decode(t), c, int(self.tok_count[t])) for t, c in best]

    def decode(self, token_id: int) -> str:
        """One token id as text (memoised: the same few thousand ids are decoded for every unit's windows)."""
        token_id = int(token_id)
        text = self._decoded.get(token_id)
        if text is None:
            text = self._decoded[token_id] = self.tokenizer.decode([token_id])
        return text

    def unit_record(self, unit: int, kind: str = "neuron") -> UnitRecord:
        """The unit's windows, dealt into splits (records.deal_splits), with its statistics."""
        keep = (self.top_index[unit] >= 0).nonzero(as_tuple=True)[0]
        top_labels, _ = deal_splits(len(keep), 0)
        top_indices = self.top_index[unit, keep].tolist()
        windows = self._windows(top_indices, self.top_ids[unit, keep], self.top_acts[unit, keep], "top",
                                list(range(len(keep))), top_labels)
        top_set = set(top_indices)
        randoms = [i for i in range(len(self.res_index)) if self.res_index[i] not in top_set]
        _, rand_labels = deal_splits(0, len(randoms))
        for order, (i, split) in enumerate(zip(randoms, rand_labels)):
            windows.append(
                self._window(self.res_index[i], self.res_ids[i], self.res_acts[i][:, unit], "random", order, split)
            )
        windows, ranged = self.range_sample.windows(unit, windows, self._windows)
        windows, silent = self.silent_sample.windows(unit, windows, self._windows)
        return UnitRecord(
            id=UnitId(self.layer, unit, kind),
            windows=tuple(windows),
            stats=self.stats(unit),
            top_tokens=tuple(self.top_tokens(unit)),
            range_windows=tuple(ranged + silent),
        )

    def _window(self, index, ids, acts, source, rank, split) -> Window:
        ids = ids.tolist() if isinstance(ids, torch.Tensor) else [int(t) for t in ids]
        acts = acts.double().numpy() if isinstance(acts, torch.Tensor) else np.asarray(acts, dtype=np.float64)
        return self._built(index, ids, np.round(acts, 6).tolist(), source, rank, split, None)

    def _windows(self, indices: list[int], ids: torch.Tensor, acts: torch.Tensor, source: str, ranks: list[int],
                 splits: list[str], bins: list[int | None] | None = None) -> list[Window]:
        """Windows in bulk from rows of ids and activations [n, W]: one tensor-to-list conversion for all of them (a
        unit's record holds a few hundred windows)."""
        rows = np.round(acts.double().numpy(), 6).tolist()
        return [self._built(index, row_ids, row_acts, source, rank, split, bin_)
                for index, row_ids, row_acts, rank, split, bin_
                in zip(indices, ids.tolist(), rows, ranks, splits, bins or [None] * len(indices))]

    def _built(self, index: int, ids: list[int], acts: list[float], source: str, rank: int, split: str,
               bin_: int | None) -> Window:
        """One window; its token ids and texts are shared with the other units' records of the same window (the
        random windows are in every unit's, and dense units sample many of the same), the last ``TEXTS_KEPT``."""
        token_ids = tuple(ids)
        texts = self._texts.get(index)
        if texts is None or texts[0] != token_ids:
            decode = self._decoded.get
            texts = self._texts[index] = (token_ids, tuple([decode(t) or self.decode(t) for t in ids]))
            if len(self._texts) > TEXTS_KEPT:
                del self._texts[next(iter(self._texts))]  # the oldest
        return Window(index=index, tokens=texts[1], token_ids=texts[0], activations=tuple(acts), source=source,
                      rank=rank, split=split, bin=bin_)


def capture(
    subject: Subject,
    corpus: Corpus,
    config: CaptureConfig,
    on_batch: Callable[[int], None] | None = None,
    space: UnitSpace | None = None,
) -> dict[int, LayerCapture]:
    """Stream ``corpus`` through ``subject`` once; return a LayerCapture per requested layer.

    ``on_batch(n_tokens)`` is called after each batch with the content tokens it held (for progress bars).
    ``space``: what the units are (``autointerp.subject.units``; default: the MLP neurons).
    """
    check_corpus(corpus, subject, config.window)
    max_windows = None if config.max_tokens is None else max(1, config.max_tokens // config.window)
    windows = iter_token_windows(corpus, subject.tokenizer, config.window, max_windows)
    return capture_windows(subject, windows, config, on_batch, space)


def check_window(subject: Subject, window: int) -> None:
    """UsageError when a window (and the BOS token the model's tokenizer adds) does not fit the model's positions."""
    needed = window + (bos_id(subject.tokenizer) is not None)
    if subject.max_positions is not None and needed > subject.max_positions:
        raise UsageError(f"--window {window} needs {needed} positions but {subject.name} has "
                         f"{subject.max_positions}; use --window {window - needed + subject.max_positions} or less")


def check_corpus(corpus: Corpus, subject: Subject, window: int) -> None:
    """UsageError unless the corpus yields at least one window of ``window`` tokens (read until the first one)."""
    if next(iter_token_windows(corpus, subject.tokenizer, window, 1), None) is None:
        raise UsageError(f"corpus {corpus.spec!r} yields no window of {window} tokens (its documents are empty or "
                         "shorter); use a larger corpus or a smaller --window")


def capture_windows(
    subject: Subject,
    windows: Iterable[list[int]],
    config: CaptureConfig,
    on_batch: Callable[[int], None] | None = None,
    space: UnitSpace | None = None,
) -> dict[int, LayerCapture]:
    """The capture loop over already tokenized windows (lists of ``config.window`` content token ids)."""
    space = NEURONS if space is None else space
    check_window(subject, config.window)
    bos = bos_id(subject.tokenizer)
    vocab = max(len(subject.tokenizer), subject.model.get_input_embeddings().num_embeddings)
    try:
        rule = resolve_rule(config.firing, space.activation(subject))
    except ValueError as e:
        raise UsageError(f"{e}; use --firing auto, fixed or max_fraction")
    caps = {
        layer: LayerCapture(layer, config, space.n_units(subject), vocab, subject.tokenizer, rule=rule,
                            bottom_k=bottom_k(rule))
        for layer in config.layers
    }
    rng = random.Random(config.seed)
    n_seen = 0
    held: list[tuple[dict[int, torch.Tensor], torch.Tensor, int]] | None = [] if rule == "max_fraction" else None
    with space.hooks(subject, config.layers) as store:
        for ids, inputs in batches(subject, windows, config.batch_size):  # [BOS] + window, as every hook user
            run_batch(subject, inputs)
            slots = [(b, slot) for b in range(len(ids))
                     if (slot := reservoir_slot(rng, n_seen + b, config.n_random)) is not None]
            layer_acts = {}
            for layer, cap in caps.items():
                acts = layer_acts[layer] = space.content(store, layer, inputs, config.window)  # [B, W, U], no BOS
                for b, slot in slots:
                    cap.put_reservoir(slot, n_seen + b, ids[b], acts[b])
            if held is None:
                for layer, cap in caps.items():
                    cap.update(layer_acts[layer], ids, n_seen)
            else:  # calibrating: hold the batch until the thresholds are known
                held.append((layer_acts, ids, n_seen))
                if (n_seen + len(ids)) * config.window >= config.calibration_tokens:
                    _calibrate(caps, held)
                    held = None
            n_seen += len(ids)
            if on_batch:
                on_batch(len(ids) * config.window)
    if held:  # the whole stream was shorter than the calibration
        _calibrate(caps, held)
    return caps


def _calibrate(caps: dict[int, LayerCapture], held: list[tuple[dict[int, torch.Tensor], torch.Tensor, int]]) -> None:
    """Set each layer's thresholds from the held batches' per-unit maxima, then count those batches under them."""
    for layer, cap in caps.items():
        cap.calibrate(torch.stack([acts[layer].amax(dim=(0, 1)) for acts, _, _ in held]).amax(0))
        for acts, ids, first in held:
            cap.update(acts[layer], ids, first)


def _merge_best(kept: tuple[torch.Tensor, ...], wmax: torch.Tensor, acts: torch.Tensor, ids: torch.Tensor,
                first_index: int) -> tuple[torch.Tensor, ...]:
    """Merge a batch into a running per-unit top-k of windows by ``wmax`` [U, B], each window's score (its max
    activation for the top windows; minus its min for the most negative ones, with no negated copy of the batch).
    ``kept``: (values [U, K], index, acts [U, K, W], ids)."""
    vals_kept, index_kept, acts_kept, ids_kept = kept
    B, W, U = acts.shape
    K = vals_kept.shape[1]
    if not (wmax > vals_kept[:, -1:]).any():  # cheap early exit: no window beats any unit's current k-th best
        return kept
    vals, idx = torch.cat([vals_kept, wmax], dim=1).topk(K, dim=1)  # [U, K]
    index = torch.cat([index_kept, (first_index + torch.arange(B)).expand(U, B)], dim=1)
    pool_acts = torch.cat([acts_kept, acts.permute(2, 0, 1)], dim=1)  # [U, K+B, W]
    pool_ids = torch.cat([ids_kept, ids.to(torch.int32).expand(U, B, W)], dim=1)
    gather = idx.unsqueeze(-1).expand(U, K, W)
    return vals, index.gather(1, idx), pool_acts.gather(1, gather), pool_ids.gather(1, gather)


def reservoir_slot(rng: random.Random, index: int, size: int) -> int | None:
    """Algorithm R: the slot window number ``index`` (0-based, in stream order) takes, or None to skip it.

    After n windows every one of them is in the reservoir with probability size / n.
    """
    if index < size:
        return index
    j = rng.randint(0, index)
    return j if j < size else None
