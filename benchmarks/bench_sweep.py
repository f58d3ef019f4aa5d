"""Capture reuse: two jobs on the same layer with different explainers, as one sweep against two separate runs.

    python benchmarks/bench_sweep.py [--tokens 20000] [--units 0:32] [--layer 8] [--rounds 2]

The explainers are the offline baseline and an LLM explainer (revise_rounds 0, no tools) talking to the project's
local OpenAI-compatible test server (``autointerp.testing.server``), started here on 127.0.0.1. "separate" is two
``autointerp run`` commands (one per explainer), "sweep" one ``autointerp sweep run`` of a two-job plan; each mode
in fresh databases, in fresh processes, timed end to end (start-up and model load included, as a user waits for
them); the modes alternate, ``--rounds`` times. The sweep captures the layer once, the separate runs twice.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from commands import autointerp  # noqa: E402

from autointerp.testing.server import FakeOpenAIServer  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=20000)
    ap.add_argument("--units", default="0:32")
    ap.add_argument("--layer", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    os.environ["FAKE_KEY"] = "not-a-real-key"
    times: dict[str, list[float]] = {"separate": [], "sweep": []}
    with FakeOpenAIServer() as server, tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        Path("autointerp.toml").write_text(
            f'[models.local]\nmodel = "fake-model"\nbase_url = "{server.base_url}"\napi_key_env = "FAKE_KEY"\n')
        common = ["--layer", str(args.layer), "--tokens", str(args.tokens), "--units", args.units,
                  "--revise-rounds", "0", "--max-tool-calls", "0"]
        for k in range(args.rounds):
            for mode in ("separate", "sweep") if k % 2 == 0 else ("sweep", "separate"):
                db = f"{mode}{k}.db"
                t0 = time.time()
                if mode == "separate":
                    for explainer in ("baseline", "local"):
                        autointerp("run", *common, "--explainer", explainer, "--db", db, "--format", "json")
                else:
                    Path("plan.toml").write_text(
                        f'[defaults]\ntokens = {args.tokens}\nunits = "{args.units}"\nrevise_rounds = 0\n'
                        f'max_tool_calls = 0\ndb = "{db}"\n[jobs.baseline]\nlayers = "{args.layer}"\n'
                        f'[jobs.llm]\nlayers = "{args.layer}"\nexplainer = "local"\n')
                    result = json.loads(autointerp("sweep", "run", "plan.toml", "--format", "json"))
                    assert result["status"] == "done" and result["captures"] == 1, result
                times[mode].append(time.time() - t0)
                n = sqlite3.connect(db).execute("SELECT COUNT(*) FROM explanations").fetchone()[0]
                print(f"round {k} {mode:8s} {times[mode][-1]:7.1f} s  {n} explanations", flush=True)
    sep, swp = statistics.median(times["separate"]), statistics.median(times["sweep"])
    print(f"median: separate {sep:.1f} s, sweep {swp:.1f} s; sweep / separate = {swp / sep:.2f}")


if __name__ == "__main__":
    main()
