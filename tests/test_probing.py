"""Sparse probing: labels from Python's tokenizer, user span concepts, the split by window, and probes that must
find a planted unit (k = 1, F1 = 1) and a concept carried jointly by two units (k = 2)."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from autointerp.corpus import iter_token_windows, open_corpus
from autointerp.errors import UsageError
from autointerp.subject.model import load_subject
from autointerp.subject.probing import (
    MAX_CONTEXT,
    ProbeSettings,
    SpanConcept,
    context_size,
    default_ks,
    fit_probes,
    load_span_concept,
    probe_concept,
    python_char_labels,
    split_by_window,
    token_labels,
)

from planted import build_planted

pytestmark = pytest.mark.usefixtures("one_thread")

SOURCE = '''"""Module doc."""
import os  # note
def f(x=1.5):
    """Doc é."""
    if x:
        return f"a{x}b" + 'c'
'''


def marked(text, mask):
    return "".join(c if m else "_" for c, m in zip(text, mask))


def test_python_labels_by_character():
    labels = python_char_labels(SOURCE)
    assert marked(SOURCE, labels["comment"]).strip("_") == "# note"
    assert {w for w in marked(SOURCE, labels["keyword"]).split("_") if w} == {"import", "def", "if", "return"}
    assert {w for w in marked(SOURCE, labels["identifier"]).split("_") if w} == {"os", "f", "x"}
    assert {w for w in marked(SOURCE, labels["number"]).split("_") if w} == {"1.5"}
    assert {w for w in marked(SOURCE, labels["string"]).split("_") if w} == \
        {'"""Module doc."""', '"""Doc é."""', '"a{x}b"', "'c'"}  # a prefix (f, r, b) is not
    assert {w for w in marked(SOURCE, labels["docstring"]).split("_") if w} == {'"""Module doc."""', '"""Doc é."""'}
    assert {w for w in marked(SOURCE, labels["operator"]).split("_") if w} == {"(", "=", "):", ":", "+"}
    # only the body of `if x:` is two blocks deep
    assert marked(SOURCE, labels["indent_ge2"]).replace("_", "") == "returnf\"a{x}b\"+'c'"
    assert python_char_labels("def f(:\n") is None


def test_token_labels_by_overlap(tokenizer):
    text = "x = 'ab' + y"
    chars = np.zeros(len(text), dtype=bool)
    chars[4:8] = True  # 'ab'
    ids, labels = token_labels(tokenizer, text, chars)
    pieces = [tokenizer.decode([i]) for i in ids]
    assert "".join(pieces) == text
    assert "".join(p for p, m in zip(pieces, labels) if m).strip() == "'ab'"


TRICKY = '''def f(x):
    """Return x.

    >>> f(1)
    """
    s = "abc" + b"\\x00"
    t = f"{x}!"
    return s  # done
'''


def test_string_token_labels_on_a_tricky_snippet(tokenizer):
    """Token by token, with the bundled tokenizer: a docstring's whitespace and doctest are inside the string, a token
    that holds a quote is inside, and a prefix token before its quote (` b`, ` f`) is not: a causal model's state there
    has not seen the quote yet."""
    ids, labels = token_labels(tokenizer, TRICKY, python_char_labels(TRICKY)["string"])
    got = [(tokenizer.decode([i]), bool(m)) for i, m in zip(ids, labels)]
    assert "".join(t for t, _ in got) == TRICKY
    inside = [t for t, m in got if m]
    assert inside == [' """', 'Return', ' x', '.', '\n\n   ', ' >>>', ' f', '(', '1', ')', '\n   ', ' """',
                      ' "', 'abc', '"', '"\\', 'x', '00', '"', '"{', 'x', '}', '!', '"'], inside
    assert (' b', False) in got and (' f', False) in got and (' #', False) in got


def test_labels_are_not_shifted_by_form_feeds():
    """tokenize ends lines at "\\n" only; str.splitlines also splits at a form feed (common in old code), which once
    shifted every label after it."""
    for text in ('x = 1\n\x0c\ny = "s"  # c\n', 'x = 1  # a\x0cb\ny = "s"\ndef g():\n    "d\x0c"\n'):
        labels = python_char_labels(text)
        assert {w for w in marked(text, labels["string"]).split("_") if w} >= {'"s"'}
        assert marked(text, labels["string"]).count("s") == 1 and '"s"' in marked(text, labels["string"])
    text = 'x = 1  # a\x0cb\ny = "s"\ndef g():\n    "d\x0c"\n'
    labels = python_char_labels(text)
    assert marked(text, labels["comment"]).strip("_") == "# a\x0cb"
    assert marked(text, labels["docstring"]).strip("_") == '"d\x0c"'


def test_load_span_concept(tmp_path):
    path = tmp_path / "cats.jsonl"
    path.write_text(json.dumps({"text": "a cat sat", "spans": [[2, 5]]}) + "\n\n")
    concept = load_span_concept(path)
    assert concept == SpanConcept("cats", (("a cat sat", ((2, 5),)),))
    path.write_text(json.dumps({"text": "a cat", "spans": [[2, 9]]}) + "\n")
    with pytest.raises(UsageError, match="span"):
        load_span_concept(path)
    path.write_text('{"text": "a"}\n')
    with pytest.raises(UsageError, match="spans"):
        load_span_concept(path)


def test_split_is_by_window():
    group = np.repeat(np.arange(40), 7)
    train = split_by_window(group, seed=3)
    for w in range(40):
        assert len(set(train[group == w])) == 1
    assert train.sum() == 28 * 7


@pytest.mark.parametrize("method", ["mean_diff", "adaptive"])
def test_planted_token_unit_carries_its_token_concept(method, tokenizer, text_corpus):
    windows = list(iter_token_windows(open_corpus(str(text_corpus)), tokenizer, 16))
    frequent = tuple(t for t, _ in Counter(t for w in windows for t in w).most_common(3))
    subject, truth = build_planted(tokenizer, frequent, window=16)
    t0 = truth.token_detectors[2][0]
    docs = []
    for doc in open_corpus(str(text_corpus)).documents():
        enc = tokenizer(doc.text, add_special_tokens=False, return_offsets_mapping=True)
        spans = tuple(tuple(o) for i, o in zip(enc["input_ids"], enc["offset_mapping"]) if i == t0)
        docs.append((doc.text, spans))
    settings = ProbeSettings(ks=(1, 2, 4), method=method, max_tokens=6000, window=16, windows_per_document=None)
    res = probe_concept(subject, None, 0, SpanConcept("t0", tuple(docs)), settings)
    assert res.results[0].k == 1 and res.results[0].units == (2,)
    assert res.results[0].f1 == 1.0 and res.best.k == 1
    assert res.n_train + res.n_test == 6000 and 0 < res.positive_rate_test < 0.5


def test_default_ks_end_with_the_dense_probe():
    assert default_ks(256) == (1, 2, 4, 8, 16, 32, 64, 128, 256)
    assert default_ks(100) == (1, 2, 4, 8, 16, 32, 64, 100)
    assert default_ks(1) == (1,)
    X = np.random.default_rng(0).normal(size=(200, 6)).astype(np.float32)
    results, _ = fit_probes(X, X[:, 0] > 0, np.arange(200) // 10)
    assert [r.k for r in results] == [1, 2, 4, 6] and sorted(results[-1].units) == list(range(6))


def test_context_size_fits_the_model_positions(tiny_checkpoints):
    subject = load_subject(str(tiny_checkpoints["gpt2"]), device="cpu")
    room = subject.max_positions - 1 - 16  # BOS + context + a 16-token window
    assert context_size(subject, 16) == min(MAX_CONTEXT, room)
    assert context_size(subject, 16, 3) == 3 and context_size(subject, 16, 10**6) == room
    assert context_size(subject, subject.max_positions) == 0


@pytest.mark.parametrize("method", ["mean_diff", "adaptive"])
def test_concept_carried_by_two_units_needs_k_2(method):
    rng = np.random.default_rng(0)
    n, U = 4000, 20
    X = rng.normal(size=(n, U)).astype(np.float32)
    y = X[:, 4] + X[:, 9] > 1.0  # neither unit alone separates it
    group = np.arange(n) // 10
    results, facts = fit_probes(X, y, group, ks=(1, 2, 4, 8), method=method)
    by_k = {r.k: r for r in results}
    assert set(by_k[2].units) == {4, 9} and by_k[2].f1 > 0.95
    assert by_k[1].f1 < 0.85
    assert {u for u, _ in facts["ranking"][:2]} == {4, 9}


def test_builtin_concept_end_to_end_on_a_random_model(tiny_checkpoints, text_corpus):
    subject = load_subject(str(tiny_checkpoints["gpt2"]), device="cpu")
    res = probe_concept(subject, open_corpus(str(text_corpus)), 1, "string",
                        ProbeSettings(ks=(1, 4, 1000), max_tokens=3000, window=32))
    assert [r.k for r in res.results] == [1, 4, subject.n_units]
    assert all(0.0 <= r.f1 <= 1.0 and len(r.units) == r.k for r in res.results)
    assert res.n_train + res.n_test == 3 * 8 * 32 and res.concept == "string"  # 8 windows of each of 3 files
    with pytest.raises(UsageError, match="built in"):
        probe_concept(subject, open_corpus(str(text_corpus)), 1, "colour")


def test_probe_layers_reports_progress_and_matches_one_layer(tiny_checkpoints, text_corpus):
    from autointerp.subject.probing import probe_layers

    subject = load_subject(str(tiny_checkpoints["gpt2"]), device="cpu")
    events = []
    settings = ProbeSettings(ks=(1, 4), max_tokens=1500, window=32)
    both = probe_layers(subject, open_corpus(str(text_corpus)), [2, 0], "string", settings,
                        on_progress=lambda event, n: events.append((event, n)))
    assert [r.layer for r in both] == [0, 2]
    assert sum(n for e, n in events if e == "tokens") == both[0].n_train + both[0].n_test > 0
    assert [x for x in events if x[0] != "tokens"] == [("layers", 2), ("layer", 0), ("layer", 2)]
    alone = probe_concept(subject, open_corpus(str(text_corpus)), 2, "string", settings)
    assert alone == both[1]


def test_cut_windows_say_where_each_window_sits(tokenizer, text_corpus):
    from autointerp.subject.probing import cut_windows

    docs = [(d.text, np.zeros(len(d.text), dtype=bool)) for d in open_corpus(str(text_corpus)).documents()]
    windows = cut_windows(tokenizer, docs, 16, 100, 3, context=5)
    assert sum(len(w.ids) for w in windows) == 100 and [w.start for w in windows[:3]] == [0, 16, 32]
    for w in windows:
        ids = tokenizer(docs[w.doc][0], add_special_tokens=False)["input_ids"]
        assert w.ids == ids[w.start : w.start + len(w.ids)] and w.context == ids[max(0, w.start - 5) : w.start]


def test_windows_are_probed_after_their_context(tiny_checkpoints, text_corpus):
    """Each window is fed after the tokens before it in its document; only the window's tokens are samples, and
    their activations are those of one forward pass over [BOS] + context + window."""
    from autointerp.subject.hooks import batches, content, mlp_hooks, run_batch
    from autointerp.subject.probing import collect

    subject = load_subject(str(tiny_checkpoints["gpt2"]), device="cpu")
    text = next(open_corpus(str(text_corpus)).documents()).text
    labels = np.zeros(len(text), dtype=bool)
    ids = subject.tokenizer(text, add_special_tokens=False)["input_ids"][:48]
    X, _, group = collect(subject, [(text, labels)], 1,
                          ProbeSettings(window=16, max_tokens=48, windows_per_document=None, context=8))
    with mlp_hooks(subject, [1]) as store:
        for fed, inputs in batches(subject, [ids[8:32], ids[24:48]], 2):  # windows 2 and 3, 8 tokens of context each
            run_batch(subject, inputs)
            want = content(store[1], inputs, fed.shape[1]).numpy()[:, 8:]
    assert X.shape == (48, subject.n_units) and np.bincount(group).tolist() == [16, 16, 16]
    assert np.allclose(X[16:32], want[0], atol=1e-5) and np.allclose(X[32:48], want[1], atol=1e-5)
    X0, _, _ = collect(subject, [(text, labels)], 1,
                       ProbeSettings(window=16, max_tokens=48, windows_per_document=None, context=0))
    assert np.allclose(X0[:16], X[:16], atol=1e-5)  # the first window has nothing before it
    assert not np.allclose(X0[16:], X[16:], atol=1e-3)  # the others see more than their own tokens
