"""Detection and fuzzing beside simulation, offline: the baseline explainer on a bundled layer, each unit judged by
the baseline simulator and by the quoted-token judge (detection, fuzzing), with the shuffled (the next unit's) and
empty explanations as controls; prints the means and the Spearman correlation between the scores across units.

    python benchmarks/classify_agreement.py --layer 13 --tokens 60000 --step 4
    python benchmarks/classify_agreement.py --layer 13 --tokens 200000 --step 1 --firing max_fraction
    python benchmarks/classify_agreement.py --layer 1,4,7,10,13,15 --tokens 0 --step 1   # every layer, one pass
    python benchmarks/classify_agreement.py --layer 13 --tokens 0 --step 1 --dictionary sae13   # an SAE's features

The capture and the scorers use the defaults (``CaptureConfig``: 100 range and 100 silent windows per unit; 50
examples of each class per split, delphi's reference; ``--examples`` draws fewer). ``--firing`` picks the firing
rule that says which windows are activating (``autointerp.subject.firing``; the bundled model is ReLU, so ``auto``
is ``fixed``: above 0). Each scorer's split-half reliability (its score on test against on valid, across units)
bounds how well two scores can agree. ``--tokens 0`` reads the whole corpus, as ``autointerp run`` does by default;
several layers (``--layer 1,7,13``) share one capture. For each layer it also prints how many live units got all
three scores, and why the others did not (a unit that fires in every window has no silent example, so its
detection is undefined: docs/methods.md §2b), and how often the judge said "fires" on the explainer's activating
examples of each decile bin and on the silent ones (the true and false positive rates that make up detection).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics

from scipy.stats import spearmanr

from autointerp.agent.baseline import BaselineExplainer
from autointerp.corpus import open_corpus
from autointerp.scoring.baseline import BaselineSimulator
from autointerp.scoring.classify import N_PER_CLASS, DetectionScorer, FuzzingScorer
from autointerp.scoring.judges import QuotedJudge
from autointerp.scoring.simulation import SimulationScorer
from autointerp.subject.capture import CaptureConfig, capture
from autointerp.subject.model import load_subject
from autointerp.subject.units import load_unit_space


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--layer", default="13", help="a layer, or several separated by commas (%(default)s)")
    ap.add_argument("--tokens", type=int, default=60_000, help="content tokens to capture; 0: the whole corpus")
    ap.add_argument("--step", type=int, default=4, help="every STEP-th unit")
    ap.add_argument("--examples", type=int, default=N_PER_CLASS, help="examples per class and split (%(default)s)")
    ap.add_argument("--firing", default="auto", choices=("auto", "fixed", "max_fraction"), help="the firing rule")
    ap.add_argument("--dictionary", help="a dictionary folder (autointerp sae train --out DIR): judge its features "
                                         "instead of the MLP neurons (one layer)")
    args = ap.parse_args()
    print(f"load average before: {os.getloadavg()}")
    layers = [int(x) for x in args.layer.split(",")]
    subject = load_subject("bundled", device="cpu", dtype="float32")
    space = None
    if args.dictionary:
        if len(layers) != 1:
            raise SystemExit("--dictionary reads one layer: give --layer N")
        space = load_unit_space(args.dictionary, layers[0], subject)
        print(f"units: the features of {args.dictionary} ({space.kind}, site {space.site})")
    caps = capture(subject, open_corpus("stdlib"), CaptureConfig(layers=layers, max_tokens=args.tokens or None,
                                                                 firing=args.firing), space=space)
    for layer in layers:
        report(layer, caps[layer], args)
    print(f"load average after: {os.getloadavg()}")


def report(layer: int, cap, args: argparse.Namespace) -> None:
    """Judge one layer's live units (every ``args.step``-th) and print the means, coverage and agreement."""
    scorers = {"simulation": SimulationScorer(BaselineSimulator()),
               "detection": DetectionScorer(QuotedJudge(), n_per_class=args.examples),
               "fuzzing": FuzzingScorer(QuotedJudge(), n_per_class=args.examples)}
    records = {u: cap.unit_record(u) for u in range(0, cap.n_units, args.step)}
    records = {u: r for u, r in records.items() if not r.stats.dead}
    texts = {u: asyncio.run(BaselineExplainer().explain(r.for_explainer())).text for u, r in records.items()}
    live = list(texts)
    values: dict[tuple[str, str], list[float | None]] = {}
    missing: dict[int, list[str]] = {}
    hits: dict[int, list[int]] = {}  # the explainer's defined detections: answers "fires" by bin (-1: silent windows)
    for i, u in enumerate(live):
        controls = {"explainer": texts[u], "shuffled": texts[live[(i + 1) % len(live)]], "empty": ""}
        for who, text in controls.items():
            for name, scorer in scorers.items():
                judgement = asyncio.run(scorer.judge(records[u], text, "test"))
                values.setdefault((who, name), []).append(judgement.value)
                if who == "explainer" and judgement.value is None:
                    missing.setdefault(u, []).append(f"{name}: {judgement.undefined_reason or judgement.failure}")
                if who == "explainer" and name == "detection" and judgement.value is not None:
                    for ex in judgement.examples:
                        if ex.answer is not None:
                            hits.setdefault(-1 if ex.bin is None else ex.bin, []).append(ex.answer)
    print(f"bundled layer {layer}, {cap.n_tokens:,} tokens, {len(live)} live units (every {args.step}th), "
          f"firing rule {cap.firing_rule}, {scorers['detection'].n_per_class} examples per class")
    print(f"all three scores: {len(live) - len(missing)} of {len(live)} live units")
    for u, why in missing.items():
        print(f"  {layer}/{u}: " + "; ".join(why))
    for who in ("explainer", "shuffled", "empty"):
        cells = []
        for name in scorers:
            defined = [v for v in values[(who, name)] if v is not None]
            cells.append(f"{name} {statistics.mean(defined):.3f} (n={len(defined)})" if defined else f"{name} n/a")
        print(f"{who:9s} " + ", ".join(cells))
    print("explainer detection, share answered 'fires' by decile of the window max (0: lowest): "
          + " ".join(f"{statistics.mean(hits[b]):.2f}" for b in sorted(hits) if b >= 0)
          + (f"; on silent windows: {statistics.mean(hits[-1]):.2f}" if -1 in hits else ""))
    for name in ("detection", "fuzzing"):
        pairs = [(s, c) for s, c in zip(values[("explainer", "simulation")], values[("explainer", name)])
                 if s is not None and c is not None]
        rho = spearmanr(*zip(*pairs))
        print(f"Spearman simulation vs {name}: {rho.statistic:.3f} (p = {rho.pvalue:.3g}, n = {len(pairs)})")
    for name, scorer in scorers.items():  # how much of a score is the unit and how much the examples drawn
        valid = [asyncio.run(scorer.judge(records[u], texts[u], "valid")).value for u in live]
        pairs = [(t, v) for t, v in zip(values[("explainer", name)], valid) if t is not None and v is not None]
        print(f"{name} on test vs on valid (split-half reliability), Spearman: {spearmanr(*zip(*pairs)).statistic:.3f}")


if __name__ == "__main__":
    main()
