"""Planted units (docs/methods.md §8): the real capture on a hand-built model, then every analysis must recover the
truth with precision and recall 1; a random-init model must show no dead units and no token detectors."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from dataclasses import replace

import pytest
import torch

from autointerp.corpus import iter_token_windows, open_corpus, stdlib_root
from autointerp.subject.analyses import analyze_layer
from autointerp.subject.capture import CaptureConfig, capture_windows
from autointerp.subject.hooks import mlp_hooks, run_batch
from autointerp.subject.lens import regularization_units
from autointerp.subject.model import load_subject

from planted import build_planted, capture_with_ngrams

WINDOW = 16
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory):
    """The same three stdlib modules as conftest's text_corpus, once for the module."""
    folder = tmp_path_factory.mktemp("corpus")
    for name in ("textwrap.py", "shlex.py", "fnmatch.py"):
        shutil.copy(stdlib_root() / name, folder / name)
    return folder


@pytest.fixture(scope="module")
def windows(tokenizer, corpus_dir):
    return list(iter_token_windows(open_corpus(str(corpus_dir)), tokenizer, WINDOW))


@pytest.fixture(scope="module")
def planted(tokenizer, windows):
    frequent = [t for t, _ in Counter(t for w in windows for t in w).most_common(3)]
    return build_planted(tokenizer, tuple(frequent), window=WINDOW)


@pytest.fixture(scope="module")
def planted_cap(planted, corpus_dir):
    return capture_with_ngrams(planted[0], corpus_dir, WINDOW)


def test_planted_units_behave_as_designed(planted, windows):
    subject, truth = planted
    ids = torch.tensor(windows[:64])
    with mlp_hooks(subject, [0]) as store:
        run_batch(subject, torch.cat([torch.full((len(ids), 1), 2), ids], 1))
    fires = store[0].reshape(len(ids), WINDOW + 1, -1)[:, 1:] > 0
    pos = torch.arange(WINDOW).expand_as(ids)
    for u in truth.dead:
        assert not fires[..., u].any()
    for u, toks in truth.token_detectors.items():
        assert torch.equal(fires[..., u], torch.isin(ids, torch.tensor(toks)))
    for u in (5, 6, 7, 8):
        assert torch.equal(fires[..., u], torch.isin(pos, torch.tensor(sorted(truth.positional[u]))))
    for u in truth.dense:
        assert fires[..., u].all()


def test_analyses_recover_the_planted_truth(planted, planted_cap):
    subject, truth = planted
    cap = planted_cap
    units, summary = analyze_layer(subject, cap, cap.ngrams)
    assert cap.n_windows > 200  # enough windows for plug-in MI and coverage to be reliable
    # unit 11's off-range firing (tokens on one side of a random direction) must be neither ~0 nor ~1
    off = cap.pos_fire[4:, 11].double() / cap.n_windows
    assert ((off > 0.1) & (off < 0.9)).all()

    assert {u.unit for u in units if u.dead} == truth.dead
    assert {u.unit: tuple(u.token_detector["token_ids"]) for u in units if u.token_detector} == {
        u: tuple(sorted(t, key=lambda tok: -int(cap.tok_count[tok]))) for u, t in truth.token_detectors.items()}
    assert {u.unit for u in units if u.suppresses_triggers} == truth.suppressing
    assert all(units[u].best_trigger_rank == 1 for u in truth.suppressing)
    assert units[3].suppresses_triggers is False and units[3].best_trigger_rank == subject.model.config.vocab_size
    assert {u.unit for u in units if u.positional} == set(truth.positional)
    assert {u.unit: f"{u.positional_kind}/{u.positional_strength}" for u in units if u.positional} == \
        truth.positional_kinds
    assert not any(u.trigram_detector for u in units)
    for u in truth.token_detectors:
        assert units[u].ngram_k[1] == len(truth.token_detectors[u]) and units[u].ngram_k_exact
    assert units[9].firing_rate == 1.0 and units[9].ngram_k[1] > 5
    record = json.loads(json.dumps(units[4].to_json()))
    assert sorted(record["token_detector"]["token_ids"]) == sorted(truth.token_detectors[4])
    assert record["ngram_k"]["1"] == 2 and record["suppresses_triggers"] is True
    assert json.loads(json.dumps(summary.to_json()))["n_token_detectors"] == 3

    assert summary.n_dead == 2 and summary.pct_dead == pytest.approx(100 * 2 / 12)
    assert summary.n_token_detectors == 3 and summary.n_detectors_suppressing == 2
    assert summary.suppression_fraction == pytest.approx(2 / 3)
    assert summary.n_positional == 5 and summary.n_tokens == cap.n_tokens
    live = [u.firing_rate for u in units if not u.dead]
    assert summary.mean_firing_rate_live == pytest.approx(sum(live) / len(live))
    # through the final LayerNorm (weight 1, bias 0) the planted w_out keep their direction
    ln_units, ln_summary = analyze_layer(subject, cap, cap.ngrams, through_ln=True)
    assert {u.unit for u in ln_units if u.suppresses_triggers} == truth.suppressing and ln_summary.through_ln
    assert units[2].suppressed[0] == subject.tokenizer.decode([truth.token_detectors[2][0]])
    assert units[3].promoted[0] == subject.tokenizer.decode([truth.token_detectors[3][0]])


