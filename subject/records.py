"""The records that flow from capture to the explainer, simulator and scorer; splits live here and only here.

    >>> rec = unit_record(...)                     # built by autointerp.subject.capture from a LayerCapture
    >>> rec.split("train")                         # the only windows an explainer is ever handed
    >>> [w.source for w in rec.split("test")]      # top and random windows, scored together
    >>> rec.held_out("test")                       # those and the range windows: what the classifiers draw from

docs/methods.md §2: top windows are dealt round-robin into ``train`` / ``valid`` / ``test`` (rank 0 -> train, 1 ->
valid, 2 -> test, 3 -> train, ...); random windows are dealt alternately into ``valid`` and ``test``. A random window
that is also one of the unit's top windows is dropped, so no window is in two splits; ``UnitRecord.__post_init__``
asserts it.

Range windows (``source == "range"``, docs/methods.md §2b; ``autointerp.subject.range_windows``): a uniform sample of
the windows on which the unit fires, each with its activation-quantile ``bin``, dealt into ``valid`` and ``test`` only.
Silent windows (``source == "silent"``): sampled the same way from the windows on which the unit does not fire, the
non-activating examples of detection. Both live in ``UnitRecord.range_windows``, apart from ``windows``: the simulation
scorer, the stored ``windows`` table and the explainer see exactly what they saw before; the detection and fuzzing
scorers read ``held_out``. A sampled window that is already a top or random window of the unit is not repeated: that
window takes the ``bin``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

Split = Literal["train", "valid", "test"]
SPLITS: tuple[Split, ...] = ("train", "valid", "test")
Source = Literal["top", "random", "range", "silent"]


@dataclass(frozen=True)
class Window:
    """One fixed-length excerpt and one unit's activations on it (BOS excluded)."""

    index: int  # position of the window in the corpus stream of this run: its identity
    tokens: tuple[str, ...]  # decoded token strings, one per content token
    token_ids: tuple[int, ...]  # the tokenizer's ids of the same tokens
    activations: tuple[float, ...]  # the unit's raw activation at each token (model units, not normalised)
    source: Source  # "top": among the unit's top-k by max activation; "random": from the shared reservoir
    rank: int  # rank among the unit's top windows (0 = highest max activation), or order in the reservoir
    split: Split
    bin: int | None = None  # activation-quantile bin (0 = lowest decile) when the range sample holds this window

    @property
    def max_activation(self) -> float:
        return max(self.activations)


@dataclass(frozen=True)
class UnitStats:
    """Streaming statistics of one unit over every content token of the corpus pass."""

    n_tokens: int  # content tokens seen (BOS excluded)
    fire_count: int  # tokens where activation > threshold
    threshold: float  # the firing threshold in force (0 for ReLU)
    mean: float
    std: float
    max: float
    min: float
    quantiles: dict[str, float] = field(default_factory=dict)  # "q50", "q90", "q99", "q999" from the histogram

    @property
    def firing_rate(self) -> float:
        return self.fire_count / self.n_tokens if self.n_tokens else 0.0

    @property
    def dead(self) -> bool:
        return self.fire_count == 0


@dataclass(frozen=True)
class UnitId:
    layer: int
    unit: int
    kind: str = "neuron"  # "neuron", or a dictionary such as "sae:<name>", "pca", "ica", "random"

    def __str__(self) -> str:
        base = f"{self.layer}/{self.unit}"
        return base if self.kind == "neuron" else f"{self.kind}@{base}"


@dataclass(frozen=True)
class UnitRecord:
    """Everything downstream stages may know about one unit: its windows (split) and statistics."""

    id: UnitId
    windows: tuple[Window, ...]
    stats: UnitStats
    top_tokens: tuple[tuple[str, int, int], ...] = ()  # (token, firings, occurrences), most firings first
    range_windows: tuple[Window, ...] = ()  # sources "range" and "silent": held out for the classifiers only

    def __post_init__(self):
        seen: dict[int, str] = {}
        for w in self.windows:
            other = seen.setdefault(w.index, w.split)
            assert other == w.split, f"window {w.index} of unit {self.id} is in both {other} and {w.split}"
            assert w.source in ("top", "random"), "sampled windows live in range_windows"
            if w.source == "random":
                assert w.split != "train", "random windows are never shown to the explainer"
        for w in self.range_windows:
            assert w.source in ("range", "silent") and w.split != "train", "sampled windows are held out only"
            assert w.index not in seen, f"range window {w.index} of unit {self.id} is also in {seen.get(w.index)}"
            seen[w.index] = w.split

    def split(self, name: Split, source: Source | None = None) -> list[Window]:
        """The top and random windows of a split (``source="range"`` or ``"silent"``: its sampled windows)."""
        if source in ("range", "silent"):
            return [w for w in self.range_windows if w.split == name and w.source == source]
        return [w for w in self.windows if w.split == name and (source is None or w.source == source)]

    def held_out(self, name: Split) -> list[Window]:
        """Every window of a split, range windows included: what detection and fuzzing draw their examples from."""
        return self.split(name) + [w for w in self.range_windows if w.split == name]

    def for_validation(self, n: int) -> UnitRecord:
        """The same record with at most ``n`` of its valid windows (0: all): the top half by rank and the other half
        random windows in reservoir order (one kind fills in where the other runs short). What a candidate
        explanation is judged on while the explainer chooses between drafts and revisions."""
        top = sorted(self.split("valid", "top"), key=lambda w: w.rank)
        rnd = self.split("valid", "random")
        if n <= 0 or n >= len(top) + len(rnd):
            return self
        k_top = min(len(top), max(n // 2, n - len(rnd)))
        keep = {w.index for w in top[:k_top] + rnd[: n - k_top]}
        return replace(self, windows=tuple(w for w in self.windows if w.split != "valid" or w.index in keep))

    def for_explainer(self) -> UnitRecord:
        """The same record holding only its ``train`` windows: all an explainer is ever handed."""
        return replace(self, windows=tuple(w for w in self.windows if w.split == "train"), range_windows=())


def deal_splits(n_top: int, n_random: int) -> tuple[list[Split], list[Split]]:
    """Split labels for top windows (by rank) and random windows (by reservoir order)."""
    top = [SPLITS[i % 3] for i in range(n_top)]
    rand: list[Split] = ["valid" if i % 2 == 0 else "test" for i in range(n_random)]
    return top, rand
