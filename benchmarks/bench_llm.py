"""LLM throughput benchmark: explain + score 64 units against a server that answers every request after 200 ms.

    python benchmarks/bench_llm.py                       # concurrency 1 vs 16, 64 units of the bundled model
    python benchmarks/bench_llm.py --units 0:32 --latency 0.5

Runs the real command, ``autointerp run`` with an LLM explainer and an LLM simulator (both profiles point at a local
OpenAI-compatible server started here on 127.0.0.1, through the real ``openai`` client), once with ``--concurrency 1``
and once with ``--concurrency 16`` (units in flight; each profile allows 16 requests in flight). Revision and tools are
off (``--revise-rounds 0 --max-tool-calls 0``): explain + score, the path whose call count is bounded at 4 per unit.
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

from autointerp.llm.server import FakeOpenAIServer


def run(workdir: Path, server: FakeOpenAIServer, args, concurrency: int) -> dict:
    (workdir / "autointerp.toml").write_text(
        f'[models.local]\nmodel = "fake-model"\nbase_url = "{server.base_url}"\nconcurrency = 16\n'
    )
    db = workdir / f"c{concurrency}.db"
    cmd = [sys.executable, "-m", "autointerp.cli", "run", "--layer", str(args.layer), "--units", args.units,
           "--tokens", str(args.tokens), "--explainer", "local", "--simulator", "local", "--revise-rounds", "0",
           "--max-tool-calls", "0", "--concurrency", str(concurrency), "--db", str(db), "--format", "json"]
    before = len(server.requests)
    done = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if done.returncode:
        sys.exit(f"run failed ({done.returncode}):\n{done.stderr}")
    summary = json.loads(done.stdout)
    units = summary["units_done"]
    calls = len(server.requests) - before
    phase = summary["explain_s"]
    return {"concurrency": concurrency, "units": units, "calls": calls, "calls_per_unit": calls / units,
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
        results = [run(Path(tmp), server, args, c) for c in (1, 16)]
    for r in results:
        print(f"concurrency {r['concurrency']:>2}: {r['units']} units, {r['calls']} LLM calls "
              f"({r['calls_per_unit']:.2f} per unit), explain+score {r['explain_score_s']:.2f} s, statuses {r['statuses']}")
    print(f"speed-up at concurrency 16 over 1: {results[0]['explain_score_s'] / results[1]['explain_score_s']:.1f}x "
          f"(server latency {args.latency * 1000:.0f} ms per request)")


if __name__ == "__main__":
    main()
