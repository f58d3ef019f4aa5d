"""Which string tokens does a dense probe miss? The error analysis behind docs/findings.md's string ceiling.

    python benchmarks/string_probe_errors.py --layer 12 --tokens 20000                      # the bundled model
    python benchmarks/string_probe_errors.py --model /work/models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf \\
        --layer 10,20 --tokens 12000

Collects the residual stream exactly as ``autointerp probe --units resid`` does (same windows, context and split),
fits the dense probe (every dimension; StandardScaler + L2 logistic regression, C=1) and prints its test recall on
string tokens by kind (docstring, other triple-quoted, one-line; tokens that straddle a string's edge), the
false-positive rate on comment tokens, where the misses are, and what changes the F1: the decision threshold chosen
on train, the regularisation, the split (other seeds, by file), and leaving docstrings out. ``--model`` is anything
``autointerp --model`` takes (a ``.gguf`` file too).
"""

from __future__ import annotations

import argparse
import io
import tokenize

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import precision_recall_fscore_support
from sklearn.preprocessing import StandardScaler

from autointerp.corpus import open_corpus
from autointerp.subject.model import load_subject
from autointerp.subject.probing import (
    WINDOWS_PER_DOCUMENT,
    ProbeSettings,
    collect_layers,
    context_size,
    cut_windows,
    python_char_labels,
    split_by_window,
)
from autointerp.subject.units import RESIDUAL


def string_kinds(text: str) -> np.ndarray:
    """[len(text)] per character: 0 outside strings, 1 one-line literal, 2 triple-quoted literal."""
    kinds = np.zeros(len(text), dtype=np.int8)
    starts = np.concatenate([[0], np.cumsum([len(line) for line in io.StringIO(text).readlines()])])
    for t in tokenize.generate_tokens(io.StringIO(text).readline):
        if t.type == tokenize.STRING:
            body = t.string.lstrip("rRbBfFuU")
            kinds[starts[t.start[0] - 1] + t.start[1] : starts[t.end[0] - 1] + t.end[1]] = \
                2 if body[:3] in ('"""', "'''") else 1
    return kinds