def test_regularization_units_find_the_dense_unit(planted, windows):
    subject, truth = planted
    assert set(regularization_units(subject, windows[:100], 0, top=2)) == truth.dense


def test_random_init_model_has_no_dead_units_and_no_token_detectors(tiny_checkpoints, corpus_dir):
    subject = load_subject(str(tiny_checkpoints["opt"]), device="cpu")
    cap = capture_with_ngrams(subject, corpus_dir, WINDOW, max_windows=300)
    units, summary = analyze_layer(subject, cap, cap.ngrams)
    assert summary.n_dead == 0 and summary.n_token_detectors == 0 and summary.n_trigram_detectors == 0
    assert summary.suppression_fraction is None and 0.2 < summary.mean_firing_rate_live < 0.8


def test_correct_explanation_of_a_planted_detector_scores_far_above_a_wrong_one(planted, planted_cap):
    import asyncio

    from autointerp.agent.baseline import BaselineExplainer
    from autointerp.scoring.baseline import BaselineSimulator
    from autointerp.scoring.score import score_windows

    subject, truth = planted
    cap = planted_cap

    def score(text, rec):
        test = rec.split("test")
        sim = asyncio.run(BaselineSimulator().simulate(text, [list(w.tokens) for w in test]))
        return score_windows(test, sim.predictions).score

    for unit, other in ((2, 3), (3, 2)):
        rec = cap.unit_record(unit)
        right = asyncio.run(BaselineExplainer().explain(rec.for_explainer())).text
        token = subject.tokenizer.decode([truth.token_detectors[unit][0]])
        wrong = subject.tokenizer.decode([truth.token_detectors[other][0]])
        assert score(right, rec) > 0.95 and token in right
        assert (score(f"Fires on the token {json.dumps(wrong)}.", rec) or 0.0) < 0.2


def test_capture_counts_regularization_units_like_the_lens(planted, windows):
    """The one-pass count (CaptureConfig.top_units, used by analyze) equals lens.regularization_units."""
    subject, truth = planted
    cfg = CaptureConfig(layers=[0], window=WINDOW, top_k=3, n_random=2, batch_size=16, top_units=2)
    cap = capture_windows(subject, windows[:100], cfg)[0]
    shares = regularization_units(subject, windows[:100], 0, top=2, min_fraction=-1.0)
    assert cap.top_hits.double().div(cap.n_tokens).tolist() == pytest.approx([shares[u] for u in range(cap.n_units)])
    units, summary = analyze_layer(subject, cap, None)
    assert {u.unit for u in units if u.regularization} == truth.dense and summary.n_regularization == len(truth.dense)
    plain = capture_windows(subject, windows[:10], replace(cfg, top_units=None))[0]
    assert plain.top_hits is None and analyze_layer(subject, plain, None)[1].n_regularization is None


