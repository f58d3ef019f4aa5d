"""Detection and fuzzing (docs/methods.md §2b): the range sample of capture, the examples drawn from it, the two
judges, the metrics, and the planted detectors judged right and wrong."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random
import re
import shutil
from collections import Counter

import numpy as np
import pytest
import torch

from autointerp.corpus import iter_token_windows, open_corpus, stdlib_root
from autointerp.llm import LLMClient, ModelProfile
from autointerp.scoring.classify import (
    ClassificationScorer,
    DetectionScorer,
    Example,
    FuzzingScorer,
    draw_examples,
    fires,
    roc_auc,
)
from autointerp.scoring.judges import LLMJudge, QuotedJudge, parse_answers, quoted_tokens
from autointerp.subject.capture import CaptureConfig, capture_windows
from autointerp.subject.range_windows import N_BINS, RangeReservoir
from autointerp.testing.server import FakeOpenAIServer, Reply

from planted import build_planted

WINDOW = 16
pytestmark = pytest.mark.usefixtures("one_thread")


# -- the range sample ------------------------------------------------------------------------------------------------

def _stream(n_windows=240, units=4, seed=0):
    """Unit u fires (max 1 + index / 100 at position 0) on the windows whose index is a multiple of u + 1."""
    acts = torch.zeros(n_windows, 3, units)
    for u in range(units):
        idx = torch.arange(0, n_windows, u + 1)
        acts[idx, 0, u] = 1 + idx.float() / 100
    return acts, torch.arange(n_windows * 3).view(n_windows, 3) % 50


def _fill(res, acts, ids, batch=7):
    for first in range(0, len(acts), batch):
        res.update(acts[first : first + batch], ids[first : first + batch], first, torch.zeros(acts.shape[2]))


def test_range_sample_keeps_only_firing_windows_and_all_of_them_when_few():
    acts, ids = _stream()
    res = RangeReservoir(4, size=20, window=3, seed=1)
    _fill(res, acts, ids)
    for u in range(4):
        entries = res.entries(u)
        kept = [index for index, *_ in entries]
        assert len(kept) == len(set(kept)) == 20 and all(index % (u + 1) == 0 for index in kept)
        for index, _, _, window_ids, window_acts in entries:  # the stored window is the window offered
            assert torch.equal(window_acts, acts[index, :, u]) and torch.equal(window_ids, ids[index].int())
        assert [b for _, b, *_ in entries] == [r * N_BINS // 20 for r in range(20)]
        assert Counter(split for _, _, split, *_ in entries) == {"valid": 10, "test": 10}
    few = RangeReservoir(4, size=100, window=3)
    _fill(few, acts, ids)
    assert sorted(i for i, *_ in few.entries(3)) == list(range(0, 240, 4))  # 60 firing windows < 100: all kept


def test_range_sample_is_uniform_over_the_firing_windows():
    """Every firing window is kept with probability size / n (Algorithm R), whatever its place in the stream."""
    acts, ids = _stream(n_windows=200, units=1)
    hits = np.zeros(200)
    for seed in range(300):
        res = RangeReservoir(1, size=20, window=3, seed=seed)
        _fill(res, acts, ids, batch=9)
        hits[[i for i, *_ in res.entries(0)]] += 1
    assert hits.sum() == 300 * 20
    quarters = hits.reshape(4, 50).sum(1) / (300 * 20)  # each quarter of the stream holds a quarter of the kept
    assert np.allclose(quarters, 0.25, atol=0.03), quarters


def test_silent_sample_keeps_only_windows_where_the_unit_does_not_fire():
    acts, ids = _stream()
    res = RangeReservoir(4, size=20, window=3, seed=1, silent=True)
    _fill(res, acts, ids)
    for u in range(1, 4):  # unit 0 fires on every window: nothing to keep
        entries = res.entries(u)
        assert len(entries) == 20 and all(index % (u + 1) != 0 for index, *_ in entries)
        assert all(b is None and float(a.max()) <= 0 for _, b, _, _, a in entries)
    assert res.entries(0) == []


def test_range_sample_memory_is_flat_in_the_tokens():
    res = RangeReservoir(8, size=20, window=3)
    before = res.nbytes
    acts, ids = _stream(n_windows=1000, units=8)
    _fill(res, acts, ids)
    assert res.nbytes == before


# -- the planted model -----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def planted_caps(tokenizer, tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpus")
    for name in ("textwrap.py", "shlex.py", "fnmatch.py"):
        shutil.copy(stdlib_root() / name, folder / name)
    windows = list(iter_token_windows(open_corpus(str(folder)), tokenizer, WINDOW))
    # detectors on the three most frequent words whose text is in a window exactly when the token is: what a judge
    # that reads text (the test server's) can tell, unlike ":" inside "):" or " self" beside "self"
    per_window = Counter(t for w in windows for t in set(w))
    texts = [tokenizer.decode(w) for w in windows]

    def readable(t):
        word = tokenizer.decode([t]).strip()
        pattern = re.compile(rf"(?<![A-Za-z0-9]){re.escape(word)}(?![A-Za-z0-9])")
        return word.isalpha() and all(bool(pattern.search(x)) == (t in w) for x, w in zip(texts, windows))

    words = [t for t, _ in per_window.most_common(400) if readable(t)][:3]
    subject, truth = build_planted(tokenizer, tuple(words), window=WINDOW)
    # 4 random windows only: the non-activating examples come from the silent sample
    cfg = CaptureConfig(layers=[0], window=WINDOW, top_k=6, n_random=4, batch_size=16, range_windows=20)
    return subject, truth, capture_windows(subject, windows, cfg)[0], windows


POSITIONAL = 5  # fires at content positions 0..3 of every window: its range sample is full


def test_range_windows_are_held_out_binned_and_never_repeat_a_window(planted_caps):
    subject, truth, cap, windows = planted_caps
    for unit in (*truth.token_detectors, POSITIONAL):
        rec = cap.unit_record(unit)  # UnitRecord asserts that no window is in two splits
        assert rec.range_windows and {w.split for w in rec.range_windows} == {"valid", "test"}
        assert not rec.for_explainer().range_windows and not rec.for_explainer().held_out("test")
        binned = [w for w in rec.windows + rec.range_windows if w.bin is not None]
        n = len(cap.range_sample.entries(unit))
        fired = len(windows) if unit == POSITIONAL else sum(any(t in w for t in truth.token_detectors[unit])
                                                            for w in windows)
        assert n == min(20, fired)
        assert sorted(w.bin for w in binned) == [r * N_BINS // n for r in range(n)]  # none lost to a duplicate
        assert all(max(w.activations) > rec.stats.threshold for w in binned)
        others = {w.index for w in rec.windows}
        assert not others & {w.index for w in rec.range_windows}
        quiet = rec.split("valid", "silent") + rec.split("test", "silent")
        assert len(quiet) == sum(1 for index, *_ in cap.silent_sample.entries(unit) if index not in others)
        assert all(max(w.activations) <= rec.stats.threshold and w.bin is None for w in quiet)
    assert len(cap.range_sample.entries(POSITIONAL)) == 20 and not cap.silent_sample.entries(POSITIONAL)


def test_examples_come_from_every_bin_and_silent_ones_never_fire(planted_caps):
    subject, truth, cap, windows = planted_caps
    for split in ("valid", "test"):  # the positional unit: one window per decile in each split
        examples, counts = draw_examples(cap.unit_record(POSITIONAL), split, "detection", 10, random.Random(0))
        assert sorted(e.bin for e in examples) == list(range(N_BINS)) and counts["non_activating_available"] == 0
    for unit in truth.token_detectors:
        rec = cap.unit_record(unit)
        for split in ("valid", "test"):
            examples, counts = draw_examples(rec, split, "detection", 10, random.Random(0))
            windows = {w.index: w for w in rec.held_out(split)}
            active = [e for e in examples if e.label == 1]
            assert {e.bin for e in active} == {w.bin for w in windows.values() if w.bin is not None}
            assert counts["bins"] == len({e.bin for e in active})
            silent = [e for e in examples if e.label == 0]
            assert counts["non_activating"] == len(silent) == 10 and {e.source for e in silent} <= {"silent", "random"}
            assert all(not fires(windows[e.index], rec.stats.threshold) for e in silent)
            assert all(max(windows[e.index].activations) <= rec.stats.threshold for e in silent)
            fuzz, _ = draw_examples(rec, split, "fuzzing", 10, random.Random(0))
            for e in fuzz:
                firing = set(fires(windows[e.index], rec.stats.threshold))
                assert set(e.marked) <= firing if e.label else not set(e.marked) & firing


def _judgements(rec, text, judge):
    scorers = [DetectionScorer(judge), FuzzingScorer(judge)]
    return [asyncio.run(s.judge(rec, text, "test")) for s in scorers]


@pytest.mark.parametrize("llm", [False, True])
def test_planted_detectors_right_explanation_scores_high_wrong_one_low(planted_caps, llm):
    subject, truth, cap, windows = planted_caps
    with FakeOpenAIServer(latency_s=0.0) as srv:
        async def run(rec, text):
            profile = ModelProfile(model="m", base_url=srv.base_url)
            async with LLMClient(profile, "judge") as client:
                judge = LLMJudge(client, profile, examples_per_request=6)
                return [await s.judge(rec, text, "test") for s in (DetectionScorer(judge), FuzzingScorer(judge))]

        for unit, other in ((2, 3), (3, 2)):
            rec = cap.unit_record(unit)
            right = f"Fires on the token {json.dumps(subject.tokenizer.decode([truth.token_detectors[unit][0]]))}."
            wrong = f"Fires on the token {json.dumps(subject.tokenizer.decode([truth.token_detectors[other][0]]))}."
            for text, good in ((right, True), (wrong, False)):
                results = asyncio.run(run(rec, text)) if llm else _judgements(rec, text, QuotedJudge())
                for j in results:
                    assert j.failure is None and j.n_failed == 0 and j.n_judged == len(j.examples) >= 10
                    assert (j.value >= 0.95) if good else (j.value <= 0.6), (unit, j.scorer, text, j.value)
                    assert (j.auroc is not None) == llm
    assert (len(srv.requests) >= 2 * 2 * 2 * 3) == llm  # units x texts x scorers x (at least 3 batches of 6)


def test_empty_explanation_is_at_chance_under_the_quoted_judge(planted_caps):
    subject, truth, cap, windows = planted_caps
    for j in _judgements(cap.unit_record(2), "", QuotedJudge()):
        assert j.value == 0.5


# -- the judges and metrics ------------------------------------------------------------------------------------------

def test_quoted_tokens_and_leading_space_normalisation():
    quoted = quoted_tokens('Fires on the tokens " class", "\\n" and \u201cdef\u201d; it\'s not "".')
    assert quoted == {"class", "\n", "def"}
    judge = QuotedJudge()
    ex = Example(0, "range", 3, 1, ("x", " class", "\n"), marked=(1,))
    assert judge.decide("detection", 'the token "class"', ex) == 1
    assert judge.decide("detection", 'the token "classes"', ex) == 0
    assert judge.decide("fuzzing", 'the token " class"', ex) == 1
    assert judge.decide("fuzzing", 'the token "x"', ex) == 0


def test_auroc_equals_scikit_learn():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    for _ in range(50):
        n = int(rng.integers(2, 40))
        labels = [int(v) for v in rng.integers(0, 2, n)]
        if len(set(labels)) < 2:
            continue
        scores = [float(v) for v in rng.choice([0.1, 0.5, 0.9, *rng.random(3)], n)]  # with ties
        assert roc_auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert roc_auc([1, 1], [0.3, 0.4]) is None


@pytest.mark.parametrize("reply", ["[1, 0]", "[1, 0, 1, 0]", "yes, no, yes", "[1, 2, 0]", "[true, false, true]",
                                   "Sure: [1, 0, 1]", '{"answers": [1, 0, 1]}', "[1.0, 0, 1]"])
def test_a_reply_of_the_wrong_length_or_form_is_an_error_never_a_guess(reply):
    assert isinstance(parse_answers(reply, 3), str)
    with FakeOpenAIServer(lambda request: Reply(text=reply), latency_s=0.0) as srv:
        profile = ModelProfile(model="m", base_url=srv.base_url, supports_logprobs=False)

        async def run():
            async with LLMClient(profile, "judge", backoff_base_s=0.001) as client:
                judge = LLMJudge(client, profile, examples_per_request=3)
                examples = [Example(i, "range", 0, i % 2, ("a", "b")) for i in range(6)]
                return await judge.answer("detection", 'the token "a"', examples)

        answers, details = asyncio.run(run())
    assert all(a is None and p is None and err for a, p, err in answers)
    assert details["unparsed_replies"] == 2 and details["requests"] == 2


def test_a_judge_that_answers_nothing_fails_the_judgement(planted_caps):
    subject, truth, cap, windows = planted_caps
    with FakeOpenAIServer(lambda request: Reply(text="no idea"), latency_s=0.0) as srv:
        profile = ModelProfile(model="m", base_url=srv.base_url)

        async def run():
            async with LLMClient(profile, "judge", backoff_base_s=0.001) as client:
                return await DetectionScorer(LLMJudge(client, profile)).judge(cap.unit_record(2), "x", "test")

        j = asyncio.run(run())
    assert j.value is None and j.failure.startswith("scoring failed") and j.n_failed == len(j.examples) > 0


def test_parsed_answers_and_their_probabilities():
    assert parse_answers(" [1, 0, 1]\n", 3) == [1, 0, 1]


def test_a_dead_unit_is_undefined_not_failed(planted_caps):
    subject, truth, cap, windows = planted_caps
    dead = next(iter(truth.dead))
    j = asyncio.run(ClassificationScorer("detection", QuotedJudge()).judge(cap.unit_record(dead), '"x"', "test"))
    assert j.value is None and j.failure is None
    assert j.undefined_reason == "no activating test example was judged (no test window where it fires was sampled)"


def test_a_unit_that_fires_everywhere_has_no_detection_and_says_why(planted_caps):
    """With every held-out window firing there is no silent example: detection is undefined, the reason says so,
    and fuzzing (which needs no silent window) is still judged."""
    subject, truth, cap, windows = planted_caps
    record = cap.unit_record(2)
    everywhere = dataclasses.replace(record, stats=dataclasses.replace(record.stats, threshold=-1e9))
    det = asyncio.run(DetectionScorer(QuotedJudge()).judge(everywhere, '"x"', "test"))
    assert det.value is None and det.failure is None and det.counts["non_activating_available"] == 0
    assert det.undefined_reason == ("no non-activating test example was judged (it stays silent in no window held "
                                    "out for test)")


class _FailsOnSilent(QuotedJudge):
    """The quoted-token judge, except that it fails on every non-activating example."""

    async def answer(self, task, explanation, examples):
        return [(1, None, None) if ex.label else (None, None, "unparsed reply") for ex in examples], {}


def test_a_class_the_judge_failed_on_throughout_is_undefined_with_that_reason(planted_caps):
    subject, truth, cap, windows = planted_caps
    j = asyncio.run(DetectionScorer(_FailsOnSilent()).judge(cap.unit_record(2), '"x"', "test"))
    silent = sum(ex.label == 0 for ex in j.examples)
    assert j.value is None and j.failure is None and silent > 0 and j.n_failed == silent
    assert j.undefined_reason == f"no non-activating test example was judged (the judge failed on all {silent})"


def test_scorers_from_a_config():
    from autointerp.config import Config
    from autointerp.errors import UsageError
    from autointerp.pipeline.components import make_classifiers
    from autointerp.pipeline.components import LLMContext

    cfg = Config(judge_examples=4, seed=3)
    detection, fuzzing = make_classifiers(cfg, LLMContext(cfg))
    assert (detection.name, fuzzing.name, detection.uses_llm) == ("detection", "fuzzing", False)
    assert detection.config() == {"scorer": "detection", "judge": {"judge": "quoted"}, "n_per_class": 4, "seed": 3}
    with FakeOpenAIServer(latency_s=0.0) as srv:
        cfg = Config(judge="local", judge_batch=5, models={"local": ModelProfile(model="m", base_url=srv.base_url)})
        (scorer,) = make_classifiers(cfg, LLMContext(cfg), ["fuzzing"])
        assert scorer.uses_llm and scorer.config()["judge"]["examples_per_request"] == 5
    with pytest.raises(UsageError, match="unknown judge"):
        make_classifiers(Config(judge="nobody"), LLMContext(Config()))


def test_the_range_sample_changes_no_top_or_random_window(planted_caps):
    """Simulation scores, the stored windows and the explainer's examples are those of a capture without it."""
    from dataclasses import replace

    subject, truth, cap, windows = planted_caps
    plain = capture_windows(subject, windows, replace(cap.config, range_windows=0, silent_windows=0))[0]
    for unit in range(cap.n_units):
        with_range, without = cap.unit_record(unit), plain.unit_record(unit)
        assert [(w.index, w.split, w.source, w.activations) for w in with_range.windows] == [
            (w.index, w.split, w.source, w.activations) for w in without.windows]
        assert not without.range_windows and all(w.bin is None for w in without.windows)


