"""The compact simulation reply against the full one, on the same explanations and windows (docs/methods.md §2c).

    python benchmarks/bench_sim_format.py                       # 32 units of the bundled model, the test server
    python benchmarks/bench_sim_format.py --units 0:64 --gguf /models/SmolLM2-135M-Instruct.Q4_1.gguf
    python benchmarks/bench_sim_format.py --base-url http://127.0.0.1:8080/v1 --model smol   # a real endpoint
    python benchmarks/bench_sim_format.py --base-url http://127.0.0.1:8080/v1 --model smol --grammar \
        --window 16 --top-k 6 --n-random 4 --units 0:32     # SmolLM2 on llama.cpp, replies held by its grammar
    python benchmarks/bench_sim_format.py --hf-gguf $SMOL_GGUF --window 16 --windows-per-request 4 --units 0:16

Captures one layer of a subject model, writes each unit's explanation with the baseline explainer (a rule: the same
text for both formats), then simulates every unit's ``test`` windows twice through the real client, once per reply
format (``LLMSimulator(fmt="full" | "compact")``), against the project's test server started here (its default
handler simulates from the explanation's quoted tokens), the endpoint given with ``--base-url``, or a real model
run here with its replies forced into each format (``--hf-gguf``: ``benchmarks/forced_chat.py``). It prints, per
format: the mean score over units, windows that failed, output tokens per predicted position and input tokens per
window (counted over the requests and replies the client logged: with the project's ``TokenCounter``, the server's
``usage``, the subject model's own tokenizer (the bundled one is a byte-level BPE that merges runs of digits), and
SmolLM2's real BPE tokenizer read from its GGUF when ``--gguf``/``SMOL_GGUF`` names one; that column is skipped
otherwise); then the paired difference of scores (compact - full) with a 95% paired-bootstrap interval over
units, and what the compact prompt saves in input tokens. The load average is printed before and after: run it on a
quiet machine for figures that go in the docs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import time

import numpy as np


class Calls:
    """A CallSink keeping each simulation request's messages and reply text."""

    def __init__(self):
        self.records = []

    def record_call(self, record) -> None:
        self.records.append(record)


def reply_text(record) -> str:
    choices = (record.response or {}).get("choices") or [{}]
    return (choices[0].get("message") or {}).get("content") or ""


def smol_tokenizer(gguf: str | None):
    """SmolLM2's tokenizer read from its GGUF file, or None when no file is given or it cannot be read."""
    if not gguf or not os.path.isfile(gguf):
        return None
    try:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(os.path.dirname(os.path.abspath(gguf)), gguf_file=os.path.basename(gguf))
    except Exception as exc:  # noqa: BLE001 (a benchmark column, not a product path)
        print(f"(SmolLM2 tokenizer not read from {gguf}: {exc}; its column is skipped)", file=sys.stderr)
        return None


def units_and_explanations(args):
    """The subject's tokenizer and [(unit, explanation, test windows as records, test windows as token strings)]
    for the chosen units."""
    from autointerp.agent.baseline import BaselineExplainer
    from autointerp.corpus import open_corpus
    from autointerp.scoring.judges import quoted_tokens
    from autointerp.subject.capture import CaptureConfig, capture
    from autointerp.subject.model import load_subject

    subject = load_subject(args.subject, device="cpu", dtype="float32")
    config = CaptureConfig(layers=[args.layer], window=args.window, max_tokens=args.tokens, top_k=args.top_k,
                           n_random=args.n_random)
    cap = capture(subject, open_corpus(args.corpus), config)[args.layer]
    start, stop = (int(x) for x in args.units.split(":"))
    cases = []
    for unit in range(start, min(stop, cap.n_units)):
        record = cap.unit_record(unit)
        test = record.split("test")
        if not test:
            continue
        text = asyncio.run(BaselineExplainer().explain(record.for_explainer())).text
        if args.max_quoted and not 0 < len(quoted_tokens(text)) <= args.max_quoted:
            continue
        cases.append((unit, text, test, [list(w.tokens) for w in test]))
    return subject.tokenizer, cases


async def simulate(profile, fmt: str, cases, windows_per_request: int):
    from autointerp.llm import LLMClient
    from autointerp.scoring.llm_simulator import LLMSimulator

    sink = Calls()
    async with LLMClient(profile, "bench", sink=sink, backoff_base_s=0.01) as client:
        simulator = LLMSimulator(client, profile, windows_per_request=windows_per_request, fmt=fmt)
        results = await asyncio.gather(*(simulator.simulate(text, windows) for _, text, _, windows in cases))
    return results, sink.records