def test_a_planted_detectors_true_explanation_scores_far_above_its_shuffled_control(planted, planted_cap):
    """Controls (scoring/controls.py) under the same simulator: each detector's own explanation against another
    unit's (the seeded derangement the pipeline uses) and the empty one."""
    import asyncio

    from autointerp.agent.baseline import BaselineExplainer
    from autointerp.scoring.baseline import BaselineSimulator
    from autointerp.pipeline.components import make_scoring
    from autointerp.pipeline.stages import Stages
    from autointerp.scoring.controls import EMPTY, control_texts, shuffled_name, shuffled_partners

    subject, truth = planted
    cap = planted_cap
    live = [u for u in range(cap.n_units) if u not in truth.dead]
    records = {u: cap.unit_record(u) for u in live}
    texts = {u: asyncio.run(BaselineExplainer().explain(records[u].for_explainer())).text for u in live}
    partners = shuffled_partners(live, seed=0)
    assert all(partners[u] != u for u in live) and sorted(partners.values()) == sorted(live)
    stages = Stages(BaselineExplainer(), make_scoring(None, BaselineSimulator()))
    true_scores, shuffled_scores, clean = [], [], 0
    for unit in truth.token_detectors:
        true_score = asyncio.run(stages.scoring.simulation.judge(records[unit], texts[unit])).value
        controls = asyncio.run(stages.controls(records[unit], control_texts(texts, partners, unit,
                                                                            explainer="baseline")))
        by_name = {c.explanation.explainer: c for c in controls}
        shuffled = by_name[shuffled_name("baseline")]
        assert shuffled.role == "control" and shuffled.explanation.text == texts[partners[unit]]
        empty = by_name[EMPTY]
        assert empty.explanation.text == "" and empty.test.score is None and empty.test.undefined_reason
        assert true_score > 0.95
        floor = shuffled.test.score if shuffled.test.score is not None else 0.0
        true_scores.append(true_score)
        shuffled_scores.append(floor)
        # another unit's explanation may name this detector's trigger (units 10 and 11 fire on frequent tokens
        # too): then the control is partly right by design; otherwise it must sit at the floor
        triggers = [json.dumps(subject.tokenizer.decode([t])) for t in truth.token_detectors[unit]]
        if not any(t in texts[partners[unit]] for t in triggers):
            clean += 1
            assert floor < 0.2 and true_score - floor > 0.8, (unit, texts[partners[unit]], floor)
    assert clean >= 2  # the seeded pairing leaves at least two detectors with an unrelated explanation
    assert sum(true_scores) / 3 - sum(shuffled_scores) / 3 > 0.5


def test_compact_and_full_simulation_replies_give_equal_scores_on_the_planted_units(planted, planted_cap):
    """docs/methods.md §2c: the compact reply (one character per token) against the full one (every token copied with
    its number), on the same explanations and test windows, through the real client and the test server: the per-window
    expected values, and so the scores, are equal; and the compact reply costs a fraction of the output tokens."""
    import asyncio

    from autointerp.agent.baseline import BaselineExplainer
    from autointerp.llm import LLMClient, ModelProfile
    from autointerp.scoring.llm_simulator import LLMSimulator
    from autointerp.scoring.score import score_windows
    from autointerp.testing.server import FakeOpenAIServer

    subject, truth = planted
    cap = planted_cap
    live = [u for u in range(cap.n_units) if u not in truth.dead]
    records = {u: cap.unit_record(u) for u in live}
    texts = {u: asyncio.run(BaselineExplainer().explain(records[u].for_explainer())).text for u in live}
    cases = [(u, texts[u]) for u in live] + [(u, texts[live[(i + 1) % len(live)]]) for i, u in enumerate(live)]

    async def simulate_all(profile, fmt):
        async with LLMClient(profile, "local", backoff_base_s=0.001) as client:
            simulator = LLMSimulator(client, profile, windows_per_request=4, fmt=fmt)
            return [await simulator.simulate(text, [list(w.tokens) for w in records[u].split("test")])
                    for u, text in cases]

    with FakeOpenAIServer() as srv:
        profile = ModelProfile(model="m", base_url=srv.base_url)
        full, compact = (asyncio.run(simulate_all(profile, fmt)) for fmt in ("full", "compact"))
    scores = {"full": [], "compact": []}
    for (unit, _), f, c in zip(cases, full, compact):
        assert f.errors == c.errors == [None] * len(f.errors)
        for fw, cw in zip(f.predictions, c.predictions):
            assert cw == pytest.approx(fw, abs=1e-12)
        test = records[unit].split("test")
        scores["full"].append(score_windows(test, f.predictions).score)
        scores["compact"].append(score_windows(test, c.predictions).score)
    assert scores["compact"] == pytest.approx(scores["full"], abs=1e-12)
    assert all(scores["full"][i] > 0.95 for i, (u, _) in enumerate(cases[: len(live)]) if u in truth.token_detectors)
    out = {fmt: sum(r.details["tokens_out"] for r in runs) for fmt, runs in (("full", full), ("compact", compact))}
    assert out["compact"] < out["full"] / 3
