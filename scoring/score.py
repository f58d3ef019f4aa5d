"""Scoring is pure math: Pearson correlation between true and simulated activations (docs/methods.md §2).

    >>> correlation_score([0, 1, 2, 3], [0, 2, 4, 7])
    0.9897...
    >>> pooled_correlation([[0, 1], [2, 3]], [[0, 2], [4, 7]])   # pooled over all tokens, not a mean per window
    0.9897...
    >>> correlation_score([1, 1, 1], [0, 1, 2]) is None            # undefined when one side is constant
    True

The explanation score is the correlation pooled over every token of every scored window (top and random together);
top-only and random-only pooled correlations and per-window correlations are reported beside it. Undefined values
are ``None`` with a reason, never NaN.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from autointerp.subject.records import Window


def _pearson(x: np.ndarray, y: np.ndarray) -> tuple[float | None, str | None]:
    if x.shape != y.shape:
        raise ValueError(f"true and predicted activations differ in length: {x.shape[0]} vs {y.shape[0]}")
    if x.size < 2:
        return None, "fewer than two tokens"
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        return None, "non-finite values"
    dx, dy = x - x.mean(), y - y.mean()
    sxx, syy = float(dx @ dx), float(dy @ dy)
    # "constant" relative to the values' scale, so float round-off on a constant series is not a correlation
    if sxx <= 1e-24 * max(1.0, float(x @ x)):
        return None, "true activations are constant"
    if syy <= 1e-24 * max(1.0, float(y @ y)):
        return None, "simulated activations are constant"
    r = float(dx @ dy) / math.sqrt(sxx * syy)
    return max(-1.0, min(1.0, r)), None


def correlation_score(true: Sequence[float], pred: Sequence[float]) -> float | None:
    """Pearson correlation of two flat sequences; None when undefined (a side is constant, or < 2 values)."""
    return _pearson(np.asarray(true, dtype=np.float64), np.asarray(pred, dtype=np.float64))[0]


def pooled_correlation(true_windows: Sequence[Sequence[float]], pred_windows: Sequence[Sequence[float]]) -> float | None:
    """Pearson correlation over the concatenation of all windows' tokens; None when undefined."""
    if len(true_windows) != len(pred_windows):
        raise ValueError(f"{len(true_windows)} true windows but {len(pred_windows)} predicted")
    if not true_windows:
        return None
    return correlation_score(np.concatenate([np.asarray(w, float) for w in true_windows]),
                             np.concatenate([np.asarray(w, float) for w in pred_windows]))


@dataclass(frozen=True)
class ScoreResult:
    """Scores of one explanation on one split's windows."""

    score: float | None  # pooled Pearson over top and random windows: THE explanation score
    score_top: float | None  # pooled over the top windows only
    score_random: float | None  # pooled over the random windows only
    per_window: tuple[float | None, ...]  # per scored window, in the order given
    undefined_reason: str | None  # why ``score`` is None
    n_windows: int  # windows scored (those with a prediction)
    n_failed: int  # windows whose simulation failed and were left out


def score_windows(windows: Sequence[Window], predictions: Sequence[Sequence[float] | None]) -> ScoreResult:
    """Score predictions against the windows' true activations. Windows with no prediction are left out."""
    if len(windows) != len(predictions):
        raise ValueError(f"{len(windows)} windows but {len(predictions)} predictions")
    pairs = [(w, p) for w, p in zip(windows, predictions) if p is not None]
    n_failed = len(windows) - len(pairs)

    def pooled(subset) -> tuple[float | None, str | None]:
        if not subset:
            return None, "no simulated windows"
        return _pearson(np.concatenate([np.asarray(w.activations, float) for w, _ in subset]),
                        np.concatenate([np.asarray(p, float) for _, p in subset]))

    score, reason = pooled(pairs)
    if score is None and n_failed and not pairs:
        reason = f"all {n_failed} windows failed to simulate"
    return ScoreResult(
        score=score,
        score_top=pooled([(w, p) for w, p in pairs if w.source == "top"])[0],
        score_random=pooled([(w, p) for w, p in pairs if w.source == "random"])[0],
        per_window=tuple(correlation_score(w.activations, p) if p is not None else None
                         for w, p in zip(windows, predictions)),
        undefined_reason=reason,
        n_windows=len(pairs),
        n_failed=n_failed,
    )