def measure(fmt, results, records, cases, counter, bpes: dict) -> dict:
    from autointerp.scoring.score import score_windows

    scores = [score_windows(test, r.predictions).score for (_, _, test, _), r in zip(cases, results)]
    positions = sum(len(w) for _, _, _, windows in cases for w in windows)
    windows = sum(len(windows) for *_, windows in cases)
    replies = [reply_text(r) for r in records if r.error is None]
    prompts = ["".join(m["content"] for m in r.messages) for r in records]
    reasons: dict[str, int] = {}
    for result in results:
        for error in result.errors:
            if error is not None:
                reasons[error] = reasons.get(error, 0) + 1
    row = {"format": fmt, "scores": scores, "failed_windows": sum(reasons.values()), "reasons": reasons,
           "predictions": [p for r in results for p in r.predictions],
           "calls": len(records), "out_per_position": {}, "in_per_window": {}}
    row["out_per_position"][f"counter ({counter.method})"] = sum(counter.count(t) for t in replies) / positions
    row["in_per_window"][f"counter ({counter.method})"] = sum(counter.count_messages(r.messages)
                                                            for r in records) / windows
    row["out_per_position"]["server usage"] = sum(r.tokens_out for r in records) / positions
    row["in_per_window"]["server usage"] = sum(r.tokens_in for r in records) / windows
    for name, bpe in bpes.items():
        row["out_per_position"][name] = sum(len(bpe.encode(t, add_special_tokens=False)) for t in replies) / positions
        row["in_per_window"][name] = sum(len(bpe.encode(t, add_special_tokens=False)) for t in prompts) / windows
    return row


