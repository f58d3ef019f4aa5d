"""What reading a simulator reply with logprobs costs the client: the same reply as a stream's events and as one body,
in the JSON layouts servers write, parsed with and without removing the per-token ``bytes`` arrays first.

    python benchmarks/bench_parse.py                 # 10 windows of 64 tokens, 15 alternatives a token
    python benchmarks/bench_parse.py --rounds 100

The reply is the test server's answer to a real simulation request (``autointerp.testing.server.default_handler``),
encoded by its encoder (``autointerp.testing.replies``) with as many alternatives per generated token as asked, as
OpenAI, vLLM and llama.cpp send. Each variant is timed once per round, the variants taking turns: the parse, and
the collection of the youngest generation that its new objects trigger at the next allocation (``wire.loads`` pauses
the collector during the parse; the objects are counted all the same); the median and the fastest round are
printed. What llm/wire.py does with each layout is the
faster line for each layout (``wire.strip_bytes_fields``): events and bodies written without spaces or with
json.dumps's spaces lose the fields before the parse (a pattern that starts with a literal), indented JSON is parsed
as it is. The load average before and after is printed: figures taken with other work on the machine are not
comparable.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import re
import statistics
import time

import orjson

from autointerp.llm.wire import loads, parse_body, strip_bytes_fields
from autointerp.scoring.llm_simulator import simulation_messages
from autointerp.testing.replies import completion_dict, stream_chunks
from autointerp.testing.server import default_handler

# The general pass that removes the fields in any layout (spaces, newlines): what whole bodies used to go through.
ANY_LAYOUT = re.compile(r',\s*"bytes"\s*:\s*(?:\[[\d,\s]*\]|null)')
ANY_LAYOUT_B = re.compile(ANY_LAYOUT.pattern.encode())


def reply_layouts(windows: int, tokens: int, top: int) -> dict[str, bytes | str]:
    words = "the cat sat on a mat and then def foo ( x ) : return x + 1".split()
    shown = [[words[(i * 7 + j) % len(words)] + ("" if j % 3 else " ") for j in range(tokens)] for i in range(windows)]
    request = {"model": "m", "messages": simulation_messages('Fires on the token "cat".', shown), "logprobs": True,
               "top_logprobs": top}
    body = completion_dict(default_handler(request), request)
    events = b"".join(b"data: " + orjson.dumps(c) + b"\n\n" for c in stream_chunks(body, include_usage=True))
    return {"events": events + b"data: [DONE]\n\n", "body": json.dumps(body, separators=(",", ":")),
            "body, spaced": json.dumps(body), "body, indented": json.dumps(body, indent=2)}


def event_array(events: bytes) -> bytes:
    """The events' payloads as one JSON array (as ``EventReader`` joins them)."""
    return b"[" + events[6:-16].replace(b"\n\ndata: ", b",") + b"]"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--windows", type=int, default=10)
    ap.add_argument("--tokens", type=int, default=64, help="tokens per window")
    ap.add_argument("--top-logprobs", type=int, default=15)
    ap.add_argument("--rounds", type=int, default=60)
    args = ap.parse_args()
    load_before = os.getloadavg()
    layouts = reply_layouts(args.windows, args.tokens, args.top_logprobs)
    events = layouts["events"]
    variants = {
        "events, as the client reads them": lambda: loads(event_array(strip_bytes_fields(events))),
        "events, bytes removed (any layout)": lambda: loads(event_array(ANY_LAYOUT_B.sub(b"", events))),
        "events, bytes parsed": lambda: loads(event_array(events)),
    }
    for name in ("body", "body, spaced", "body, indented"):
        text = layouts[name]
        variants[f"{name}, bytes removed (any layout)"] = lambda text=text: loads(ANY_LAYOUT.sub("", text))
        variants[f"{name}, as the client reads it"] = lambda text=text: parse_body(text)
        variants[f"{name}, bytes parsed"] = lambda text=text: loads(text)
    times: dict[str, list[float]] = {name: [] for name in variants}
    gc.freeze()  # as the run sets the collector for its explain + score phase (autointerp/pipeline/run.py)
    gc.set_threshold(max(gc.get_threshold()[0], 14_000), *gc.get_threshold()[1:])
    for _ in range(args.rounds):
        for name, parse in variants.items():
            gc.collect()
            started = time.perf_counter()
            parsed = parse()
            gc.collect(0)  # the collection the parse's new objects trigger at the next allocation
            times[name].append((time.perf_counter() - started) * 1000)
            del parsed
    load_after = os.getloadavg()
    print(f"load average before: {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}")
    print(f"one simulator reply: {args.windows} windows of {args.tokens} tokens, {args.top_logprobs} alternatives a "
          f"token; events {len(events):,} bytes, body {len(layouts['body']):,} characters "
          f"(spaced {len(layouts['body, spaced']):,}, indented {len(layouts['body, indented']):,})")
    for name, ms in times.items():
        print(f"{name:50s} median {statistics.median(ms):6.1f} ms, fastest {min(ms):6.1f} ms ({args.rounds} rounds)")
    print(f"load average after: {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}")


if __name__ == "__main__":
    main()
