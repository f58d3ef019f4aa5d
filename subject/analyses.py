"""Per-unit analyses from one capture pass: dead units, n-gram coverage, token and trigram detectors, suppression of
triggers, positional units (docs/methods.md §3-5, Voita et al. 2023). Pure functions over a LayerCapture and
NGramCounts.

    >>> from autointerp.subject.analyses import analyze_layer
    >>> units, summary = analyze_layer(subject, caps[3], caps[3].ngrams)
    >>> summary.pct_dead, summary.n_token_detectors, summary.suppression_fraction
    >>> [u.to_json() for u in units if u.token_detector]

Rules (all counts are over content tokens; BOS is never counted):

- **Dead**: ``fire_count == 0`` over the ``n_tokens`` processed. Firing rate = fire_count / n_tokens. "Fires"
  follows capture's firing rule (``autointerp.subject.firing``): ``> 0`` for ReLU units, above half the unit's max
  (floored at a tenth of the layer's median max) for gated / GELU / SiLU units.
- **Coverage K** of n-grams (``coverage_k``): sort the unit's per-n-gram firings c(g) in decreasing order; K is the
  smallest number of leading n-grams whose firings reach 95% of A = sum_g c(g) (integer arithmetic, no rounding).
  n = 1 uses capture's per-token counts (exact). n = 2, 3 use NGramCounts, whose A counts positions with at least
  n-1 predecessors in the window; if some of the unit's rows were dropped by truncation, each missing firing counts
  as its own n-gram, which makes K an upper bound of the true K (``ngram_k_exact`` False).
- **Token detector**: K1 <= 5; a token t is *covered* when firings(t) >= 95% of t's occurrences; the unit is a
  token detector when its covered tokens hold >= 95% of A. Its detected tokens are the covered ones (most firings
  first).
- **Trigram detector**: the same test on trigrams with K3 <= 50, where a trigram is covered when the unit fires on
  >= 95% of its occurrences (occurrences counted at the same positions, p >= 2; when occurrence counts were
  truncated, the occurrence slack is added to every count, so coverage is never overstated). A token detector is not
  also reported as a trigram detector: the trigram test is for units that a single token does not explain.
- **Suppression** (token detectors only): ``s = W_U w_out`` (raw unless ``through_ln``); the unit suppresses its
  triggers when the mean of s over its detected tokens is < 0; ``best_trigger_rank`` is the best rank of a detected
  token among the most suppressed tokens (1 = the most suppressed of the vocabulary).
- **Regularization units** (VISIT, Katz & Belinkov 2023): a unit is among the layer's top ``REGULARIZATION_TOP``
  (100) at a token when it fires and fewer than 100 units have a strictly larger activation (ties all in);
  ``top_share`` is the share of content tokens where it is, and the unit is a regularization unit when
  ``top_share`` > 0.85. Needs capture's ``top_units`` counts; None without them.
- **Positional**: I(act; pos) = h(F) - sum_p w_p h(f(p)) in nats (plug-in estimate), w_p the share of tokens at
  position p, f(p) the firing frequency at p, F = sum_p w_p f(p), h the binary entropy with 0 ln 0 = 0; equal to
  ``sklearn.metrics.mutual_info_score(pos, fires)``. Positional when I > 0.05.
- **Positional pattern** (``positional_pattern``): a position is *low* when f(p) <= 0.1, *high* when f(p) >= 0.9.
  Read the low/high positions in order, merge repeats, and count the switches: >= 3 switches (low-high-low-high or
  more) is *oscillatory*; both low and high with 1-2 switches is *both_extremes* (e.g. fires only before or after a
  position, or only inside one range); only low or only high positions is *one_extreme*; none is *other*. The first
  three are *strong* when every low position has f == 0 exactly and every high one f == 1 exactly, else *weak*.
  *other* is strong when the profile is smooth: the mean over inner positions of |f(p) - (f(p-1) + f(p+1)) / 2| is
  at most 5% of the profile's range (max f - min f), else weak.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from fractions import Fraction
from typing import Any, Literal

import torch

from autointerp.subject.capture import LayerCapture
from autointerp.subject.lens import promoted_suppressed, trigger_suppression, vocab_projection
from autointerp.subject.model import Subject
from autointerp.subject.ngrams import NGramCounts

COVER = Fraction(95, 100)  # share of firings to cover, and of a token's occurrences to count it as covered
MAX_TOKEN_K = 5
MAX_TRIGRAM_K = 50
POSITIONAL_MI = 0.05  # nats
NEAR = 0.1  # f(p) <= NEAR is "low" (reaches 0), f(p) >= 1 - NEAR is "high" (reaches 1)
OSCILLATION_SWITCHES = 3
SMOOTH = 0.05  # "other" is strong when its mean second difference is at most this share of its range
REGULARIZATION_TOP = 100  # VISIT: a unit among the layer's top 100 by activation ...
REGULARIZATION_SHARE = 0.85  # ... on more than 85% of tokens

PositionalKind = Literal["oscillatory", "both_extremes", "one_extreme", "other"]
Strength = Literal["strong", "weak"]


# -- dead units and firing rates ---------------------------------------------------------------------------------
def firing_rates(cap: LayerCapture) -> torch.Tensor:
    """[U] float64 share of content tokens on which each unit fires."""
    return cap.fire_count.double() / max(cap.n_tokens, 1)


def dead_units(cap: LayerCapture) -> torch.Tensor:
    """[U] bool: never fired on the ``cap.n_tokens`` content tokens processed."""
    return cap.fire_count == 0


# -- n-gram coverage and detectors -------------------------------------------------------------------------------
def coverage_k(counts: torch.Tensor, total: int, frac: Fraction = COVER) -> int:
    """Smallest number of n-grams, in decreasing count, whose counts reach ``frac`` of ``total``.

    ``total`` may exceed ``counts.sum()`` (rows lost to truncation): the missing firings count as singletons, which
    gives an upper bound of the true K. ``total == 0`` gives 0.
    """
    if total <= 0:
        return 0
    need = frac.numerator * total  # compare den * cumsum >= num * total: exact integers
    cum = torch.sort(counts.long(), descending=True).values.cumsum(0) * frac.denominator
    hit = (cum >= need).nonzero(as_tuple=True)[0]
    if len(hit):
        return int(hit[0]) + 1
    reached = int(cum[-1]) if len(cum) else 0
    return len(counts) + -(-(need - reached) // frac.denominator)


def coverage_k_units(unit: torch.Tensor, counts: torch.Tensor, totals: torch.Tensor,
                     frac: Fraction = COVER) -> torch.Tensor:
    """[U] ``coverage_k`` of every unit at once, from rows in any order: row i holds ``counts[i]`` firings of unit
    ``unit[i]`` (as ``NGramCounts.rows`` returns them) and unit u's total is ``totals[u]``; one sort in all."""
    U = len(totals)
    counts = counts.long()
    top = int(counts.max()) + 1 if len(counts) else 1
    rows = torch.sort(unit * top + (top - 1 - counts)).values  # by unit, then by count, largest first
    unit, c = rows // top, top - 1 - rows % top
    sizes = torch.bincount(unit, minlength=U)
    start = torch.cumsum(sizes, 0) - sizes  # each unit's first row
    cum = c.cumsum(0)
    before = torch.cat([torch.zeros(1, dtype=torch.int64), cum])[start]  # cumsum before each unit's rows
    need = frac.numerator * totals.long()  # compare den * cumsum >= num * total: exact integers
    hit = (cum - before[unit]) * frac.denominator >= need[unit]
    first = torch.full((U,), len(c), dtype=torch.int64)
    first.scatter_reduce_(0, unit[hit], torch.nonzero(hit, as_tuple=True)[0], reduce="amin")
    reached = torch.zeros(U, dtype=torch.int64).index_add_(0, unit, c)  # every stored firing of the unit
    missing = need - reached * frac.denominator  # not reached with the stored rows: singletons, as coverage_k
    k = torch.where(first < len(c), first - start + 1,
                    sizes + torch.div(missing + frac.denominator - 1, frac.denominator, rounding_mode="floor"))
    return torch.where(totals > 0, k, 0)