def test_classify_prompts_match_golden():
    """The detection and fuzzing prompts are pinned to tests/golden/classify_prompt.txt (rewrite it with
    UPDATE_GOLDEN=1 after a deliberate prompt change, and review the diff)."""
    import os
    from pathlib import Path

    import jinja2

    from autointerp.prompts.render import render
    from autointerp.scoring.judges import classify_messages

    golden = Path(__file__).parent / "golden" / "classify_prompt.txt"
    examples = [Example(3, "range", 0, 1, ("def", " f", "(\n")), Example(9, "random", None, 0, (" x", "\t", "C:\\"))]
    marked = [Example(3, "range", 0, 1, ("def", " f", "(\n"), marked=(0,)),
              Example(3, "range", 0, 0, ("def", " f", "(\n"), marked=(1,))]
    text = "".join(f"=== {m['role']} ===\n{m['content']}"
                   for task, shown in (("detection", examples), ("fuzzing", marked))
                   for m in classify_messages(task, 'fires on the token "def"', shown))
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(text, encoding="utf-8")
    assert text == golden.read_text(encoding="utf-8")
    with pytest.raises(jinja2.UndefinedError):
        render("classify_user.j2", task="detection", explanation="x")


def test_the_judges_grammar_is_sent_only_when_the_profile_asks(planted_caps):
    """``judge_grammar``: each request carries the GBNF of a list of exactly as many 0s and 1s as it has examples."""
    from autointerp.scoring.grammar import answers_grammar

    _, _, cap, _ = planted_caps
    rec = cap.unit_record(2)
    with FakeOpenAIServer(latency_s=0.0) as srv:
        async def run(grammar: bool):
            profile = ModelProfile(model="m", base_url=srv.base_url, judge_grammar=grammar)
            async with LLMClient(profile, "judge") as client:
                return await DetectionScorer(LLMJudge(client, profile, examples_per_request=6)).judge(
                    rec, 'Fires on the token " context".', "test")

        plain = asyncio.run(run(False))
        n_plain = len(srv.requests)
        held = asyncio.run(run(True))
    assert plain.n_failed == held.n_failed == 0 and plain.value == held.value
    assert not any("grammar" in r for r in srv.requests[:n_plain])
    sizes = [min(6, len(held.examples) - i) for i in range(0, len(held.examples), 6)]
    assert sorted(r["grammar"] for r in srv.requests[n_plain:]) == sorted(answers_grammar(n) for n in sizes)
    assert answers_grammar(3) == 'root ::= "[" a ", " a ", " a "]"\na ::= [01]\n'
    assert parse_answers("[1, 0, 1]", 3) == [1, 0, 1]  # what the grammar lets through parses
