"""Are SAE features more interpretable than the baselines? (Cunningham et al. 2023; docs/methods.md §7.)

    python benchmarks/compare_dictionaries.py                       # layer 3 of the bundled model, baseline explainer
    python benchmarks/compare_dictionaries.py --layer 8 --tokens 500000 --out runs/dicts-l8

For one layer, with the real commands: fit an SAE and every baseline dictionary (PCA, ICA, random directions, the
default basis) on the residual stream over ``--fit-tokens`` of ``stdlib:fit``, evaluate each on held-out tokens
(``autointerp sae train``), explain and score every feature of each (``autointerp run --units sae:DIR``, held-out
corpus), and the layer's MLP neurons for reference; then print ``autointerp leaderboard --by dictionary``. Everything
lands in ``OUT/compare.db``. The explainer and simulator are whatever ``--explainer``/``--simulator`` name (default:
the offline baseline, which explains from top tokens and positions only).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from commands import autointerp

FAMILIES = ("sae", "pca", "ica", "random", "default")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--layer", type=int, default=3)
    ap.add_argument("--out", default="runs/compare-dictionaries")
    ap.add_argument("--tokens", type=int, default=1_000_000, help="held-out tokens captured per run")
    ap.add_argument("--fit-tokens", type=int, default=200_000)
    ap.add_argument("--alpha", type=float, default=1.0, help="SAE L1 coefficient")
    ap.add_argument("--explainer", default="baseline")
    ap.add_argument("--simulator", default="baseline")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    db = str(out / "compare.db")
    common = ("--db", db)
    scoring = ("--tokens", str(args.tokens), "--explainer", args.explainer, "--simulator", args.simulator)
    for family in FAMILIES:
        folder = out / f"{family}-l{args.layer}"
        if not (folder / "cfg.json").exists():
            report = json.loads(autointerp("sae", "train", "--layer", str(args.layer), "--kind", family,
                                           "--out", str(folder), "--alpha", str(args.alpha),
                                           "--fit-tokens", str(args.fit_tokens), *common, "--format", "json"))
            fvu = "n/a" if report["fvu"] is None else f"{report['fvu']:.3f}"
            print(f"{family:>8}: {report['n_features']} features, FVU {fvu}, mean L0 {report['mean_l0']:.1f}, "
                  f"dead {report['dead_features']}, loss clean {report['loss_clean']} spliced "
                  f"{report['loss_spliced']}", flush=True)
        t0 = time.time()
        autointerp("run", "--layer", str(args.layer), "--units", f"sae:{folder}", *scoring, *common, "--format", "json")
        print(f"{family:>8}: explained and scored in {time.time() - t0:.0f} s", flush=True)
    autointerp("run", "--layer", str(args.layer), *scoring, *common, "--format", "json")
    print(autointerp("leaderboard", "--by", "dictionary", "--layer", str(args.layer), *common))


if __name__ == "__main__":
    main()