def covered(fires: torch.Tensor, occurrences: torch.Tensor, slack: int = 0, frac: Fraction = COVER) -> torch.Tensor:
    """[N] bool: the unit fires on at least ``frac`` of the (occurrences + slack) of each n-gram."""
    return fires.long() * frac.denominator >= (occurrences.long() + slack) * frac.numerator


def detected(keys: torch.Tensor, fires: torch.Tensor, occurrences: torch.Tensor, total: int, max_k: int,
             slack: int = 0, frac: Fraction = COVER) -> list[int] | None:
    """The detector test: K <= ``max_k`` and the covered n-grams hold >= ``frac`` of ``total`` firings.

    Returns the covered keys (most firings first) when the unit is a detector, else None.
    """
    if total <= 0 or coverage_k(fires, total, frac) > max_k:
        return None
    cov = covered(fires, occurrences, slack, frac)
    if int(fires[cov].sum()) * frac.denominator < frac.numerator * total:
        return None
    order = torch.sort(fires[cov], descending=True, stable=True).indices
    return keys[cov][order].tolist()


def _token_counts(cap: LayerCapture, unit: int) -> tuple[torch.Tensor, torch.Tensor]:
    col = cap.tok_fire.column(unit)
    return torch.tensor(list(col), dtype=torch.int64), torch.tensor(list(col.values()), dtype=torch.int64)


