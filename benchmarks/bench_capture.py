"""Capture benchmark: throughput with every statistic vs a bare forward pass, and peak memory vs tokens.

    python benchmarks/bench_capture.py                         # bundled model, layer 13, 1M and 10M tokens
    python benchmarks/bench_capture.py --layers 15 --tokens 1000000

Both modes run the same model over the same batches: the corpus is tokenized once into windows (not timed), and
the windows are cycled to reach the token count, so the window list costs the same memory at 1M and 10M tokens.

- ``bare``: ``model(input_ids)`` on each batch, full depth, no hooks (what a plain inference loop costs);
- ``capture``: ``capture_windows`` with all statistics (top-k, reservoir, histogram, per-position and per-token
  counts), which stops the forward pass after the deepest hooked layer.

Each measurement runs in a fresh subprocess and reports its own peak RSS (``ru_maxrss``), so the 1M-token and the
10M-token capture can be compared for flat memory.
"""

from __future__ import annotations

import argparse
import itertools
import json
import resource
import subprocess
import sys
import time


def measure(mode: str, model: str, layers: list[int], tokens: int, batch: int, window: int) -> dict:
    import torch

    from autointerp.corpus import bos_id, iter_token_windows, open_corpus
    from autointerp.subject.capture import CaptureConfig, capture_windows
    from autointerp.subject.model import load_subject

    torch.manual_seed(0)
    subject = load_subject(model, device="cpu", dtype="float32")
    base = list(iter_token_windows(open_corpus("stdlib:all"), subject.tokenizer, window, 1_000_000 // window))
    n_windows = tokens // window
    windows = itertools.islice(itertools.cycle(base), n_windows)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    if mode == "bare":
        bos = bos_id(subject.tokenizer)  # exactly the inputs capture builds: BOS only where the model uses one
        with torch.inference_mode():
            while chunk := list(itertools.islice(windows, batch)):
                ids = torch.tensor(chunk)
                inputs = ids if bos is None else torch.cat([torch.full((len(chunk), 1), bos), ids], 1)
                subject.model(input_ids=inputs, use_cache=False)
    else:
        cfg = CaptureConfig(layers=layers, window=window, batch_size=batch)
        capture_windows(subject, windows, cfg)
    wall = time.perf_counter() - t0
    return {
        "mode": mode, "model": model, "layers": layers, "tokens": n_windows * window, "wall_s": round(wall, 2),
        "tokens_per_s": round(n_windows * window / wall), "peak_rss_mb": round(resource.getrusage(
            resource.RUSAGE_SELF).ru_maxrss / 1024), "rss_before_mb": round(rss_before / 1024),
        "threads": torch.get_num_threads(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="bundled")
    ap.add_argument("--layers", default="13", help="comma-separated layers to capture at once")
    ap.add_argument("--tokens", default="1000000,10000000", help="comma-separated token counts")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--window", type=int, default=64)
    ap.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one measurement, print JSON
    args = ap.parse_args()
    layers = [int(x) for x in args.layers.split(",")]
    if args.one:
        mode, tokens = args.one.split(":")
        print(json.dumps(measure(mode, args.model, layers, int(tokens), args.batch, args.window)))
        return
    token_counts = [int(x) for x in args.tokens.split(",")]
    results = []
    plan = [("bare", token_counts[0])] + [("capture", t) for t in token_counts]
    for mode, tokens in plan:
        cmd = [sys.executable, __file__, "--model", args.model, "--layers", args.layers, "--batch", str(args.batch),
               "--window", str(args.window), "--one", f"{mode}:{tokens}"]
        res = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])
        results.append(res)
        print(f"{mode:8s} {res['tokens']:>11,} tokens  {res['wall_s']:8.2f} s  {res['tokens_per_s']:>9,} tok/s  "
              f"peak RSS {res['peak_rss_mb']:,} MB", flush=True)
    bare, first, last = results[0], results[1], results[-1]
    print(f"capture / bare throughput at {first['tokens']:,} tokens: {first['tokens_per_s'] / bare['tokens_per_s']:.2f}x")
    if len(results) > 2:
        print(f"peak RSS {first['tokens']:,} -> {last['tokens']:,} tokens: {first['peak_rss_mb']} -> "
              f"{last['peak_rss_mb']} MB ({last['peak_rss_mb'] / first['peak_rss_mb']:.2f}x)")


if __name__ == "__main__":
    main()