def paired_bootstrap(full: list, compact: list, rounds: int, seed: int) -> tuple[int, float, float, float]:
    """(units with both scores defined, mean difference compact - full, its 95% paired-bootstrap interval)."""
    diffs = np.array([c - f for f, c in zip(full, compact) if f is not None and c is not None])
    if len(diffs) == 0:
        return 0, float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = diffs[rng.integers(0, len(diffs), size=(rounds, len(diffs)))].mean(axis=1)
    return len(diffs), float(diffs.mean()), float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--subject", default="bundled", help="subject model (default: the bundled one)")
    ap.add_argument("--layer", type=int, default=3)
    ap.add_argument("--units", default="0:32")
    ap.add_argument("--corpus", default="stdlib")
    ap.add_argument("--tokens", type=int, default=40_000, help="capture size")
    ap.add_argument("--window", type=int, default=64)
    ap.add_argument("--top-k", type=int, default=30, help="top windows kept per unit (a third are test windows)")
    ap.add_argument("--n-random", type=int, default=20, help="random windows (half are test windows)")
    ap.add_argument("--max-quoted", type=int, default=0, help="only units whose explanation quotes 1 to N tokens "
                    "(0: every unit); a small model reads a one-token explanation where it cannot read six")
    ap.add_argument("--windows-per-request", type=int, default=10)
    ap.add_argument("--base-url", help="an OpenAI-compatible endpoint (default: the test server, started here)")
    ap.add_argument("--model", default="fake-model", help="the model name sent to --base-url")
    ap.add_argument("--hf-gguf", help="answer with this real model (transformers, CPU), its replies forced into each "
                                      "format as a grammar would (benchmarks/forced_chat.py), instead of the test "
                                      "server's rule")
    ap.add_argument("--parse", action="store_true", help="read the written numbers (no logprobs)")
    ap.add_argument("--grammar", action="store_true", help="send each format as a llama.cpp grammar "
                                                           "(profile simulator_grammar = true)")
    ap.add_argument("--concurrency", type=int, help="requests in flight (default: 8 for the test server, detected "
                                                     "for --base-url: 1 for llama-cpp-python)")
    ap.add_argument("--gguf", default=os.environ.get("SMOL_GGUF"), help="SmolLM2 GGUF, for its tokenizer's counts")
    ap.add_argument("--rounds", type=int, default=10_000, help="bootstrap resamples")
    args = ap.parse_args()

    from autointerp.llm import ModelProfile
    from autointerp.llm.tokens import TokenCounter
    from autointerp.testing.server import FakeOpenAIServer

    load_before = os.getloadavg()
    started = time.perf_counter()
    subject_tokenizer, cases = units_and_explanations(args)
    counter, smol = TokenCounter(), smol_tokenizer(args.gguf)
    bpes = {f"the subject's BPE ({args.subject})": subject_tokenizer}
    if smol is not None:
        bpes["SmolLM2 BPE"] = smol
    rows = []
    if args.hf_gguf:
        from forced_chat import ForcedSimulator

        server = FakeOpenAIServer(ForcedSimulator(args.hf_gguf))
    else:
        server = None if args.base_url else FakeOpenAIServer()
    with server or contextlib.nullcontext():
        base_url = args.base_url or server.base_url
        concurrency = args.concurrency or (1 if args.hf_gguf else None if args.base_url else 8)
        profile = ModelProfile(model=args.model, base_url=base_url, supports_logprobs=not args.parse,
                               simulator_grammar=args.grammar, concurrency=concurrency,
                               timeout_s=3600.0 if args.hf_gguf else 60.0)
        for fmt in ("full", "compact"):
            results, records = asyncio.run(simulate(profile, fmt, cases, args.windows_per_request))
            rows.append(measure(fmt, results, records, cases, counter, bpes))
    load_after = os.getloadavg()

    positions = sum(len(w) for *_, windows in cases for w in windows)
    print(f"{len(cases)} units, {sum(len(c[3]) for c in cases)} test windows, {positions} predicted positions; "
          f"endpoint: {args.base_url or args.hf_gguf or 'the test server'}; "
          f"model {args.model}; {'parse' if args.parse else 'logprobs'}; grammar {'on' if args.grammar else 'off'}; "
          f"subject {args.subject} layer {args.layer}, units {args.units}"
          f"{f' quoting at most {args.max_quoted} tokens' if args.max_quoted else ''}, "
          f"windows of {args.window} tokens, "
          f"{args.windows_per_request} windows per request")
    for row in rows:
        defined = [s for s in row["scores"] if s is not None]
        mean = statistics.fmean(defined) if defined else float("nan")
        print(f"\n{row['format']}: mean score {mean:.4f} over {len(defined)} units with a score; "
              f"{row['failed_windows']} windows failed; {row['calls']} calls")
        pos = [(i, v) for p in row["predictions"] if p is not None for i, v in enumerate(p)]
        if len(pos) > 1 and np.std([v for _, v in pos]) > 0:
            print(f"  predictions: mean {np.mean([v for _, v in pos]):.3f}, correlation with the position in the window "
                  f"{np.corrcoef(np.array(pos).T)[0, 1]:+.3f}")
        for reason, count in sorted(row["reasons"].items(), key=lambda kv: -kv[1])[:5]:
            print(f"  {count} failed: {reason[:200]}")
        for how, value in row["out_per_position"].items():
            print(f"  output tokens per predicted position, {how}: {value:.3f}")
        for how, value in row["in_per_window"].items():
            print(f"  input tokens per window, {how}: {value:.1f}")
    full, compact = rows
    n, diff, low, high = paired_bootstrap(full["scores"], compact["scores"], args.rounds, seed=0)
    print(f"\ncompact - full: mean score difference {diff:+.4f}, 95% paired-bootstrap interval "
          f"[{low:+.4f}, {high:+.4f}] over {n} units")
    pairs = [(f, c) for fw, cw in zip(full["predictions"], compact["predictions"]) if fw is not None and cw is not None
             for f, c in zip(fw, cw)]
    if len(pairs) > 1:
        f, c = np.array(pairs).T
        r = float(np.corrcoef(f, c)[0, 1]) if f.std() > 0 and c.std() > 0 else float("nan")
        print(f"per-position predictions over {len(pairs)} positions both formats predicted: correlation {r:.3f}, "
              f"mean {f.mean():.3f} full, {c.mean():.3f} compact, mean absolute difference {np.abs(f - c).mean():.3f}")
    for how in full["in_per_window"]:
        saved = 1 - compact["in_per_window"][how] / full["in_per_window"][how]
        out = 1 - compact["out_per_position"][how] / full["out_per_position"][how]
        print(f"compact saves, {how}: {100 * saved:.1f}% of input tokens, {100 * out:.1f}% of output tokens")
    print(f"\nwall {time.perf_counter() - started:.1f} s; load average before {load_before[0]:.2f}, "
          f"after {load_after[0]:.2f}")


if __name__ == "__main__":
    main()