# -- positional units ----------------------------------------------------------------------------------------------
def _binary_entropy(q: torch.Tensor) -> torch.Tensor:
    return torch.special.entr(q) + torch.special.entr(1 - q)


def positional_mi(pos_fire: torch.Tensor, pos_count: torch.Tensor) -> torch.Tensor:
    """[U] I(act; pos) in nats from firings per position ``pos_fire`` [W, U] and tokens per position ``pos_count``
    [W] (see the module docstring)."""
    n = pos_count.double()
    w = n / n.sum()
    f = pos_fire.double() / n.clamp(min=1).unsqueeze(1)
    F = (w.unsqueeze(1) * f).sum(0)
    return (_binary_entropy(F) - (w.unsqueeze(1) * _binary_entropy(f)).sum(0)).clamp(min=0)


def positional_pattern(f: torch.Tensor) -> tuple[PositionalKind, Strength]:
    """Classify a firing-frequency profile f(p) [W] (rule in the module docstring)."""
    low, high = f <= NEAR, f >= 1 - NEAR
    levels = [bool(h) for lo, h in zip(low, high) if lo or h]  # True = high, in position order
    switches = sum(a != b for a, b in zip(levels, levels[1:]))
    if low.any() and high.any():
        kind: PositionalKind = "oscillatory" if switches >= OSCILLATION_SWITCHES else "both_extremes"
    elif low.any() or high.any():
        kind = "one_extreme"
    else:
        kind = "other"
    if kind != "other":
        exact = bool((f[low] == 0).all() and (f[high] == 1).all())
        return kind, "strong" if exact else "weak"
    span = float(f.max() - f.min())
    rough = float((f[1:-1] - (f[:-2] + f[2:]) / 2).abs().mean()) if len(f) > 2 else 0.0
    return kind, "strong" if rough <= SMOOTH * span else "weak"


# -- records -------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class UnitAnalysis:
    """What the analyses say about one unit. Token strings are decoded with the subject's tokenizer."""

    layer: int
    unit: int
    dead: bool  # never fired on the tokens processed
    firing_rate: float  # share of content tokens with activation > the unit's threshold (the firing rule's)
    token_detector: dict[str, Any] | None  # {"tokens": [str], "token_ids": [int]} or None
    trigram_detector: dict[str, Any] | None  # {"trigrams": [[str, str, str]], "trigram_ids": [[int, int, int]]}
    ngram_k: dict[int, int | None]  # {1: K1, 2: K2, 3: K3}; None where no n-gram counts were kept
    ngram_k_exact: bool  # False when truncation made K2/K3 upper bounds
    positional_mi: float  # I(act; pos), nats
    positional: bool  # positional_mi > 0.05
    positional_kind: PositionalKind | None  # pattern of f(p) for positional units
    positional_strength: Strength | None
    suppresses_triggers: bool | None  # token detectors only: mean of s over the detected tokens < 0
    best_trigger_rank: int | None  # token detectors only: best rank of a detected token (1 = most suppressed)
    promoted: tuple[str, ...]  # tokens with the highest s = W_U w_out, highest first
    suppressed: tuple[str, ...]  # tokens with the lowest s, lowest first
    top_share: float | None = None  # share of tokens where it fires among the layer's top 100 (None: not counted)
    regularization: bool | None = None  # top_share > 0.85 (VISIT's regularization units)
    threshold: float = 0.0  # the unit fires when its activation is above this (the firing rule's threshold)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["ngram_k"] = {str(n): k for n, k in self.ngram_k.items()}
        out["promoted"], out["suppressed"] = list(self.promoted), list(self.suppressed)
        return out


