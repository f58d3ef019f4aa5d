"""What a real local LLM explainer and simulator do, measured: the baseline against SmolLM2-135M-Instruct served by
llama.cpp (llama-cpp-python), with each simulator method, on the same units of the bundled model.

    SMOL_GGUF=/models/SmolLM2-135M-Instruct.Q4_1.gguf python benchmarks/bench_real_llm.py --units 0:16

Part 1 runs ``autointerp run`` (a subprocess, as a user would) once per mode on the same layer, units and windows:
``baseline`` (baseline explainer and simulator), ``smol/all_at_once`` and ``smol/generate`` (SmolLM2 explains and
simulates, tools off: its chat format has none), each into its own database, modes one after the other; it prints
mean score with a 95% interval (percentile bootstrap over units with a defined score), units done / gave up / failed, and per unit the
wall time, LLM calls and tokens. Part 2 takes the baseline's explanations and simulates the same test windows with
both methods, alternating which goes first unit by unit: the agreement of their predictions (pooled Pearson r
between the two, per unit then averaged), and per unit the calls, tokens and wall time of each.

It starts the server itself (``autointerp.llm.llamacpp.LlamaCppServer``, n_ctx 4096) and needs nothing else. On two
shared CPU cores, expect minutes per unit at the default windows; ``--window``, ``--top-k`` and ``--n-random`` make
the work smaller (the figures in BENCHMARKS.md say which were used).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from commands import autointerp  # noqa: E402

from autointerp.db.views import bootstrap_ci  # noqa: E402
from autointerp.llm import LLMClient, ModelProfile  # noqa: E402
from autointerp.llm.llamacpp import LlamaCppServer  # noqa: E402
from autointerp.scoring.echo_simulator import EchoSimulator  # noqa: E402
from autointerp.scoring.llm_simulator import LLMSimulator  # noqa: E402
from autointerp.scoring.score import pooled_correlation  # noqa: E402

def interval(values: list[float]) -> str:
    """Mean with its 95% percentile-bootstrap interval, as the leaderboard computes it (``db.views.bootstrap_ci``)."""
    if len(values) < 2:
        return f"{values[0]:.3f}" if values else "n/a"
    low, high = bootstrap_ci(np.asarray(values, dtype=float))
    return f"{statistics.fmean(values):.3f} [{low:.3f}, {high:.3f}]"


def profile_toml(base_url: str, controls: bool, response_format: str) -> str:
    common = (f'model = "smol"\nbase_url = "{base_url}"\nsupports_tools = false\nconcurrency = 1\n'
              f'response_format = "{response_format}"\n')
    return (f"controls = {str(controls).lower()}\n\n[models.smol]\n{common}simulator_method = \"all_at_once\"\n\n"
            f'[models.smol_generate]\n{common}simulator_method = "generate"\n')


def run_mode(work: Path, args, explainer: str, simulator: str, name: str) -> dict:
    db = work / f"{name.replace('/', '_')}.db"
    started = time.monotonic()
    out = autointerp("run", "--layer", str(args.layer), "--units", args.units, "--explainer", explainer,
                     "--simulator", simulator, "--tokens", str(args.tokens), "--window", str(args.window),
                     "--top-k", str(args.top_k), "--n-random", str(args.n_random), "--db", str(db),
                     "--revise-rounds", str(args.revise_rounds),
                     "--config", str(work / "autointerp.toml"), "--format", "json")
    wall = time.monotonic() - started
    summary = json.loads(out)
    with sqlite3.connect(db) as con:
        calls = con.execute("select purpose, count(*), sum(tokens_in), sum(tokens_out), sum(error is not null) "
                            "from llm_calls group by purpose").fetchall()
        reasons = con.execute("select status, reason from unit_runs where status != 'done'").fetchall()
    units = summary["units"]
    n = len(units)
    scores = [u["score"] for u in units if u["score"] is not None]
    by_purpose = {p: {"calls": c, "tokens_in": ti or 0, "tokens_out": to or 0, "errors": e} for p, c, ti, to, e in calls}
    return {"mode": name, "db": str(db), "units": n, "scores": scores, "wall_s": wall,
            "explain_s": summary["explain_s"], "status": [u["status"] for u in units], "not_done": reasons,
            "by_purpose": by_purpose}


def print_modes(results: list[dict]) -> None:
    print(f"\n{'mode':<18} {'units':>5} {'done/gave_up/failed':>20} {'mean score [95% CI]':>28} "
          f"{'s/unit':>7} {'calls/unit':>10} {'tok in/unit':>11} {'tok out/unit':>12} {'sim calls/unit':>14} "
          f"{'sim out/unit':>12}")
    for r in results:
        n = r["units"] or 1
        allp = r["by_purpose"].values()
        calls, tin, tout = (sum(p[k] for p in allp) for k in ("calls", "tokens_in", "tokens_out"))
        sim = r["by_purpose"].get("simulate", {"calls": 0, "tokens_out": 0})
        counts = "/".join(str(r["status"].count(s)) for s in ("done", "gave_up", "failed"))
        print(f"{r['mode']:<18} {r['units']:>5} {counts:>20} {interval(r['scores']):>28} {r['explain_s'] / n:>7.1f} "
              f"{calls / n:>10.1f} {tin / n:>11.0f} {tout / n:>12.0f} {sim['calls'] / n:>14.2f} "
              f"{sim['tokens_out'] / n:>12.1f}")
        for status, reason in r["not_done"]:
            print(f"    {status}: {reason}")


def compare_methods(baseline_db: str, base_url: str, windows_per_request: int) -> None:
    with sqlite3.connect(baseline_db) as con:
        rows = con.execute(
            "select u.unit, e.text, w.tokens, w.activations from explanations e "
            "join units u on u.id = e.unit_id join windows w on w.unit_id = e.unit_id and w.run_id = e.run_id "
            "where w.split = 'test' and e.role = 'explanation' order by u.unit, w.source, w.rank").fetchall()
    units: dict[int, tuple[str, list, list]] = {}
    for unit, text, tokens, acts in rows:
        entry = units.setdefault(unit, (text, [], []))
        entry[1].append(json.loads(tokens))
        entry[2].append(json.loads(acts))

    async def go():
        stats = {m: {"calls": 0, "tokens_in": 0, "tokens_out": 0, "wall_s": 0.0, "scores": []}
                 for m in ("all_at_once", "generate")}
        agreement = []
        for i, (unit, (text, windows, truth)) in enumerate(sorted(units.items())):
            predictions = {}
            order = ["all_at_once", "generate"] if i % 2 == 0 else ["generate", "all_at_once"]
            for method in order:
                profile = ModelProfile(model="smol", base_url=base_url, concurrency=1, simulator_method=method)
                async with LLMClient(profile, f"smol-{method}") as client:
                    cls = EchoSimulator if method == "all_at_once" else LLMSimulator
                    simulator = cls(client, profile, windows_per_request=windows_per_request)
                    if method == "all_at_once":
                        await simulator.probe()  # once per simulator, not part of a unit's cost
                        client.totals.calls = client.totals.tokens_in = client.totals.tokens_out = 0
                    started = time.monotonic()
                    result = await simulator.simulate(text, windows)
                    s = stats[method]
                    s["wall_s"] += time.monotonic() - started
                    s["calls"] += client.totals.calls
                    s["tokens_in"] += client.totals.tokens_in
                    s["tokens_out"] += client.totals.tokens_out
                    ok = [k for k, p in enumerate(result.predictions) if p is not None]
                    predictions[method] = (ok, result.predictions)
                    score = pooled_correlation([truth[k] for k in ok], [result.predictions[k] for k in ok])
                    if score is not None:
                        s["scores"].append(score)
            both = sorted(set(predictions["all_at_once"][0]) & set(predictions["generate"][0]))
            r = pooled_correlation([predictions["all_at_once"][1][k] for k in both],
                                   [predictions["generate"][1][k] for k in both]) if both else None
            if r is not None:
                agreement.append(r)
        return stats, agreement

    stats, agreement = asyncio.run(go())
    n = len(units) or 1
    print(f"\nthe same {len(units)} units and baseline explanations, simulated by both methods (alternating order):")
    print(f"{'method':<12} {'score vs truth [95% CI]':>28} {'calls/unit':>10} {'tok in/unit':>11} "
          f"{'tok out/unit':>12} {'s/unit':>7}")
    for method, s in stats.items():
        print(f"{method:<12} {interval(s['scores']):>28} {s['calls'] / n:>10.2f} {s['tokens_in'] / n:>11.0f} "
              f"{s['tokens_out'] / n:>12.1f} {s['wall_s'] / n:>7.1f}")
    print(f"agreement between the methods' predictions (pooled r per unit, {len(agreement)} units with both "
          f"defined): {interval(agreement)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gguf", default=os.environ.get("SMOL_GGUF"), help="SmolLM2-135M-Instruct GGUF file")
    parser.add_argument("--layer", type=int, default=13)
    parser.add_argument("--units", default="0:16")
    parser.add_argument("--tokens", type=int, default=100_000)
    parser.add_argument("--window", type=int, default=64)
    parser.add_argument("--top-k", type=int, default=30)
    parser.add_argument("--n-random", type=int, default=20)
    parser.add_argument("--windows-per-request", type=int, default=10)
    parser.add_argument("--revise-rounds", type=int, default=1)
    parser.add_argument("--no-controls", action="store_true", help="skip the shuffled and empty controls (each "
                        "triples a unit's simulations)")
    parser.add_argument("--response-format", default="json_object", choices=["none", "json_object"],
                        help="the explainer's answer held to JSON by the server (the README's profile), or free text")
    parser.add_argument("--modes", default="baseline,smol/all_at_once,smol/generate,compare")
    args = parser.parse_args()
    if not args.gguf or not Path(args.gguf).is_file():
        sys.exit("pass --gguf or set SMOL_GGUF to SmolLM2-135M-Instruct.Q4_1.gguf (docs/llm-servers.md)")
    modes = args.modes.split(",")
    work = Path(tempfile.mkdtemp(prefix="bench-real-llm-"))
    with LlamaCppServer(args.gguf, n_ctx=4096) as server:
        (work / "autointerp.toml").write_text(profile_toml(server.base_url, not args.no_controls, args.response_format))
        print(f"server: {' '.join(server.command)}\nwork: {work}")
        results = []
        plan = {"baseline": ("baseline", "baseline"), "smol/all_at_once": ("smol", "smol"),
                "smol/generate": ("smol_generate", "smol_generate")}
        for mode in modes:
            if mode in plan:
                results.append(run_mode(work, args, *plan[mode], mode))
                print_modes(results[-1:])
        if len(results) > 1:
            print("\nall modes:")
            print_modes(results)
        if "compare" in modes:
            baseline = next((r for r in results if r["mode"] == "baseline"), None)
            if baseline is None:
                baseline = run_mode(work, args, "baseline", "baseline", "baseline")
            compare_methods(baseline["db"], server.base_url, args.windows_per_request)


if __name__ == "__main__":
    main()
