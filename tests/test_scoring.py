"""Scoring is pure math: hand-computed cases, numpy agreement, undefined cases as None."""

from __future__ import annotations

import math

import numpy as np
import pytest

from autointerp.scoring import correlation_score, pooled_correlation, score_windows
from autointerp.subject.records import Window


def test_hand_computed():
    # x = [1, 2, 3], y = [1, 3, 2]: dx = [-1, 0, 1], dy = [-1, 1, 0] -> r = 1 / (sqrt(2) sqrt(2)) = 0.5
    assert correlation_score([1, 2, 3], [1, 3, 2]) == pytest.approx(0.5, abs=1e-15)
    assert correlation_score([0, 1], [5, 7]) == pytest.approx(1.0)
    assert correlation_score([0, 1], [7, 5]) == pytest.approx(-1.0)


def test_pooled_is_not_mean_of_per_window():
    true, pred = [[0, 1], [10, 11]], [[0, 1], [1, 0]]
    per_window = [correlation_score(t, p) for t, p in zip(true, pred)]
    assert per_window == [pytest.approx(1.0), pytest.approx(-1.0)]  # mean 0
    # pooled: x = [0, 1, 10, 11], y = [0, 1, 1, 0]: dx = [-5.5, -4.5, 4.5, 5.5], dy = [-.5, .5, .5, -.5] -> 0
    assert pooled_correlation(true, pred) == pytest.approx(0.0, abs=1e-15)
    true, pred = [[0, 1], [10, 11]], [[0, 1], [9, 10]]
    assert pooled_correlation(true, pred) == pytest.approx(np.corrcoef([0, 1, 10, 11], [0, 1, 9, 10])[0, 1])


@pytest.mark.parametrize("seed", range(20))
def test_agrees_with_numpy(seed):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 64, size=rng.integers(1, 12))
    true = [rng.normal(size=n) * rng.uniform(0.01, 100) for n in lengths]
    pred = [rng.uniform(0, 10, size=n) for n in lengths]
    if sum(lengths) < 2:
        return
    expected = np.corrcoef(np.concatenate(true), np.concatenate(pred))[0, 1]
    assert abs(pooled_correlation(true, pred) - expected) < 1e-12
    assert abs(correlation_score(np.concatenate(true), np.concatenate(pred)) - expected) < 1e-12


def test_undefined_is_none_not_nan():
    assert correlation_score([1, 1, 1], [0, 1, 2]) is None
    assert correlation_score([0, 1, 2], [3, 3, 3]) is None
    assert correlation_score([0.1] * 5, [0.1, 0.2, 0.3, 0.4, 0.5]) is None  # constant up to round-off
    assert correlation_score([1], [1]) is None
    assert pooled_correlation([], []) is None
    with pytest.raises(ValueError):
        correlation_score([1, 2], [1, 2, 3])


def _w(index, acts, source):
    return Window(index, tuple("t" * len(acts)), tuple(range(len(acts))), tuple(acts), source, index, "test")


def test_score_windows_reports_top_random_and_failures():
    windows = [_w(0, [0, 5, 10], "top"), _w(1, [0, 0, 1], "random"), _w(2, [3, 0, 0], "random")]
    preds = [[0, 4, 9], [0, 1, 0], None]
    r = score_windows(windows, preds)
    assert r.n_windows == 2 and r.n_failed == 1
    assert r.score == pytest.approx(np.corrcoef([0, 5, 10, 0, 0, 1], [0, 4, 9, 0, 1, 0])[0, 1])
    assert r.score_top == pytest.approx(np.corrcoef([0, 5, 10], [0, 4, 9])[0, 1])
    assert r.score_random == pytest.approx(-0.5)
    assert r.per_window[2] is None and r.undefined_reason is None
    r = score_windows(windows[:1], [[1, 1, 1]])
    assert r.score is None and r.undefined_reason == "simulated activations are constant"
    assert not any(isinstance(x, float) and math.isnan(x) for x in (r.score, r.score_top, r.score_random))
    r = score_windows(windows, [None, None, None])
    assert r.score is None and "all 3 windows failed" in r.undefined_reason
