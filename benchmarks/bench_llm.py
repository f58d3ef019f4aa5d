"""LLM throughput benchmark: explain + score 64 units against a server that answers every request after 200 ms.

    python benchmarks/bench_llm.py                       # concurrency 1 vs 16, 64 units of the bundled model
    python benchmarks/bench_llm.py --units 0:32 --latency 0.5

Runs the real command, ``autointerp run`` with an LLM explainer and an LLM simulator (one profile, pointing at a local
OpenAI-compatible server started here on 127.0.0.1, through the real ``openai`` client). "Concurrency N" sets both
knobs to N: units in flight (``--concurrency N``) and requests in flight (the profile's ``concurrency = N``). It runs
N = 1 (one request at a time), N = 16, and, to show what each knob does, 1 unit in flight with 16 requests allowed
(a unit's simulation requests then overlap). Revision, tools and the controls are off (``--revise-rounds 0
--max-tool-calls 0 --no-controls``): explain + score, the path whose call count is bounded at 4 per unit.
The time compared is the explain + score phase (``explain_s`` in the run's JSON summary: every unit's LLM work, after
the subject is loaded and the corpus captured).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from autointerp.testing.server import FakeOpenAIServer


def run(workdir: Path, server: FakeOpenAIServer, args, concurrency: int, requests: int) -> dict:
    (workdir / "autointerp.toml").write_text(
        f'[models.local]\nmodel = "fake-model"\nbase_url = "{server.base_url}"\nconcurrency = {requests}\n'
    )
    db = workdir / f"c{concurrency}-r{requests}.db"
    cmd = [sys.executable, "-m", "autointerp.cli", "run", "--layer", str(args.layer), "--units", args.units,
           "--tokens", str(args.tokens), "--explainer", "local", "--simulator", "local", "--revise-rounds", "0",
           "--max-tool-calls", "0", "--no-controls", "--concurrency", str(concurrency), "--db", str(db),
           "--format", "json"]
    before = len(server.requests)
    done = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if done.returncode:
        sys.exit(f"run failed ({done.returncode}):\n{done.stderr}")
    summary = json.loads(done.stdout)
    units = summary["units_done"]
    calls = len(server.requests) - before
    phase = summary["explain_s"]
    return {"concurrency": concurrency, "requests": requests, "units": units, "calls": calls, "calls_per_unit": calls / units,
            "explain_score_s": round(phase, 2), "wall_s": summary["wall_s"],
            "statuses": sorted({u["status"] for u in summary["units"]})}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--layer", type=int, default=13)
    ap.add_argument("--units", default="0:64")
    ap.add_argument("--tokens", type=int, default=50_000, help="capture size (kept small: not what is measured)")
    ap.add_argument("--latency", type=float, default=0.2, help="seconds the server waits before every answer")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp, FakeOpenAIServer(latency_s=args.latency) as server:
        one, mixed, sixteen = (run(Path(tmp), server, args, c, r) for c, r in ((1, 1), (1, 16), (16, 16)))
    for r in (one, mixed, sixteen):
        print(f"{r['concurrency']:>2} units / {r['requests']:>2} requests in flight: {r['units']} units, {r['calls']} LLM "
              f"calls ({r['calls_per_unit']:.2f} per unit), explain+score {r['explain_score_s']:.2f} s, "
              f"statuses {r['statuses']}")
    latency = f"server latency {args.latency * 1000:.0f} ms per request"
    print(f"speed-up at concurrency 16 over 1: {one['explain_score_s'] / sixteen['explain_score_s']:.1f}x ({latency})")
    print(f"speed-up of 16 units over 1 unit in flight, 16 requests allowed in both: "
          f"{mixed['explain_score_s'] / sixteen['explain_score_s']:.1f}x")


if __name__ == "__main__":
    main()
