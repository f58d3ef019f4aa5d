"""The baseline explainer and simulator on units whose behaviour is known by construction."""

from __future__ import annotations

import asyncio
import random

import numpy as np

from autointerp.agent.baseline import BaselineExplainer
from autointerp.scoring.baseline import BaselineSimulator
from autointerp.scoring.score import score_windows
from autointerp.subject.records import (
    UnitId,
    UnitRecord,
    UnitStats,
    Window,
    deal_splits,
)

VOCAB = ["def", " self", ".", "(", ")", ":", " return", " x", "\n    ", " if", " for", " in", "import", " os"]


def planted_record(rule, unit=0, seed=0, n_top=30, n_rand=20, length=24) -> UnitRecord:
    """A unit whose activation on each token is rule(tokens, i); top windows are the highest-activating ones."""
    rng = random.Random(seed)
    pool = []
    for index in range(400):
        toks = [rng.choice(VOCAB) for _ in range(length)]
        pool.append((index, toks, [float(rule(toks, i)) for i in range(length)]))
    top = sorted(pool, key=lambda p: -max(p[2]))[:n_top]
    top_ids = {p[0] for p in top}
    rand = [p for p in rng.sample(pool, n_rand + n_top) if p[0] not in top_ids][:n_rand]
    tl, rl = deal_splits(len(top), len(rand))
    windows = [Window(i, tuple(t), tuple(range(len(t))), tuple(a), "top", r, s)
               for r, ((i, t, a), s) in enumerate(zip(top, tl))]
    windows += [Window(i, tuple(t), tuple(range(len(t))), tuple(a), "random", r, s)
                for r, ((i, t, a), s) in enumerate(zip(rand, rl))]
    acts = np.array([a for _, _, a in pool])
    stats = UnitStats(acts.size, int((acts > 0).sum()), 0.0, float(acts.mean()), float(acts.std()),
                      float(acts.max()), float(acts.min()))
    return UnitRecord(UnitId(0, unit), tuple(windows), stats)


def explain(rec):
    return asyncio.run(BaselineExplainer().explain(rec.for_explainer())).text


def score_of(text, rec):
    sim = asyncio.run(BaselineSimulator().simulate(text, [list(w.tokens) for w in rec.split("test")]))
    return score_windows(rec.split("test"), sim.predictions).score


def test_token_detector_is_named_and_scores_far_above_a_wrong_explanation():
    rec = planted_record(lambda t, i: 3.0 if t[i] == " self" else 0.0)
    text = explain(rec)
    assert text.startswith('Fires on the token " self"'), text
    right = score_of(text, rec)
    assert right > 0.95
    wrong = score_of('Fires on the token "import".', rec)
    assert wrong is None or wrong < 0.2


def test_context_and_position_are_described():
    after = planted_record(lambda t, i: 2.0 if i > 0 and t[i - 1] == "def" and t[i] == "(" else 0.0)
    assert 'mostly after "def"' in explain(after)
    positional = planted_record(lambda t, i: 2.0 + 0.5 * i if i < 3 else 0.0)
    text = explain(positional)
    assert text == "Fires at positions 0-2 of the window, whatever the token.", text
    assert score_of(text, positional) > 0.5


def test_dead_unit_says_so():
    rec = planted_record(lambda t, i: 0.0)
    assert explain(rec).startswith("Never fires")


def test_shuffled_explanations_score_near_zero():
    tokens = [" self", ".", "(", " return", "import", ":", " x", " os"]
    recs = [planted_record(lambda t, i, tok=tok: 2.0 if t[i] == tok else 0.0, unit=u, seed=u)
            for u, tok in enumerate(tokens)]
    texts = [explain(r) for r in recs]
    matched = [score_of(t, r) for t, r in zip(texts, recs)]
    shuffled = [score_of(texts[(k + 3) % len(recs)], r) for k, r in enumerate(recs)]
    assert min(matched) > 0.9
    assert np.mean([s if s is not None else 0.0 for s in shuffled]) < 0.1