def f1(y, pred) -> float:
    return float(precision_recall_fscore_support(y, pred, average="binary", zero_division=0)[2])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="bundled")
    ap.add_argument("--layer", default="12", help="comma-separated layers")
    ap.add_argument("--tokens", type=int, default=20000)
    ap.add_argument("--corpus", default="stdlib")
    args = ap.parse_args()
    subject = load_subject(args.model, device="cpu")
    layers = [int(v) for v in args.layer.split(",")]
    docs = []  # (text, labels of every concept, string kinds)
    for doc in open_corpus(args.corpus).documents():
        labels = python_char_labels(doc.text)
        if labels is not None:
            docs.append((doc.text, labels, string_kinds(doc.text)))
    pairs = [(t, labels["string"]) for t, labels, _ in docs]
    xs, y, group = collect_layers(subject, iter(pairs), layers, ProbeSettings(window=64, max_tokens=args.tokens),
                                  space=RESIDUAL)
    context = context_size(subject, 64)
    cat = {name: [] for name in ("docstring", "kind", "straddle", "comment")}
    doc_of = []  # per sampled token: its file
    offsets = {}
    for w in cut_windows(subject.tokenizer, iter(pairs), 64, args.tokens, WINDOWS_PER_DOCUMENT, context):
        text, labels, kinds = docs[w.doc]
        if w.doc not in offsets:
            enc = subject.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
            offsets[w.doc] = np.asarray(enc["offset_mapping"]).reshape(-1, 2)
        doc_of.extend([w.doc] * len(w.ids))
        for a, b in offsets[w.doc][w.start : w.start + len(w.ids)]:
            cat["docstring"].append(labels["docstring"][a:b].any())
            cat["kind"].append(kinds[a:b].max(initial=0))
            cat["straddle"].append(0 < labels["string"][a:b].mean() < 1 if b > a else False)
            cat["comment"].append(labels["comment"][a:b].any())
    cat = {k: np.asarray(v) for k, v in cat.items()}
    doc_of = np.asarray(doc_of)
    train = split_by_window(group)
    test = ~train
    print(f"{args.model}: {len(y):,} tokens ({test.sum():,} test), {y.mean():.1%} string, "
          f"{len(np.unique(group))} windows from {len(offsets)} documents, context up to {context} tokens")
    for layer in layers:
        X = StandardScaler().fit(xs[layer][train]).transform(xs[layer])
        clf = LogisticRegression(C=1.0, max_iter=2000).fit(X[train], y[train])
        p = clf.predict_proba(X)[:, 1]
        pred = p > 0.5
        print(f"layer {layer}: dense probe test F1 {f1(y[test], pred[test]):.3f} "
              f"(train {f1(y[train], pred[train]):.3f}, {clf.n_iter_[0]} lbfgs iterations)")
        parts = {"docstring": cat["docstring"], "other triple-quoted": (cat["kind"] == 2) & ~cat["docstring"],
                 "one-line literal": cat["kind"] == 1, "straddles the string's edge": cat["straddle"]}
        for name, m in parts.items():
            pos = test & y & m
            recall = f"{pred[pos].mean():.3f}" if pos.any() else "n/a"
            print(f"  recall, {name:28s} {recall} ({pos.sum():,} tokens)")
        neg = test & ~y
        print(f"  false-positive rate: comment tokens {pred[neg & cat['comment']].mean():.3f}, "
              f"other code {pred[neg & ~cat['comment']].mean():.3f}")
        fn = test & y & ~pred
        print(f"  misses in docstrings: {(fn & cat['docstring']).sum() / max(1, fn.sum()):.0%} of {fn.sum()}")
        ths = np.linspace(0.05, 0.95, 91)
        best = ths[int(np.argmax([f1(y[train], p[train] > t) for t in ths]))]
        print(f"  threshold {best:.2f} chosen on train: test F1 {f1(y[test], p[test] > best):.3f}")
        for C in (0.01, 0.1):
            c = LogisticRegression(C=C, max_iter=2000).fit(X[train], y[train])
            print(f"  C={C}: test F1 {f1(y[test], c.predict(X[test])):.3f} "
                  f"(train {f1(y[train], c.predict(X[train])):.3f})")
        seeds = []
        for seed in range(1, 6):
            tr = split_by_window(group, seed)
            sc = StandardScaler().fit(xs[layer][tr])
            c = LogisticRegression(C=1.0, max_iter=2000).fit(sc.transform(xs[layer][tr]), y[tr])
            seeds.append(f1(y[~tr], c.predict(sc.transform(xs[layer][~tr]))))
        print(f"  split seeds 1-5 instead of 0: test F1 {' '.join(f'{v:.3f}' for v in seeds)}")
        files = np.unique(doc_of)
        tr = np.isin(doc_of, np.random.default_rng(0).permutation(files)[: round(0.7 * len(files))])
        sc = StandardScaler().fit(xs[layer][tr])
        c = LogisticRegression(C=1.0, max_iter=2000).fit(sc.transform(xs[layer][tr]), y[tr])
        print("  split 70/30 by file instead of by window: test F1 "
              f"{f1(y[~tr], c.predict(sc.transform(xs[layer][~tr]))):.3f} "
              f"(train {f1(y[tr], c.predict(sc.transform(xs[layer][tr]))):.3f})")
        keep = ~cat["docstring"]
        c = LogisticRegression(C=1.0, max_iter=2000).fit(X[train & keep], y[train & keep])
        print("  docstring tokens left out of train and test: test F1 "
              f"{f1(y[test & keep], c.predict(X[test & keep])):.3f}")


if __name__ == "__main__":
    main()