@dataclass(frozen=True)
class LayerSummary:
    """Per-layer counts over the units analysed."""

    layer: int
    n_units: int
    n_tokens: int  # content tokens processed (the paper used > 20M for dead units)
    n_dead: int
    pct_dead: float  # 100 * n_dead / n_units
    mean_firing_rate_live: float | None  # mean firing rate of the units that are not dead (None: all dead)
    n_token_detectors: int
    n_trigram_detectors: int
    n_positional: int
    positional_kinds: dict[str, int] = field(default_factory=dict)  # "oscillatory/strong" -> count
    n_detectors_suppressing: int = 0
    suppression_fraction: float | None = None  # n_detectors_suppressing / n_token_detectors (None: no detector)
    through_ln: bool = False  # whether s went through the final norm
    n_regularization: int | None = None  # regularization units (None: capture did not count top_units)
    firing_rule: str = ""  # the rule "fires" meant (autointerp.subject.firing), in one line

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def analyze_layer(subject: Subject, cap: LayerCapture, ngram_counts: NGramCounts | None,
                  through_ln: bool = False, top_tokens: int = 10) -> tuple[list[UnitAnalysis], LayerSummary]:
    """Every analysis of the module docstring for every unit of ``cap``'s layer."""
    rates, dead = firing_rates(cap), dead_units(cap)
    pos_count = torch.full((cap.pos_fire.shape[0],), cap.n_windows, dtype=torch.int64)
    mi = positional_mi(cap.pos_fire, pos_count)
    profile = cap.position_profile()
    up, down = promoted_suppressed(subject, cap.layer, top_tokens, through_ln)
    top_share = None if cap.top_hits is None else (cap.top_hits.double() / max(cap.n_tokens, 1)).tolist()
    ngram_ks: dict[int, list[int]] = {}  # K2, K3 of every unit, computed at once
    for n in (2, 3):
        if ngram_counts is not None and n in ngram_counts.n_values:
            unit, _, counts = ngram_counts.rows(n)
            ngram_ks[n] = coverage_k_units(unit, counts, ngram_counts.totals(n)).tolist()
    units = []
    for u in range(cap.n_units):
        tok_keys, tok_fires = _token_counts(cap, u)
        total = int(cap.fire_count[u])
        ks: dict[int, int | None] = {1: coverage_k(tok_fires, total)}
        exact = True
        tokens = detected(tok_keys, tok_fires, cap.tok_count[tok_keys], total, MAX_TOKEN_K)
        trigrams = None
        for n in (2, 3):
            if n not in ngram_ks:
                ks[n] = None
                continue
            ks[n] = ngram_ks[n][u]
            exact = exact and ngram_counts.exact(u, n)
            if n == 3 and tokens is None and ks[3] <= MAX_TRIGRAM_K:  # a larger K3 is no detector: skip the lookup
                keys, fires = ngram_counts.unit_counts(u, 3)
                trigrams = detected(keys, fires, ngram_counts.occurrences(keys, 3), ngram_counts.total(u, 3),
                                    MAX_TRIGRAM_K, ngram_counts.occurrence_slack(3))
        suppresses = rank = None
        if tokens is not None:
            suppresses, rank = trigger_suppression(vocab_projection(subject, cap.layer, [u], through_ln)[0], tokens)
        kind = strength = None
        if mi[u] > POSITIONAL_MI:
            kind, strength = positional_pattern(profile[:, u])
        units.append(UnitAnalysis(
            layer=cap.layer,
            unit=u,
            dead=bool(dead[u]),
            firing_rate=float(rates[u]),
            token_detector=None if tokens is None else {
                "tokens": [cap.decode(t) for t in tokens], "token_ids": tokens},
            trigram_detector=None if trigrams is None else {
                "trigrams": [[cap.decode(t) for t in ngram_counts.decode(g, 3)] for g in trigrams],
                "trigram_ids": [list(ngram_counts.decode(g, 3)) for g in trigrams]},
            ngram_k=ks,
            ngram_k_exact=exact,
            positional_mi=float(mi[u]),
            positional=kind is not None,
            positional_kind=kind,
            positional_strength=strength,
            suppresses_triggers=suppresses,
            best_trigger_rank=rank,
            promoted=tuple(cap.decode(t) for t in up[u].tolist()),
            suppressed=tuple(cap.decode(t) for t in down[u].tolist()),
            top_share=None if top_share is None else top_share[u],
            regularization=None if top_share is None else top_share[u] > REGULARIZATION_SHARE,
            threshold=float(cap.thresholds[u]),
        ))
    return units, summarize(cap, units, through_ln)


def summarize(cap: LayerCapture, units: list[UnitAnalysis], through_ln: bool = False) -> LayerSummary:
    """Per-layer counts of ``units`` (as returned by ``analyze_layer``)."""
    live = [u.firing_rate for u in units if not u.dead]
    detectors = [u for u in units if u.token_detector is not None]
    suppressing = sum(bool(u.suppresses_triggers) for u in detectors)
    kinds: dict[str, int] = {}
    for u in units:
        if u.positional:
            key = f"{u.positional_kind}/{u.positional_strength}"
            kinds[key] = kinds.get(key, 0) + 1
    n_dead = sum(u.dead for u in units)
    return LayerSummary(
        layer=cap.layer,
        n_units=len(units),
        n_tokens=cap.n_tokens,
        n_dead=n_dead,
        pct_dead=100.0 * n_dead / max(len(units), 1),
        mean_firing_rate_live=sum(live) / len(live) if live else None,
        n_token_detectors=len(detectors),
        n_trigram_detectors=sum(u.trigram_detector is not None for u in units),
        n_positional=sum(u.positional for u in units),
        positional_kinds=dict(sorted(kinds.items())),
        n_detectors_suppressing=suppressing,
        suppression_fraction=suppressing / len(detectors) if detectors else None,
        through_ln=through_ln,
        n_regularization=None if cap.top_hits is None else sum(bool(u.regularization) for u in units),
        firing_rule=cap.firing_rule,
    )
