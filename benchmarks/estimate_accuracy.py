"""How close the LLM estimate printed before a run is to what the run then spends, against the local test server.

    python benchmarks/estimate_accuracy.py                      # 8 units of the bundled model, layer 1
    python benchmarks/estimate_accuracy.py --units 0:16 --tokens 40000

Runs the real command, ``autointerp run`` with an LLM explainer (tools and one revision, the defaults) and an LLM
simulator, both one profile on a local OpenAI-compatible server started here (``FakeOpenAIServer``). The server
answers like an agent that uses its tools: the first turn of a conversation calls ``statistics`` and ``run_text``,
then it answers (its default handler: an explanation of the top token; the simulation of a prompt). Prints the
estimate (``llm_estimate`` in the run's JSON summary) beside the actual calls and tokens (the run's ``llm_calls``
rows; the server counts prompt tokens as characters / 4, as the estimate does without a tiktoken file) and the
ratio estimate / actual.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import tempfile
from pathlib import Path

from autointerp.testing.server import FakeOpenAIServer, Reply, default_handler

sys.path.insert(0, str(Path(__file__).parent))
from commands import autointerp  # noqa: E402


def agent(request: dict) -> Reply:
    """Call two tools on the first turn of each conversation that offers them, then answer."""
    if request.get("tools") and request.get("tool_choice") != "none" and \
            not any(m.get("role") == "tool" for m in request["messages"]):
        return Reply(tool_calls=[("statistics", {}), ("run_text", {"text": "def area(self):\n    return self.w"})])
    return default_handler(request)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layer", type=int, default=1)
    parser.add_argument("--units", default="0:8")
    parser.add_argument("--tokens", type=int, default=20_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, FakeOpenAIServer(agent) as server:
        work = Path(tmp)
        (work / "autointerp.toml").write_text(
            f'[models.local]\nmodel = "fake-model"\nbase_url = "{server.base_url}"\n'
            "price_in_per_mtok = 1.0\nprice_out_per_mtok = 2.0\n")
        import os
        os.chdir(work)
        out = autointerp("run", "--layer", str(args.layer), "--units", args.units, "--tokens", str(args.tokens),
                         "--explainer", "local", "--simulator", "local", "--db", str(work / "a.db"), "--format", "json")
        summary = json.loads(out)
        with sqlite3.connect(work / "a.db") as db:
            calls, tokens_in, tokens_out = db.execute(
                "SELECT COUNT(*), SUM(tokens_in), SUM(tokens_out) FROM llm_calls WHERE run_id = ?",
                [summary["run_id"]]).fetchone()
            by_purpose = db.execute("SELECT purpose, COUNT(*), SUM(tokens_in), SUM(tokens_out) FROM llm_calls "
                                    "WHERE run_id = ? GROUP BY purpose ORDER BY purpose", [summary["run_id"]]).fetchall()
    est = summary["llm_estimate"]
    print(f"autointerp run --layer {args.layer} --units {args.units} --tokens {args.tokens} "
          f"--explainer local --simulator local (tools, 1 revision, controls), test server")
    print(f"{'':12}{'estimate':>12}{'actual':>12}{'est/actual':>12}")
    for name, e, a in (("calls", est["calls"], calls), ("tokens in", est["tokens_in"], tokens_in),
                       ("tokens out", est["tokens_out"], tokens_out),
                       ("tokens", est["tokens_in"] + est["tokens_out"], tokens_in + tokens_out)):
        print(f"{name:12}{e:>12,}{a:>12,}{e / a:>12.2f}")
    print("actual by purpose (calls, tokens in, tokens out):",
          ", ".join(f"{p} {n}/{i:,}/{o:,}" for p, n, i, o in by_purpose))


if __name__ == "__main__":
    main()
