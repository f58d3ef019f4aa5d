"""Build time and size of ``autointerp report``: wall time, CPU time (this process and its workers) and bytes.

    python benchmarks/bench_report.py --db autointerp.db [--layer L] [--jobs N] [--out /tmp/bench-report]

CPU seconds are printed beside the wall time because on a shared machine the wall time measures the other jobs as
much as this one; CPU time per unit is what a quiet machine's wall time approaches, divided by the workers.
"""

from __future__ import annotations

import argparse
import resource
import time

from autointerp.report import Filters, build_site


def cpu_s() -> float:
    self, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return self.ru_utime + self.ru_stime + children.ru_utime + children.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", required=True)
    ap.add_argument("--layer", type=int)
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--out", default="/tmp/bench-report")
    args = ap.parse_args()
    c0, t0 = cpu_s(), time.time()
    r = build_site(args.db, args.out, Filters(layer=args.layer), jobs=args.jobs)
    wall, cpu = time.time() - t0, cpu_s() - c0
    print(f"{r.units:,} units, {r.layers} layer pages, {r.pages:,} pages, {r.bytes / 1e6:,.1f} MB "
          f"({r.bytes / max(r.units, 1) / 1e3:,.0f} kB per unit page on average)")
    print(f"wall {wall:.1f} s with {args.jobs} worker(s); CPU {cpu:.1f} s = {1000 * cpu / max(r.units, 1):.0f} ms "
          f"per unit; {time.strftime('%H:%M')} load average {open('/proc/loadavg').read().split()[0]}")


if __name__ == "__main__":
    main()
