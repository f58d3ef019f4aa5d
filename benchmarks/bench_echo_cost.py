"""What echoing a prompt with logprobs costs on llama-cpp-python's server, against reading the same prompt plainly.

    SMOL_GGUF=/models/SmolLM2-135M-Instruct.Q4_1.gguf python benchmarks/bench_echo_cost.py --n-ctx 2048

Starts the server (``autointerp.llm.llamacpp.LlamaCppServer``), then sends ``/v1/completions`` requests shaped like
the all-at-once simulator's (lines of ``token<TAB>unknown``) at three prompt lengths, each once plainly (no echo, no
logprobs) and once with ``echo`` and ``logprobs = 5``, and prints the wall time per prompt token of each. The
difference is llama-cpp-python's Python loop over the echoed positions (for each one it sorts the whole vocabulary
to pick the top alternatives), not the model: it decides how many windows a CPU server can simulate per minute.
Run it alone on the machine; the two modes alternate at each length.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.request

from autointerp.llm.llamacpp import LlamaCppServer


def post(url: str, body: dict) -> tuple[dict, float]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=3600) as response:
        reply = json.load(response)
    return reply, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gguf", default=os.environ.get("SMOL_GGUF", ""), help="the GGUF file (or SMOL_GGUF)")
    parser.add_argument("--n-ctx", type=int, default=2048)
    parser.add_argument("--lines", default="12,50,150", help="prompt lengths, in token lines")
    args = parser.parse_args()
    if not os.path.isfile(args.gguf):
        sys.exit("error: pass --gguf FILE or set SMOL_GGUF to a GGUF file (docs/llm-servers.md)")
    with LlamaCppServer(args.gguf, n_ctx=args.n_ctx) as server:
        url = server.base_url + "/completions"
        print(f"{'prompt tokens':>13} {'plain ms/token':>15} {'echo+logprobs ms/token':>23} {'ratio':>6}")
        for lines in (int(n) for n in args.lines.split(",")):
            prompt = "".join(f" w{i}\tunknown\n" for i in range(lines))
            per_token = {}
            for echo in (False, True):
                body = {"model": "m", "prompt": prompt, "max_tokens": 1, "echo": echo}
                if echo:
                    body["logprobs"] = 5
                reply, seconds = post(url, body)
                n = reply["usage"]["prompt_tokens"]
                per_token[echo] = 1000 * seconds / n
            print(f"{n:>13} {per_token[False]:>15.1f} {per_token[True]:>23.1f} {per_token[True] / per_token[False]:>6.1f}")


if __name__ == "__main__":
    main()
