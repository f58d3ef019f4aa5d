from __future__ import annotations

import pytest

from autointerp.subject.records import (
    UnitId,
    UnitRecord,
    UnitStats,
    Window,
    deal_splits,
)

STATS = UnitStats(n_tokens=10, fire_count=3, threshold=0.0, mean=0.1, std=0.2, max=1.0, min=0.0)


def test_round_robin_deal():
    top, rand = deal_splits(7, 5)
    assert top == ["train", "valid", "test", "train", "valid", "test", "train"]
    assert rand == ["valid", "test", "valid", "test", "valid"]


def _w(index, split, source="top"):
    return Window(index, ("a",), (1,), (0.5,), source, 0, split)


def test_overlapping_splits_are_refused():
    UnitRecord(UnitId(0, 1), (_w(1, "train"), _w(2, "valid"), _w(3, "test", "random")), STATS)
    with pytest.raises(AssertionError, match="both"):
        UnitRecord(UnitId(0, 1), (_w(1, "train"), _w(1, "test", "random")), STATS)
    with pytest.raises(AssertionError, match="never shown"):
        UnitRecord(UnitId(0, 1), (_w(1, "train", "random"),), STATS)


def test_explainer_view_holds_only_train():
    rec = UnitRecord(UnitId(0, 1), (_w(1, "train"), _w(2, "valid"), _w(3, "test")), STATS)
    assert [w.index for w in rec.for_explainer().windows] == [1]
    assert rec.for_explainer().stats == rec.stats
    assert str(UnitId(13, 42)) == "13/42" and str(UnitId(3, 5, "pca")) == "pca@3/5"


def test_validation_view_keeps_half_top_half_random_valid_windows():
    """Top windows by rank, random ones in reservoir order; one kind fills in where the other runs short; train and
    test untouched; 0 or more than there are: all."""
    def w(index, split, source, rank):
        return Window(index, ("a",), (1,), (0.5,), source, rank, split)

    windows = ([w(i, "valid", "top", 10 - i) for i in range(6)] + [w(10 + i, "valid", "random", i) for i in range(6)]
               + [w(20, "train", "top", 0), w(21, "test", "random", 0)])
    rec = UnitRecord(UnitId(0, 1), tuple(windows), STATS)
    four = rec.for_validation(4)
    assert [x.index for x in four.split("valid", "top")] == [4, 5]  # the two best ranked (5 and 6)
    assert [x.index for x in four.split("valid", "random")] == [10, 11]
    assert four.split("train") == rec.split("train") and four.split("test") == rec.split("test")
    few_random = UnitRecord(UnitId(0, 1), tuple(windows[:6] + windows[6:7]), STATS)
    assert len(few_random.for_validation(4).split("valid", "top")) == 3  # one random window: three top ones
    assert rec.for_validation(0) is rec and rec.for_validation(12) is rec
