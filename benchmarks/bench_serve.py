"""Load on ``autointerp serve``: requests per second and p50/p95 latency for 1, 10 and 40 concurrent readers fetching
the index, layer and unit pages, with and without an ``autointerp run`` writing to the same database meanwhile.

    python benchmarks/bench_serve.py                      # builds its own database (a baseline run of layer 13)
    python benchmarks/bench_serve.py --db results.db      # or reads a copy of yours (the writer adds a layer to it)

Everything is on this machine: the database in a temporary folder, a real uvicorn process (``autointerp serve``) on a
free 127.0.0.1 port, the readers as threads of this process, each with its own keep-alive connection. Each level
sends ``--requests`` requests (at most ``--seconds`` seconds). With a writer, each level starts once the writer has
saved its first unit; a writer that finishes is followed by one on the next layer. The load average is printed
before and after: figures from a busy machine measure the other jobs too. The target: 40 readers while a run
writes, no errors, p95 at most 1 s.
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

CLI = [sys.executable, "-m", "autointerp.cli"]


def autointerp(*args: str, quiet: bool = True) -> None:
    subprocess.run([*CLI, *args], check=True, stdout=subprocess.DEVNULL if quiet else None)


def start_server(db: Path) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen([*CLI, "serve", "--db", str(db), "--port", "0", "--host", "127.0.0.1"],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    m = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
    if not m:
        proc.kill()
        raise SystemExit(f"serve did not start: {line!r}")
    return proc, int(m[1])


def paths(db: Path) -> list[str]:
    """The pages to fetch: the index, every layer page, the unit pages (slugs as the site names neurons)."""
    conn = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)
    layers = [r[0] for r in conn.execute("SELECT DISTINCT layer FROM layer_analyses")]
    units = conn.execute("SELECT DISTINCT u.layer, u.unit FROM units u JOIN unit_stats s ON s.unit_id = u.id "
                         "WHERE u.kind = 'neuron' ORDER BY u.layer, u.unit").fetchall()
    conn.close()
    return ["/index.html", *[f"/layers/{x}.html" for x in layers], *[f"/units/{a}-{b}.html" for a, b in units]]


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) of process ``pid`` so far, from /proc (0 where there is none)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load(port: int, urls: list[str], readers: int, requests: int, seconds: float) -> dict[str, float]:
    """``readers`` threads fetch ``urls`` in turn (each starting elsewhere) until ``requests`` are done."""
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    left = [requests]
    deadline = time.monotonic() + seconds

    def reader(k: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        i = k * 7
        while time.monotonic() < deadline:
            with lock:
                if left[0] <= 0:
                    break
                left[0] -= 1
            path = urls[0] if i % 5 == 0 else urls[i % len(urls)]  # the index every fifth request
            i += 1
            t0 = time.perf_counter()
            try:
                conn.request("GET", path)
                r = conn.getresponse()
                r.read()
                ok = r.status == 200
            except (OSError, http.client.HTTPException) as e:
                ok = False
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                r = e  # type: ignore[assignment]
            dt = time.perf_counter() - t0
            with lock:
                latencies.append(dt)
                if not ok:
                    errors.append(f"{path}: {getattr(r, 'status', r)}")
        conn.close()

    t0 = time.perf_counter()
    threads = [threading.Thread(target=reader, args=(k,)) for k in range(readers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    q = statistics.quantiles(latencies, n=20) if len(latencies) >= 2 else latencies * 19
    return dict(n=len(latencies), errors=len(errors), rps=len(latencies) / wall, p50=statistics.median(latencies),
                p95=q[18], max=max(latencies), first_error=errors[0] if errors else "")


class Writer:
    """``autointerp run`` on the next layer, again and again while a level is measured."""

    def __init__(self, db: Path, layer: int, units: str, tokens: str):
        self.db, self.layer, self.units, self.tokens = db, layer, units, tokens
        self.proc: subprocess.Popen | None = None
        self.runs = 0

    def ensure(self) -> None:
        """A writer that has saved at least one unit and is still running."""
        if self.proc is None or self.proc.poll() is not None:
            self.layer += self.proc is not None
            self.proc = subprocess.Popen([*CLI, "run", "--layer", str(self.layer), "--units", self.units,
                                          "--tokens", self.tokens, "--db", str(self.db)],
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self.runs += 1
        while self.saved() == 0 and self.proc.poll() is None:
            time.sleep(0.2)

    def saved(self) -> int:
        conn = sqlite3.connect(f"{self.db.resolve().as_uri()}?mode=ro", uri=True, timeout=30)
        try:
            return conn.execute("SELECT COUNT(*) FROM unit_runs ur JOIN units u ON u.id = ur.unit_id "
                                "WHERE u.layer = ?", [self.layer]).fetchone()[0]
        finally:
            conn.close()

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.running():
            assert self.proc is not None
            self.proc.terminate()
            self.proc.wait(timeout=60)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", help="a results database to copy (default: build one with a baseline run)")
    ap.add_argument("--layer", type=int, default=13, help="layer of the database built here")
    ap.add_argument("--units", default="0:64", help="units of each run (the built one and the writer's)")
    ap.add_argument("--tokens", default="50000", help="--tokens of each run")
    ap.add_argument("--readers", default="1,10,40")
    ap.add_argument("--requests", type=int, default=400, help="requests per level")
    ap.add_argument("--seconds", type=float, default=60, help="at most this long per level")
    args = ap.parse_args()
    print(f"{time.strftime('%H:%M:%S')} load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    tmp = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    db = tmp / "results.db"
    server = writer = None
    try:
        t0 = time.time()
        if args.db:
            src = sqlite3.connect(args.db)
            dst = sqlite3.connect(db)
            src.backup(dst)
            src.close(), dst.close()
        else:
            autointerp("run", "--layer", str(args.layer), "--units", args.units, "--tokens", args.tokens,
                       "--db", str(db))
            autointerp("analyze", "--layer", str(args.layer), "--tokens", args.tokens, "--db", str(db))
        print(f"database: {db} ({db.stat().st_size / 1e6:.1f} MB, {time.time() - t0:.0f} s to make)")
        urls = paths(db)
        server, port = start_server(db)
        for u in urls:  # every page rendered once: the figures are for a server that has been up a while
            load(port, [u], 1, 1, 60)
        top_layer = max(int(u.split("/")[2].split("-")[0]) for u in urls if u.startswith("/units/"))
        writer = Writer(db, top_layer + 1, args.units, args.tokens)
        results = []
        for writing in (False, True):
            for n in (int(x) for x in args.readers.split(",")):
                if writing:
                    writer.ensure()
                c0 = cpu_s(server.pid)
                r = load(port, urls, n, args.requests, args.seconds)
                r["cpu_ms"] = 1000 * (cpu_s(server.pid) - c0) / max(r["n"], 1)
                r.update(readers=n, writing=writing, writer_ran=writing and writer.running())
                results.append(r)
                print(f"  {n:>3} readers{' + writer' if writing else ''}: {r['n']} requests, {r['errors']} errors",
                      file=sys.stderr)
        print(f"\n{len(urls)} pages (index, {sum(u.startswith('/layers/') for u in urls)} layer pages, unit pages); "
              f"writer: {writer.runs} run(s) of {args.units} units")
        print(f"{'readers':>7} {'writer':>7} {'requests':>8} {'errors':>6} {'req/s':>7} {'p50 ms':>7} {'p95 ms':>7} "
              f"{'max ms':>7} {'server CPU ms/request':>21}")
        for r in results:
            writing = ("yes" if r["writer_ran"] else "ended") if r["writing"] else "no"
            print(f"{r['readers']:>7} {writing:>7} {r['n']:>8} {r['errors']:>6} {r['rps']:>7.1f} "
                  f"{1000 * r['p50']:>7.0f} {1000 * r['p95']:>7.0f} {1000 * r['max']:>7.0f} {r['cpu_ms']:>21.1f}"
                  + (f"  first error: {r['first_error']}" if r["errors"] else ""))
    finally:
        if writer is not None:
            writer.stop()
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{time.strftime('%H:%M:%S')} load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
