"""The subject-backed implementation of the explainer agent's tools (``autointerp.agent.tools.UnitTools``).

    >>> pool = ExplorationPool(subject, corpus, layer=13, window=64, seed=1)   # shared by every unit of a run
    >>> tools = SubjectUnitTools(subject, layer_capture, record, pool)
    >>> tools.run_text("def f(self):")            # [("def", 0.0), (" f", 1.7), ...]

Leak-free by construction: ``train_windows`` serves only the record's train split; ``quantile_windows`` draws from an
*exploration pool*, a separately seeded sample of corpus windows run through the subject once per run, from which
any window whose tokens equal one of the unit's valid or test windows is excluded; ``run_text`` runs new text.
"""

from __future__ import annotations

import random
from typing import Any

import torch

from autointerp.corpus import Corpus, bos_id, iter_token_windows
from autointerp.subject.records import UnitRecord, Window
from autointerp.subject.capture import LayerCapture
from autointerp.subject.hooks import run_batch
from autointerp.subject.model import Subject
from autointerp.subject.units import NEURONS, UnitSpace

POOL_WINDOWS = 256  # exploration windows per run (16k tokens at window 64)
MAX_TEXT_TOKENS = 256  # text_activations truncates longer text (and to the model's context)


class ExplorationPool:
    """Windows outside the scored set, with every unit's activations; computed on first use."""

    def __init__(self, subject: Subject, corpus: Corpus, layer: int, window: int, seed: int, size: int = POOL_WINDOWS,
                 space: UnitSpace = NEURONS):
        self.subject, self.corpus, self.layer, self.window = subject, corpus, layer, window
        self.seed, self.size, self.space = seed, size, space
        self._ids: torch.Tensor | None = None  # [M, W]
        self._acts: torch.Tensor | None = None  # [M, W, U]

    def load(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._ids is None:
            # the same corpus in another order; skip a random share so the pool is spread over the corpus
            reordered = self.corpus.with_seed(self.seed + 7919)
            rng = random.Random(self.seed)
            wins = [w for w in iter_token_windows(reordered, self.subject.tokenizer, self.window, self.size * 4)
                    if rng.random() < 0.25][: self.size]
            self._ids = torch.tensor(wins, dtype=torch.int64).reshape(len(wins), self.window)
            self._acts = activations(self.subject, self.layer, self._ids, space=self.space)
        return self._ids, self._acts


def activations(subject: Subject, layer: int, ids: torch.Tensor, batch: int = 32, space: UnitSpace = NEURONS
                ) -> torch.Tensor:
    """[N, W] content token ids -> [N, W, units] activations of ``layer``'s units in ``space`` (BOS prepended when
    the model uses one)."""
    bos = bos_id(subject.tokenizer)
    out = []
    with space.hooks(subject, [layer]) as store:
        for chunk in ids.split(batch):
            inputs = chunk if bos is None else torch.cat([torch.full((len(chunk), 1), bos), chunk], dim=1)
            run_batch(subject, inputs.to(subject.device))
            out.append(space.content(store, layer, inputs, chunk.shape[1]))
    return torch.cat(out) if out else torch.zeros(0, ids.shape[1], space.n_units(subject))


def text_activations(subject: Subject, layer: int, unit: int, text: str, space: UnitSpace = NEURONS
                     ) -> tuple[list[str], list[float]]:
    """New text run through the subject: its tokens (no special tokens; at most ``MAX_TEXT_TOKENS``, and the model's
    context less its BOS) and ``unit``'s activation on each. The agent's ``run_text`` and ``serve``'s live text."""
    ids = subject.tokenizer(text, add_special_tokens=False)["input_ids"]
    limit = MAX_TEXT_TOKENS if subject.max_positions is None else min(
        MAX_TEXT_TOKENS, subject.max_positions - (bos_id(subject.tokenizer) is not None))
    ids = ids[:limit]
    if not ids:
        return [], []
    acts = activations(subject, layer, torch.tensor([ids]), space=space)[0, :, unit]
    return [subject.tokenizer.decode([t]) for t in ids], [float(a) for a in acts]


class SubjectUnitTools:
    """UnitTools for one unit of a run (see the module docstring)."""

    def __init__(self, subject: Subject, cap: LayerCapture, record: UnitRecord, pool: ExplorationPool,
                 analysis: dict[str, Any] | None = None):
        self.subject, self.cap, self.record, self.pool = subject, cap, record, pool
        self.unit = record.id.unit
        self.analysis = analysis or {}
        self._held_out = {w.token_ids for w in record.windows if w.split != "train"}

    def statistics(self) -> dict[str, Any]:
        st = self.record.stats
        return {
            "layer": self.record.id.layer, "unit": self.unit, "dead": st.dead, "n_tokens": st.n_tokens,
            "firing_rate": round(st.firing_rate, 6), "mean": st.mean, "std": st.std, "max": st.max,
            "quantiles": st.quantiles,
            "top_tokens": [{"token": t, "firings": f, "occurrences": n} for t, f, n in self.record.top_tokens],
            "position_firing_rate": [round(f, 4) for f in self.cap.position_profile()[:, self.unit].tolist()],
            **self.analysis,
        }

    def train_windows(self, offset: int = 0, n: int = 5) -> list[Window]:
        return self.record.split("train")[max(0, offset): max(0, offset) + max(0, n)]

    def quantile_windows(self, lo: float, hi: float, n: int = 4) -> list[Window]:
        lo, hi = sorted((min(max(lo, 0.0), 1.0), min(max(hi, 0.0), 1.0)))
        values = self.cap.quantile_values(self.unit, (lo, hi))
        if not values:
            return []
        a, b = values
        ids, acts = self.pool.load()
        unit_acts = acts[:, :, self.unit]
        wmax = unit_acts.max(dim=1).values
        picked = []
        for i in torch.nonzero((wmax >= a) & (wmax <= b)).flatten().tolist():
            tokens = tuple(int(t) for t in ids[i])
            if tokens in self._held_out:
                continue
            # not part of any split: labelled "random"/"train" because the explainer may see it; index < 0
            picked.append(Window(index=-1 - i, tokens=tuple(self.cap.decode(t) for t in tokens), token_ids=tokens,
                                 activations=tuple(round(float(x), 6) for x in unit_acts[i]), source="random",
                                 rank=len(picked), split="train"))
            if len(picked) >= n:
                break
        return picked

    def run_text(self, text: str) -> list[tuple[str, float]]:
        tokens, acts = text_activations(self.subject, self.record.id.layer, self.unit, text, self.pool.space)
        return [(t, round(a, 4)) for t, a in zip(tokens, acts)]
