"""Analyses cost benchmark: every analysis for every layer in one pass, against capture alone.

    python benchmarks/bench_analyses.py                    # bundled model, all 16 layers, 1M tokens
    python benchmarks/bench_analyses.py --tokens 200000 --layers 0,8,15

Both modes read the same pre-tokenized windows (tokenization is not timed) through the same model:

- ``capture``: ``capture_windows`` for the layers with the backbone's statistics (top-k windows, reservoir,
  histogram, per-position and per-token counts) and nothing else;
- ``analyses``: the same pass with bigram/trigram counting on (``CaptureConfig.ngrams``), then ``analyze_layer``
  for every layer (dead units, n-gram coverage, token and trigram detectors, suppression, positional units).

Each mode runs in its own subprocess and reports its wall time and peak RSS. With ``--repeat N`` (default 2) the
modes alternate N times and the ratio compares the fastest run of each: on a shared machine a run is only ever
slowed down, and single runs of capture alone were seen to vary by up to 20%. The CPU time (user + system) of each
run is printed too, and its ratio: it is less sensitive to a busy host than the wall time.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def measure(mode: str, model: str, layers: list[int] | None, tokens: int, window: int) -> dict:
    import torch

    from autointerp.corpus import iter_token_windows, open_corpus
    from autointerp.subject.analyses import analyze_layer
    from autointerp.subject.capture import CaptureConfig, capture_windows
    from autointerp.subject.model import load_subject

    subject = load_subject(model, device="cpu", dtype="float32")
    layers = layers or list(range(subject.n_layers))
    windows = list(iter_token_windows(open_corpus("stdlib:all"), subject.tokenizer, window, tokens // window))
    t0 = time.perf_counter()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu0 = usage.ru_utime + usage.ru_stime
    analyses = mode == "analyses"
    cfg = CaptureConfig(layers=layers, window=window, ngrams=analyses, top_units=100 if analyses else None)
    caps = capture_windows(subject, windows, cfg)
    t_capture = time.perf_counter() - t0
    detectors = None
    if mode == "analyses":
        detectors = sum(analyze_layer(subject, caps[layer], caps[layer].ngrams)[1].n_token_detectors
                        for layer in layers)
    wall = time.perf_counter() - t0
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {"mode": mode, "cpu_s": round(usage.ru_utime + usage.ru_stime - cpu0, 1), "layers": len(layers),
            "tokens": len(windows) * window, "capture_s": round(t_capture, 1),
            "wall_s": round(wall, 1), "token_detectors": detectors, "threads": torch.get_num_threads(),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="bundled")
    ap.add_argument("--layers", default="all", help="all, or comma-separated layers")
    ap.add_argument("--tokens", type=int, default=1_000_000)
    ap.add_argument("--window", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=2, help="alternate the two modes this many times; compare the best")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one mode, print JSON
    args = ap.parse_args()
    layers = None if args.layers == "all" else [int(x) for x in args.layers.split(",")]
    if args.one:
        print(json.dumps(measure(args.one, args.model, layers, args.tokens, args.window)))
        return
    best: dict[str, dict] = {}
    best_cpu: dict[str, float] = {}
    for _ in range(max(1, args.repeat)):
        for mode in ("capture", "analyses"):
            cmd = [sys.executable, __file__, "--model", args.model, "--layers", args.layers, "--tokens",
                   str(args.tokens), "--window", str(args.window), "--one", mode]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
            r = json.loads(out)
            print(f"{mode:9s} {r['layers']} layers, {r['tokens']:,} tokens: {r['wall_s']:7.1f} s "
                  f"(capture pass {r['capture_s']} s), CPU {r['cpu_s']} s, peak RSS {r['peak_rss_mb']:,} MB",
                  flush=True)
            if mode not in best or r["wall_s"] < best[mode]["wall_s"]:
                best[mode] = r
            best_cpu[mode] = min(best_cpu.get(mode, r["cpu_s"]), r["cpu_s"])
    ratio = best["analyses"]["wall_s"] / best["capture"]["wall_s"]
    cpu_ratio = best_cpu["analyses"] / best_cpu["capture"]
    print(f"best of {max(1, args.repeat)}: capture {best['capture']['wall_s']} s, "
          f"analyses {best['analyses']['wall_s']} s")
    print(f"every analysis / capture alone: {ratio:.2f}x wall, {cpu_ratio:.2f}x CPU (best CPU time of each mode)")


if __name__ == "__main__":
    main()
