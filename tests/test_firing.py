"""The firing rule on a planted gated (SiLU) model whose truth is known: under max_fraction the analyses find its
dead units and token detectors with precision and recall 1; under "> 0" they do not. The most negative windows are
kept."""

from __future__ import annotations

import shutil
from collections import Counter

import pytest
import torch
from planted import build_planted_gated

from autointerp.corpus import iter_token_windows, open_corpus, stdlib_root
from autointerp.subject.analyses import analyze_layer
from autointerp.subject.capture import CaptureConfig, capture_windows
from autointerp.subject.firing import max_fraction_thresholds, resolve_rule

WINDOW = 16


@pytest.fixture(scope="module")
def windows(tokenizer, tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpus")
    for name in ("textwrap.py", "shlex.py", "fnmatch.py"):
        shutil.copy(stdlib_root() / name, folder / name)
    return list(iter_token_windows(open_corpus(str(folder)), tokenizer, WINDOW))


@pytest.fixture(scope="module")
def planted(tokenizer, windows):
    frequent = [t for t, _ in Counter(t for w in windows for t in w).most_common(3)]
    return build_planted_gated(tokenizer, tuple(frequent))


def analyses(planted, windows, firing):
    subject, _ = planted
    cfg = CaptureConfig(layers=[0], window=WINDOW, top_k=3, n_random=2, batch_size=16, ngrams=True, firing=firing)
    cap = capture_windows(subject, windows, cfg)[0]
    units, summary = analyze_layer(subject, cap, cap.ngrams)
    return cap, units, summary


def test_rules_resolve_by_nonlinearity():
    assert resolve_rule("auto", "relu") == "fixed"
    assert {resolve_rule("auto", a) for a in ("silu", "gelu_pytorch_tanh", "gelu_new", "linear")} == {"max_fraction"}
    assert resolve_rule("fixed", "silu") == "fixed"
    with pytest.raises(ValueError):
        resolve_rule("sometimes", "relu")


def test_thresholds_are_half_the_max_floored_at_a_tenth_of_the_median_max():
    t = max_fraction_thresholds(torch.tensor([-1.0, 0.001, 4.0, 10.0, 30.0]))
    assert t.tolist() == pytest.approx([0.4, 0.4, 2.0, 5.0, 15.0])  # median of max(m, 0) is 4


@pytest.mark.usefixtures("one_thread")
def test_max_fraction_recovers_the_planted_gated_units(planted, windows):
    subject, truth = planted
    cap, units, summary = analyses(planted, windows, "auto")
    assert cap.rule == "max_fraction" and summary.firing_rule.startswith("max_fraction")
    assert {u.unit for u in units if u.dead} == truth.dead_under_rule
    found = {u.unit: tuple(u.token_detector["token_ids"]) for u in units if u.token_detector}
    assert found == truth.token_detectors
    assert {u.unit for u in units if u.firing_rate == 1.0} == truth.dense
    assert summary.n_positional == 0  # nothing positional reaches this MLP
    for unit, token in truth.negative_on.items():  # the most negative windows are kept, each holding the token
        bottom = cap.bottom_windows(unit)
        assert len(bottom) == 10 and bottom[0]["min"] < -20
        for w in bottom:
            ids = cap.top_ids[0, 0].new_tensor(windows[w["index"]])
            lowest = min(range(WINDOW), key=lambda p: w["activations"][p])
            assert int(ids[lowest]) == token


@pytest.mark.usefixtures("one_thread")
def test_greater_than_zero_says_nothing_true_about_gated_units(planted, windows):
    subject, truth = planted
    cap, units, summary = analyses(planted, windows, "fixed")
    by = {u.unit: u for u in units}
    assert {u.unit for u in units if u.dead} == truth.dead_under_zero  # the silent unit 1 looks alive
    assert 0.3 < by[1].firing_rate < 0.7 and 0.3 < by[6].firing_rate < 0.7
    assert by[3].firing_rate == 1.0 and by[3].token_detector is None  # its positive background hides the detector
    assert cap.bottom_k == 0
