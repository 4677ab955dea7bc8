"""On-call bench: what the overview's "broken now" part costs over many metrics.

Stores METRICS series of POINTS points each (60 s apart) in an embedded Redis, a tenth of
them stopped two hours ago (a source per 50 metrics, so a few sources stopped entirely),
and OPEN open incidents in the analyzer's index; then times, REPEAT times each:
- stale_sources: every name, the last point of each (the flat reader's GETRANGE of the last
  16 bytes), grouping by source: the part that grows with the metric count;
- open_incidents: one HGETALL of the index plus the acknowledgements;
- what_now: everything the part shows (health included), as /overview/now computes it.
p50 and max are printed per step; the last stdout line is JSON.

    .venv/bin/python bench/oncall.py                          # 100k metrics
    .venv/bin/python bench/oncall.py --metrics 10000 --repeat 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from skyline.analysis.emit import index_incidents
from skyline.core.events import AnomalyEvent
from skyline.runtime.context import Context
from skyline.services.webapp import oncall
from skyline.services.webapp.health import health
from skyline.settings import load_settings
from skyline.store.redis_client import redis_session


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--metrics", type=int, default=100_000)
    ap.add_argument("--points", type=int, default=10)
    ap.add_argument("--open", type=int, default=200, help="open incidents in the index")
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args()
    now = time.time()
    with tempfile.TemporaryDirectory(prefix="bench-oncall-") as tmp:
        settings = load_settings(DATA_DIR=Path(tmp) / "var", STALE_PERIOD=500)
        with redis_session(settings) as h:
            ctx = Context(settings, h)
            names = [f"host-{i // 50:05d}.cpu.m{i % 50}" for i in range(a.metrics)]
            stopped = set(range(0, a.metrics, 10)) | set(range(0, min(a.metrics, 500)))
            load = time.perf_counter()
            for start in range(0, a.metrics, 10_000):
                chunk = range(start, min(a.metrics, start + 10_000))
                ns, ts, vs = [], [], []
                for i in chunk:
                    end = now - 7200 if i in stopped else now - 30
                    t = end - 60.0 * np.arange(a.points)[::-1]
                    ns += [names[i]] * a.points
                    ts.append(t)
                    vs.append(np.full(a.points, float(i % 97)))
                ctx.store.append(ns, np.concatenate(ts), np.concatenate(vs))
            events = [AnomalyEvent.build(metric=names[i], timestamp=now - 600, value=1.0,
                                         score=0.9, source="analyzer", since=now - 600,
                                         band_low=0.0, band_high=1.0)
                      for i in range(0, a.metrics, max(1, a.metrics // a.open))][:a.open]
            index_incidents(ctx.client, events)
            print(f"loaded {a.metrics:,} metrics x {a.points} points, {len(events)} open "
                  f"incidents in {time.perf_counter() - load:.1f} s", file=sys.stderr)
            steps = {
                "stale_sources": lambda: oncall.stale_sources(ctx, time.time()),
                "open_incidents": lambda: oncall.open_incidents(ctx, [], time.time()),
                "what_now": lambda: oncall.what_now(ctx, health(ctx)),
            }
            out: dict[str, float] = {}
            found = None
            for name, fn in steps.items():
                times = []
                for _ in range(a.repeat):
                    t0 = time.perf_counter()
                    found = fn()
                    times.append(time.perf_counter() - t0)
                p50, worst = statistics.median(times), max(times)
                out[f"{name}_p50_s"] = round(p50, 4)
                out[f"{name}_max_s"] = round(worst, 4)
                print(f"{name:15s} p50 {p50 * 1000:8.1f} ms   max {worst * 1000:8.1f} ms")
            assert isinstance(found, oncall.Now)
            n_stale = sum(s.stale for s in found.stale)
            print(f"what_now found {len(found.incidents)} open incidents, {n_stale:,} stale "
                  f"metrics in {len(found.stale)} sources "
                  f"({sum(s.stopped for s in found.stale)} stopped)")
            load1 = os.getloadavg()[0]
    print(json.dumps({"bench": "oncall", "metrics": a.metrics, "open": len(events),
                      "stale": n_stale, "load1": round(load1, 1), **out}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
