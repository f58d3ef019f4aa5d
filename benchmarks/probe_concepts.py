"""Where does a model carry its code concepts, and how far can k-sparse probes get? (Gurnee et al. 2023;
docs/methods.md §6.)

    python benchmarks/probe_concepts.py                                  # comment and string, the bundled model
    python benchmarks/probe_concepts.py --concepts comment,string,keyword --model PATH --out runs/probes

For each concept, with the real commands (everything lands in ``OUT/probes.db``):
1. ``autointerp probe --layer all``: the best F1 of every layer's MLP neurons, and ``--units resid``: of its
   residual stream read out whole (the dense ceiling for any units of that layer);
2. at the layer whose residual stream carries the concept best, an SAE fitted there (``autointerp sae train``) and
   probed (``--units sae:DIR``): F1 for every k, so the sparse and dense ends can be compared.
For ``string`` it then measures what limits it (library calls, same tokens as the probe): the share of string tokens
whose literal opened further back than the text a probe feeds before them, and the dense residual probe's recall on
tokens whose opening quote is in view and on those where it is not.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from commands import autointerp


def probe(concept: str, layer: str, common: list[str], *extra: str) -> list[dict]:
    out = autointerp("probe", "--layer", layer, "--concept", concept, *common, *extra, "--format", "json")
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def best(result: dict) -> tuple[float, int]:
    top = max(result["results"], key=lambda r: (r["f1"], -r["k"]))
    return top["f1"], top["k"]


def string_limits(model: str, layer: int, tokens: int, corpus: str) -> None:
    """How much of the string concept is out of the probe's view, and how the dense residual probe does on each
    part: recall where the opening quote is within the fed text, and where it is not."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from autointerp.corpus import open_corpus
    from autointerp.subject.model import load_subject
    from autointerp.subject.probing import (
        WINDOWS_PER_DOCUMENT,
        ProbeSettings,
        collect,
        context_size,
        cut_windows,
        labelled_documents,
        split_by_window,
        token_labels,
    )
    from autointerp.subject.units import RESIDUAL

    subject = load_subject(model, device="cpu")
    window, context = 64, context_size(subject, 64)
    docs = list(labelled_documents(open_corpus(corpus), "string"))
    X, y, group = collect(subject, iter(docs), layer, ProbeSettings(window=window, max_tokens=tokens), space=RESIDUAL)
    opened: dict[int, np.ndarray] = {}  # per document: the index of the first token of the run holding each token
    in_view = []  # per sampled token, in collect's order: is its literal's first token within the fed text?
    for w in cut_windows(subject.tokenizer, iter(docs), window, tokens, WINDOWS_PER_DOCUMENT, context):
        if w.doc not in opened:
            _, labels = token_labels(subject.tokenizer, *docs[w.doc])
            run = np.arange(len(labels))
            for i in range(1, len(labels)):
                run[i] = run[i - 1] if labels[i] and labels[i - 1] else i
            opened[w.doc] = run
        in_view.extend(opened[w.doc][w.start : w.start + len(w.ids)] >= w.start - len(w.context))
    in_view = np.asarray(in_view)
    train = split_by_window(group)
    scaler = StandardScaler().fit(X[train])
    pred = LogisticRegression(max_iter=2000).fit(scaler.transform(X[train]), y[train]).predict(scaler.transform(X))
    test = ~train
    print(f"string, layer {layer}, {len(y):,} tokens, each window after up to {context} tokens of context:")
    print(f"  string tokens whose literal opened before the fed text: {100 * (~in_view[y]).mean():.1f}%")
    for name, part in (("in view", in_view), ("out of view", ~in_view)):
        mask = test & y & part
        recall = f"{pred[mask].mean():.3f}" if mask.any() else "n/a"
        print(f"  dense residual probe, recall on test string tokens with the opening quote {name}: "
              f"{recall} ({mask.sum():,} tokens)")
    print(f"  false-positive rate on test tokens outside strings: {pred[test & ~y].mean():.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--concepts", default="comment,string")
    ap.add_argument("--model", default="bundled")
    ap.add_argument("--corpus", default="stdlib")
    ap.add_argument("--tokens", type=int, default=100_000, help="labelled tokens per probe")
    ap.add_argument("--out", default="runs/probe-concepts")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    common = ["--model", args.model, "--corpus", args.corpus, "--tokens", str(args.tokens), "--db",
              str(out / "probes.db")]
    t0 = time.time()
    for concept in args.concepts.split(","):
        neurons = probe(concept, "all", common)
        resid = probe(concept, "all", common, "--units", "resid")
        print(f"{concept}: best test F1 of each layer (k at the best)")
        print(f"  {'layer':>5}  {'neurons':>13}  {'residual':>13}")
        for a, b in zip(neurons, resid):
            (fa, ka), (fb, kb) = best(a), best(b)
            print(f"  {a['layer']:>5}  {fa:.3f} (k={ka:<3})  {fb:.3f} (k={kb:<3})")
        layer = max(resid, key=lambda r: best(r)[0])["layer"]
        sae = out / f"sae-l{layer}"
        if not (sae / "cfg.json").exists():
            autointerp("sae", "train", "--layer", str(layer), "--out", str(sae), "--model", args.model, "--db",
                       str(out / "probes.db"))
        (res,) = probe(concept, str(layer), common, "--units", f"sae:{sae}")
        print(f"  SAE features at layer {layer} ({res['kind']}; autointerp sae train --layer {layer}):")
        print("   " + "  ".join(f"k={r['k']}: {r['f1']:.3f}" for r in res["results"]))
        if concept == "string":
            string_limits(args.model, layer, args.tokens, args.corpus)
    print(f"done in {time.time() - t0:.0f}s; probes stored in {out / 'probes.db'}")


if __name__ == "__main__":
    main()
