"""What the report shows beside each stored score: its confidence and its negative control, recomputed from the
stored true activations and simulations of the scored windows.

    >>> check = score_checks(true_windows, predicted_windows, seed=0)
    >>> check.score, check.ci_low, check.ci_high, check.control, check.control_high

- **Confidence.** A 95% percentile bootstrap of the pooled Pearson r over windows: the scored windows are resampled
  with replacement (``RESAMPLES`` times, seeded) and r is pooled over each resample's tokens. Windows, not tokens,
  are the unit of resampling, because tokens of one window are not independent.
- **Negative control.** The same pooled r with the simulation of each window paired with the true activations of
  another window (``PERMUTATIONS`` random derangements, seeded): what a simulation that ignores the window's text
  would score, given the same distributions of predicted and true values. ``control`` is the mean over
  permutations and ``control_high`` their 95th percentile; a score at or under it is no better than chance.
  Windows of unequal length cannot be re-paired token by token: the control is then None, with the reason.

Windows whose simulation failed (no predictions) are left out of both, as the score leaves them out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

RESAMPLES = 1000
PERMUTATIONS = 200


@dataclass(frozen=True)
class ScoreCheck:
    n_windows: int
    score: float | None  # pooled r over the windows with a simulation (None: undefined)
    ci_low: float | None  # 95% bootstrap interval of ``score`` over windows
    ci_high: float | None
    control: float | None  # mean pooled r with simulations paired with other windows
    control_high: float | None  # 95th percentile of that
    reason: str | None = None  # why an interval or the control is missing


def _pearson(n, st, sp, stt, spp, stp) -> np.ndarray:
    """Pearson r from sums (arrays of equal shape); NaN where a side is constant."""
    cov = n * stp - st * sp
    var = (n * stt - st * st) * (n * spp - sp * sp)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = cov / np.sqrt(var)
    return np.where(var > 1e-12 * np.maximum(n * n, 1), r, np.nan)


def _derangements(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    """[k, n] random permutations of range(n) with no fixed point (rejection sampling: about 1 in e is one)."""
    found = np.zeros((0, n), dtype=np.int64)
    while len(found) < k:
        perms = np.argsort(rng.random((4 * k, n)), axis=1)
        found = np.concatenate([found, perms[~np.any(perms == np.arange(n), axis=1)]])
    return found[:k]


def score_checks(true_windows: Sequence[Sequence[float]], pred_windows: Sequence[Sequence[float] | None],
                 seed: int = 0) -> ScoreCheck:
    pairs = [(list(t), list(p)) for t, p in zip(true_windows, pred_windows) if p is not None and len(p) == len(t)]
    n = len(pairs)
    if n < 2:
        return ScoreCheck(n, None, None, None, None, None, "fewer than 2 simulated windows")
    lengths = np.array([len(t) for t, _ in pairs], float)
    true = [np.asarray(t, float) for t, _ in pairs]
    pred = [np.asarray(p, float) for _, p in pairs]
    # per-window sums: a pooled r over any multiset of windows is a function of their totals
    sums = np.array([[t.sum(), p.sum(), (t * t).sum(), (p * p).sum(), (t * p).sum()] for t, p in zip(true, pred)])
    total = sums.sum(axis=0)
    score = float(_pearson(lengths.sum(), *total))
    score = None if np.isnan(score) else score
    rng = np.random.default_rng(seed)
    weights = rng.multinomial(n, np.full(n, 1 / n), size=RESAMPLES)  # [B, n]: how often each window is drawn
    boot = _pearson(weights @ lengths, *(weights @ sums).T)
    boot = boot[~np.isnan(boot)]
    ci = (float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))) if len(boot) >= RESAMPLES // 2 else (
        None, None)
    reason = None if ci[0] is not None else "too few resamples with a defined r"
    if len(set(lengths.tolist())) != 1:
        return ScoreCheck(n, score, *ci, None, None, "windows of unequal length: no control")
    cross = np.stack(true) @ np.stack(pred).T  # [j, i]: truth of window j against the simulation of window i
    perms = _derangements(rng, n, PERMUTATIONS)
    ctrl = _pearson(lengths.sum(), total[0], total[1], total[2], total[3], cross[perms, np.arange(n)].sum(axis=1))
    ctrl = ctrl[~np.isnan(ctrl)]
    if len(ctrl) == 0:
        return ScoreCheck(n, score, *ci, None, None, "the control is undefined (constant activations)")
    return ScoreCheck(n, score, *ci, float(ctrl.mean()), float(np.percentile(ctrl, 95)), reason)
