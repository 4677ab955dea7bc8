"""Boundary bench: one Boundary pass over METRICS rules-matched metrics, in memory.

Every metric is matched by one of three rules (a third each: less_than, greater_than with a
moving mean of 5 points, detect_drop_off_cliff with MIN_AVERAGE), and the series lie end to end
in one flat buffer, as the store's FlatReader gives them. Measured, on one core:

- match: the rules matched against every name (done once per new set of names; the service
  keeps the result while the metric index is unchanged);
- pass: Checker.run (wall and CPU seconds), the whole judgement (pre-checks, algorithms, consecutive detections,
  incidents, events) over every check, median of --passes runs each with one new point per
  metric (the first run, which also creates every check's state, is reported apart).

- live (--live N, default 10,000; 0: skip): the boundary component's whole run
  (Boundary.run_once: list the index, match, read the matched series from a real embedded
  Redis through the flat reader, judge, publish, save state), N metrics of --live-points
  points, median of --passes runs each after one new point per metric.

    .venv/bin/python bench/boundary.py                       # 100k metrics x 1440 points
    .venv/bin/python bench/boundary.py --metrics 10000 --points 360 --live 0

Human lines go to stdout, progress to stderr; the last stdout line is JSON with `metrics` and
`pass_s`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from skyline.analysis.boundary import BoundaryParams, BoundaryRules, Checker
from skyline.settings.boundary import BoundaryRule

STEP = 60.0
T0 = 1_700_000_000.0


def progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--metrics", type=int, default=100_000)
    ap.add_argument("--points", type=int, default=1440)
    ap.add_argument("--passes", type=int, default=5)
    ap.add_argument("--live", type=int, default=10_000)
    ap.add_argument("--live-points", type=int, default=1440)
    args = ap.parse_args()
    n, p = args.metrics, args.points
    rng = np.random.default_rng(0)
    names = [f"bench.{('low', 'high', 'cliff')[i % 3]}.m{i}" for i in range(n)]
    rules = BoundaryRules([
        BoundaryRule(pattern="bench.low.*", algorithm="less_than", trigger_value=60,
                     alert_threshold=3),
        BoundaryRule(pattern="bench.high.*", algorithm="greater_than", trigger_value=140,
                     alert_threshold=2, smooth="mean", smooth_points=5),
        BoundaryRule(pattern="bench.cliff.*", algorithm="detect_drop_off_cliff",
                     min_average=10, min_average_seconds=3600, alert_threshold=2),
    ])
    progress(f"building {n} x {p} series")
    level = rng.uniform(80, 120, (n, 1))
    v = level + rng.standard_normal((n, p)) * 5
    v[rng.random(n) < 0.01, -1] = 0.0  # 1 % break their rule (or fall off a cliff)
    t = np.broadcast_to(T0 + STEP * np.arange(p), (n, p)).copy()
    counts = np.full(n, p, dtype=np.int64)
    flat_t, flat_v = t.ravel(), v.ravel()

    t0 = time.perf_counter()
    checks = rules.match(names)
    match_s = time.perf_counter() - t0
    print(f"match: {len(checks)} checks of {n} names by {len(rules.rules)} rules in "
          f"{match_s:.3f} s")

    checker = Checker(rules, BoundaryParams(min_tolerable_length=100, stale_period=0))
    t0 = time.perf_counter()
    first = checker.run(checks, flat_t, flat_v, counts, now=float(flat_t[-1]))
    first_s = time.perf_counter() - t0
    print(f"first pass (creates the state of every check): {first_s:.3f} s, "
          f"{first.stats.judged} judged, {first.stats.detections} detections")
    times = []
    cpu = []
    events = 0
    for k in range(1, args.passes + 1):
        flat_t += STEP  # one new point per metric: the same shape, later
        t0, c0 = time.perf_counter(), time.process_time()
        r = checker.run(checks, flat_t, flat_v, counts, now=float(flat_t[-1]))
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        events += len(r.events)
        progress(f"pass {k}: {times[-1]:.3f} s, {r.stats.judged} judged, "
                 f"{len(r.events)} events")
    pass_s = float(np.median(times))
    pass_cpu_s = float(np.median(cpu))
    print(f"pass: median {pass_s:.3f} s wall, {pass_cpu_s:.3f} s CPU over {len(times)} passes "
          f"({n / pass_s:,.0f} metrics/s); load average {os.getloadavg()[0]:.2f} on "
          f"{os.cpu_count()} cores (a loaded machine shows in wall time, not CPU time)")
    del flat_t, flat_v, t, v
    live = live_runs(args.live, args.live_points, args.passes, rules) if args.live else {}
    print(json.dumps({"bench": "boundary", "metrics": n, "points": p, "checks": len(checks),
                      "match_s": round(match_s, 3), "first_pass_s": round(first_s, 3),
                      "pass_s": round(pass_s, 3), "pass_cpu_s": round(pass_cpu_s, 3),
                      "events": events, **live,
                      "load": round(os.getloadavg()[0], 2)}))


def live_runs(n: int, p: int, passes: int, rules: BoundaryRules) -> dict[str, float]:
    """The component's run over n metrics stored in a real embedded Redis."""
    from skyline.services.boundary import Boundary
    from skyline.settings import load_settings
    from skyline.store import keys
    from skyline.store.hotstore import HotStore
    from skyline.store.redis_client import redis_session

    data = Path(tempfile.mkdtemp(prefix="skyline-bench-boundary-"))
    try:
        settings = load_settings(DATA_DIR=data, REDIS_URL=None, LOG_LEVEL="WARNING",
                                 STALE_PERIOD=0, BOUNDARY_METRICS=rules.rules,
                                 redis={"anomaly_stream_maxlen": 1000})
        with redis_session(settings) as h:
            client = h.client
            client.config_set("appendonly", "no")
            client.config_set("save", "")
            client.flushdb()
            rng = np.random.default_rng(1)
            names = [f"bench.{('low', 'high', 'cliff')[i % 3]}.m{i}" for i in range(n)]
            end = time.time() - STEP
            pts = np.empty(p, dtype=[("t", "<f8"), ("v", "<f8")])
            pts["t"] = end - STEP * np.arange(p)[::-1]
            progress(f"live: loading {n:,} x {p} into the embedded Redis")
            for lo in range(0, n, 1000):
                pipe = client.pipeline(transaction=False)
                for name in names[lo:lo + 1000]:
                    pts["v"] = rng.uniform(80, 120) + rng.standard_normal(p) * 5
                    pipe.set(keys.series(name), pts.tobytes())
                pipe.sadd(keys.METRIC_INDEX, *names[lo:lo + 1000])
                pipe.execute()
            b = Boundary(settings, client)
            t0 = time.perf_counter()
            b.run_once(now=end + 1)
            first = time.perf_counter() - t0
            store, times, cpu = HotStore(client), [], []
            for k in range(1, passes + 1):
                vals = rng.uniform(80, 120, n)
                vals[rng.random(n) < 0.01] = 0.0
                store.append(names, np.full(n, end + k * STEP), vals)
                t0, c0 = time.perf_counter(), time.process_time()
                b.run_once(now=end + k * STEP + 1)
                times.append(time.perf_counter() - t0)
                cpu.append(time.process_time() - c0)
        run_s, run_cpu = float(np.median(times)), float(np.median(cpu))
        print(f"live: {n:,} metrics x {p} points in a real Redis: first run {first:.3f} s, "
              f"then median {run_s:.3f} s wall, {run_cpu:.3f} s CPU of this process per run "
              f"(list, match, read, judge, publish, save state)")
        return {"live_metrics": n, "live_points": p, "live_first_s": round(first, 3),
                "live_run_s": round(run_s, 3), "live_run_cpu_s": round(run_cpu, 3)}
    finally:
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
