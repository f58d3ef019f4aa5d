"""The subject-backed agent tools: what they return, and that nothing from valid/test leaks through them."""

from __future__ import annotations

import pytest

from autointerp.agent.tools import UnitTools
from autointerp.corpus import open_corpus
from autointerp.subject.capture import CaptureConfig, capture
from autointerp.subject.model import load_subject
from autointerp.subject.unit_tools import ExplorationPool, SubjectUnitTools


@pytest.fixture
def setup(tiny_checkpoints, text_corpus):
    subject = load_subject(str(tiny_checkpoints["opt"]), device="cpu")
    corpus = open_corpus(str(text_corpus))
    cap = capture(subject, corpus, CaptureConfig(layers=[1], window=16, top_k=9, n_random=6))[1]
    pool = ExplorationPool(subject, corpus, layer=1, window=16, seed=0, size=64)
    return subject, cap, pool


def test_tools_return_train_windows_stats_and_text_activations(setup):
    subject, cap, pool = setup
    record = cap.unit_record(3)
    tools = SubjectUnitTools(subject, cap, record, pool)
    assert isinstance(tools, UnitTools)
    assert [w.index for w in tools.train_windows(0, 10)] == [w.index for w in record.split("train")]
    assert tools.train_windows(100, 5) == []
    stats = tools.statistics()
    assert stats["firing_rate"] == pytest.approx(record.stats.firing_rate, abs=1e-6)
    assert len(stats["position_firing_rate"]) == 16
    # run_text agrees with the activations the capture saw, on windows whose text re-tokenizes the same way
    compared = 0
    for top in record.split("train"):
        ran = tools.run_text("".join(top.tokens))
        if [t for t, _ in ran] == list(top.tokens):
            assert [a for _, a in ran] == pytest.approx(list(top.activations), abs=1e-3)
            compared += 1
    assert compared >= 1
    assert tools.run_text("") == []


def test_quantile_windows_are_in_band_and_never_valid_or_test(setup):
    subject, cap, pool = setup
    for unit in range(6):
        record = cap.unit_record(unit)
        tools = SubjectUnitTools(subject, cap, record, pool)
        held_out = {w.token_ids for w in record.windows if w.split != "train"}
        lo, hi = cap.quantile_values(unit, (0.0, 1.0))
        for w in tools.quantile_windows(0.0, 1.0, n=50):
            assert w.token_ids not in held_out
            assert lo - 1e-6 <= w.max_activation <= hi + 1e-6
        # the pool holds windows that ARE held-out ones for this unit? they must be filtered out
        pool_ids, _ = pool.load()
        planted = SubjectUnitTools(subject, cap, record, pool)
        planted._held_out = {tuple(int(t) for t in pool_ids[0])}
        assert all(w.token_ids != tuple(int(t) for t in pool_ids[0]) for w in planted.quantile_windows(0, 1, n=64))
