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

The range and silent samples (``CaptureConfig.range_windows``, ``silent_windows``: detection and fuzzing's examples)
in both modes: the JSON of each capture measurement carries ``tensor_bytes`` (every tensor and array the capture
keeps, at any depth: ``autointerp.subject.memory.held_bytes``) and ``range_bytes`` (the range and silent samples'),
which must be equal at 1M and 10M tokens; and their cost in speed, capture with both at 0 against both at their
default (100), in one process, alternating rounds (the budget: within 5%), and the time the samples' own updates take
inside the runs with them (a share of each run that the machine's noise, which moves whole runs by 10%, does not
blur):

    python benchmarks/bench_capture.py --range-speed --layers 13 --tokens 100000 --rounds 3

Every mode prints the load average (``os.getloadavg``) before and after: figures from a loaded machine are noise.

Against the tools researchers would use instead (``--peers``), in ONE process, on the same model, device and batches
(the inputs capture builds, with the family's BOS or separator in front), alternating the modes round after round and
keeping each mode's best round:

    python benchmarks/bench_capture.py --peers --model /work/models/smollm2 --layers 13 --tokens 8192 --rounds 3

- ``bare``: ``model(input_ids)``, full depth, no hooks;
- ``capture``: ``capture_windows`` with every statistic under the model's firing rule;
- ``tlens``: TransformerLens 4 (``TransformerBridge.boot_transformers`` on the same HF model object)
  ``run_with_cache`` with a names filter on ``blocks.{L}.mlp.hook_post`` and ``stop_at_layer=L + 1``;
- ``nnsight``: ``NNsight(model).trace`` saving the input of layer L's down projection (the same activations),
  then ``tracer.stop()`` is NOT used: the pass runs to the end, as nnsight's saving does by default.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import statistics
import subprocess
import sys
import time


def sample_bytes(cap) -> int:
    """Bytes of the per-unit range and silent samples (detection and fuzzing's examples)."""
    return cap.range_sample.nbytes + cap.silent_sample.nbytes


def measure(mode: str, model: str, layers: list[int], tokens: int, batch: int, window: int,
            range_windows: int = 100) -> dict:
    import torch

    from autointerp.corpus import bos_id, iter_token_windows, open_corpus
    from autointerp.subject.capture import CaptureConfig, capture_windows
    from autointerp.subject.memory import held_bytes
    from autointerp.subject.model import load_subject

    torch.manual_seed(0)
    subject = load_subject(model, device="cpu", dtype="float32")
    base = list(iter_token_windows(open_corpus("stdlib:all"), subject.tokenizer, window, 1_000_000 // window))
    n_windows = tokens // window
    windows = itertools.islice(itertools.cycle(base), n_windows)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    kept = {}
    if mode == "bare":
        bos = bos_id(subject.tokenizer)  # exactly the inputs capture builds: BOS only where the model uses one
        with torch.inference_mode():
            while chunk := list(itertools.islice(windows, batch)):
                ids = torch.tensor(chunk)
                inputs = ids if bos is None else torch.cat([torch.full((len(chunk), 1), bos), ids], 1)
                subject.model(input_ids=inputs, use_cache=False)
    else:
        cfg = CaptureConfig(layers=layers, window=window, batch_size=batch, range_windows=range_windows,
                            silent_windows=range_windows)
        caps = capture_windows(subject, windows, cfg)
        kept = {"tensor_bytes": sum(map(held_bytes, caps.values())),
                "range_bytes": sum(map(sample_bytes, caps.values()))}
    wall = time.perf_counter() - t0
    return {
        "mode": mode, "model": model, "layers": layers, "tokens": n_windows * window, "wall_s": round(wall, 2),
        "tokens_per_s": round(n_windows * window / wall), "peak_rss_mb": round(resource.getrusage(
            resource.RUSAGE_SELF).ru_maxrss / 1024), "rss_before_mb": round(rss_before / 1024),
        "threads": torch.get_num_threads(), **kept,
    }


def range_speed(model: str, layer: int, tokens: int, batch: int, window: int, rounds: int) -> None:
    """Capture without and with the range and silent samples, in one process on the same windows, alternating; the
    best of each, and the median over rounds of the ratio of the two runs of a round."""
    import torch

    from autointerp.corpus import iter_token_windows, open_corpus
    from autointerp.subject.capture import CaptureConfig, capture_windows
    from autointerp.subject.model import load_subject

    from autointerp.subject.range_windows import RangeReservoir

    subject = load_subject(model, device="cpu", dtype="float32")
    windows = list(iter_token_windows(open_corpus("stdlib:all"), subject.tokenizer, window, tokens // window))
    default = CaptureConfig(layers=[layer]).range_windows
    in_updates = [0.0]  # seconds spent in the samples' own updates: what the samples cost, without the machine's noise
    update = RangeReservoir.update

    def timed_update(self, *args, **kwargs):
        t = time.perf_counter()
        try:
            return update(self, *args, **kwargs)
        finally:
            in_updates[0] += time.perf_counter() - t

    RangeReservoir.update = timed_update
    shares = []  # per run with the samples: their updates' time over the capture's
    best = {0: float("inf"), default: float("inf")}
    cpu = dict(best)  # process CPU time: less disturbed than wall time by other processes on the machine
    ratios = []  # per round: with / without, the two timed back to back
    for r in range(rounds):
        this_round = {}
        for size in (list(best) if r % 2 == 0 else list(best)[::-1]):  # each mode goes first in turn
            t0, c0, u0 = time.perf_counter(), time.process_time(), in_updates[0]
            capture_windows(subject, windows, CaptureConfig(layers=[layer], window=window, batch_size=batch,
                                                            range_windows=size, silent_windows=size))
            this_round[size] = time.perf_counter() - t0
            if size:
                shares.append((in_updates[0] - u0) / this_round[size])
            best[size] = min(best[size], this_round[size])
            cpu[size] = min(cpu[size], time.process_time() - c0)
        ratios.append(this_round[default] / this_round[0])
    n = len(windows) * window
    print(f"{model}, layer {layer}: {n:,} tokens, best of {rounds} alternating rounds, "
          f"{torch.get_num_threads()} threads")
    for size, t in best.items():
        print(f"range/silent_windows={size:<3d} {t:7.2f} s  {n / t:>9,.0f} tok/s  CPU {cpu[size]:7.2f} s")
    print(f"capture time with / without the samples: wall {best[default] / best[0]:.3f}x, CPU "
          f"{cpu[default] / cpu[0]:.3f}x (budget: 1.05x)")
    print(f"per round, wall with / without: {' '.join(f'{x:.3f}' for x in ratios)}; median "
          f"{statistics.median(ratios):.3f}x")
    print(f"the samples' own updates (RangeReservoir.update, timed in the runs with them): "
          f"{' '.join(f'{x:.1%}' for x in shares)} of the capture's time; median {statistics.median(shares):.1%}")


def _submodule(root, path: str):
    for part in path.split("."):
        root = root[int(part)] if part.isdigit() else getattr(root, part)
    return root


def peers(model: str, layer: int, tokens: int, batch: int, window: int, rounds: int) -> None:
    """Time bare / capture / tlens / nnsight in one process on the same batches, alternating; print the best."""
    import torch

    from autointerp.corpus import bos_id, iter_token_windows, open_corpus
    from autointerp.subject.capture import CaptureConfig, capture_windows
    from autointerp.subject.model import ARCHITECTURES, load_subject

    subject = load_subject(model, device="cpu", dtype="float32")
    windows = list(iter_token_windows(open_corpus("stdlib:all"), subject.tokenizer, window, tokens // window))
    bos = bos_id(subject.tokenizer)
    ids = torch.tensor(windows)
    inputs = ids if bos is None else torch.cat([torch.full((len(ids), 1), bos), ids], 1)
    chunks = list(inputs.split(batch))
    hook_name = f"blocks.{layer}.mlp.hook_post"
    modes: dict[str, object] = {}

    def bare():
        with torch.inference_mode():
            for x in chunks:
                subject.model(input_ids=x, use_cache=False)

    def capture():
        capture_windows(subject, windows, CaptureConfig(layers=[layer], window=window, batch_size=batch))

    modes["bare"], modes["capture"] = bare, capture
    try:
        from transformer_lens.model_bridge import TransformerBridge

        bridge = TransformerBridge.boot_transformers(subject.model.name_or_path, hf_model=subject.model,
                                                     tokenizer=subject.tokenizer, device="cpu")
        if hook_name not in bridge.hook_dict:
            raise KeyError(f"no hook {hook_name} for {subject.model_type}")

        def tlens():
            with torch.inference_mode():
                for x in chunks:
                    bridge.run_with_cache(x, names_filter=lambda n: n == hook_name, stop_at_layer=layer + 1)

        modes["tlens"] = tlens
    except Exception as e:  # noqa: BLE001 - a peer that cannot run here is reported, not fatal
        print(f"tlens: n/a ({type(e).__name__}: {str(e)[:160]})")
    try:
        from nnsight import NNsight

        wrapped = NNsight(subject.model)
        site = ARCHITECTURES[subject.model_type].down_proj.format(layer=layer)

        def nnsight():
            with torch.inference_mode():
                for x in chunks:
                    with wrapped.trace(x):
                        _submodule(wrapped, site).input.save()

        modes["nnsight"] = nnsight
    except Exception as e:  # noqa: BLE001
        print(f"nnsight: n/a ({type(e).__name__}: {str(e)[:160]})")
    from autointerp.subject.hooks import mlp_hooks, run_batch

    with mlp_hooks(subject, [layer]) as store:  # the same activations, checked on the first batch
        run_batch(subject, chunks[0])
    ours = store[layer].reshape(*chunks[0].shape, -1)
    if "tlens" in modes:
        _, cache = bridge.run_with_cache(chunks[0], names_filter=lambda n: n == hook_name)
        print(f"max |autointerp - TransformerLens {hook_name}|: {(ours - cache[hook_name]).abs().max():.2e}")
    if "nnsight" in modes:
        with wrapped.trace(chunks[0]):
            saved = _submodule(wrapped, site).input.save()
        print(f"max |autointerp - nnsight {site}.input|: {(ours - saved.reshape(ours.shape)).abs().max():.2e}")
    best = {m: float("inf") for m in modes}
    for r in range(rounds):
        for m, fn in modes.items():
            t0 = time.perf_counter()
            fn()
            best[m] = min(best[m], time.perf_counter() - t0)
    n = ids.numel()
    print(f"{model}, layer {layer}: {n:,} tokens in batches of {batch} x {window}, best of {rounds} alternating rounds, "
          f"{torch.get_num_threads()} threads")
    for m, t in best.items():
        print(f"{m:8s} {t:7.2f} s  {n / t:>8,.0f} tok/s  capture speed / {m}: {t / best['capture']:.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="bundled")
    ap.add_argument("--layers", default="13", help="comma-separated layers to capture at once")
    ap.add_argument("--tokens", default="1000000,10000000", help="comma-separated token counts")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--window", type=int, default=64)
    ap.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one measurement, print JSON
    ap.add_argument("--peers", action="store_true", help="bare vs capture vs TransformerLens vs nnsight, one process")
    ap.add_argument("--rounds", type=int, default=3, help="--peers, --range-speed: alternating rounds, best kept")
    ap.add_argument("--range-windows", type=int, default=100, help="CaptureConfig.range_windows and silent_windows "
                                                                   "of the capture mode")
    ap.add_argument("--range-speed", action="store_true",
                    help="capture with range/silent_windows 0 vs 100, one process")
    args = ap.parse_args()
    layers = [int(x) for x in args.layers.split(",")]
    if not args.one:
        print(f"load average before: {os.getloadavg()}", flush=True)
    try:
        run(args, layers)
    finally:
        if not args.one:
            print(f"load average after: {os.getloadavg()}")


def run(args, layers: list[int]) -> None:
    if args.range_speed:
        range_speed(args.model, layers[0], int(args.tokens.split(",")[0]), args.batch, args.window, args.rounds)
        return
    if args.peers:
        peers(args.model, layers[0], int(args.tokens.split(",")[0]), args.batch, args.window, args.rounds)
        return
    if args.one:
        mode, tokens = args.one.split(":")
        print(json.dumps(measure(mode, args.model, layers, int(tokens), args.batch, args.window, args.range_windows)))
        return
    token_counts = [int(x) for x in args.tokens.split(",")]
    results = []
    plan = [("bare", token_counts[0])] + [("capture", t) for t in token_counts]
    for mode, tokens in plan:
        cmd = [sys.executable, __file__, "--model", args.model, "--layers", args.layers, "--batch", str(args.batch),
               "--window", str(args.window), "--range-windows", str(args.range_windows), "--one", f"{mode}:{tokens}"]
        res = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])
        results.append(res)
        print(f"{mode:8s} {res['tokens']:>11,} tokens  {res['wall_s']:8.2f} s  {res['tokens_per_s']:>9,} tok/s  "
              f"peak RSS {res['peak_rss_mb']:,} MB" + (f"  kept tensors {res['tensor_bytes']:,} B (range and silent samples "
              f"{res['range_bytes']:,} B)" if "tensor_bytes" in res else ""), flush=True)
    bare, first, last = results[0], results[1], results[-1]
    print(f"capture / bare throughput at {first['tokens']:,} tokens: {first['tokens_per_s'] / bare['tokens_per_s']:.2f}x")
    if len(results) > 2:
        print(f"peak RSS {first['tokens']:,} -> {last['tokens']:,} tokens: {first['peak_rss_mb']} -> "
              f"{last['peak_rss_mb']} MB ({last['peak_rss_mb'] / first['peak_rss_mb']:.2f}x)")


if __name__ == "__main__":
    main()
