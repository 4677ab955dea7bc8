"""Analyzer bench: one full analyzer pass over METRICS x POINTS series in the embedded Redis.

Series are 60 s days ending a minute ago: noise, a daily sine or a slow trend (a third each),
1 % ending in a spike. They are loaded with one SET of the whole encoded series per metric (not
METRICS x POINTS appends), into a throwaway embedded Redis whose persistence is turned off
(nothing to keep; a background save of gigabytes would only disturb the timing).

A pass is what `skyline analyze --once` does: list the index, fetch every series and its
analysis state (worker processes, each with its own connection), prepare them, run every new
point through the pipeline (the default score detector, range_excess; --detector consensus:
all nine algorithms, CONSENSUS 6, early stop; the incident machine), store the states,
explain the anomalies and publish their events. Pass 1 is the first run of fresh workers on
metrics met for the first time; then one new point is appended to every metric (1 % of them
a spike), and pass 2 is the steady state a long-running analyzer sees every minute.
Then a per-series reference path on --reference metrics: one GET per metric, decoded, and the
nine per-series reference algorithms (tests/reference_algorithms.py) with consensus.

    .venv/bin/python bench/analyzer.py                        # 100k x 1440, 2 processes
    .venv/bin/python bench/analyzer.py --metrics 20000 --reference 500

Human lines go to stdout, progress to stderr; the last stdout line is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import redis

from skyline.services.analyzer import Analyzer, RunReport
from skyline.settings import load_settings
from skyline.store import keys
from skyline.store.hotstore import HotStore
from skyline.store.redis_client import make_client, redis_session
from skyline.store.series import POINT_DTYPE

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.reference_algorithms import REFERENCES  # noqa: E402  (the tests' reference, on purpose)

STEP = 60.0
LOAD_CHUNK = 2000
STAGES = ("list", "fetch", "fetch_wait", "prepare", "algorithms", "explain", "worker_cpu",
          "workers", "publish")


def progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def names_for(m: int) -> list[str]:
    return [f"bench.analyzer.host-{i // 100:05d}.metric-{i % 100:02d}" for i in range(m)]


def chunk_values(lo: int, hi: int, points: int, spike_at: int = -1) -> np.ndarray:
    rng = np.random.default_rng(lo)
    k = hi - lo
    i = np.arange(points) / points
    v = rng.standard_normal((k, points))
    v *= rng.uniform(1, 5, (k, 1))
    v += rng.uniform(50, 500, (k, 1))
    kind = np.arange(lo, hi) % 3
    sine = kind == 1
    v[sine] += rng.uniform(5, 30, (int(sine.sum()), 1)) * np.sin(
        2 * np.pi * (i[None, :] + rng.uniform(0, 1, (int(sine.sum()), 1))))
    trend = kind == 2
    v[trend] += rng.uniform(-20, 20, (int(trend.sum()), 1)) * i[None, :]
    spiked = rng.random(k) < 0.01
    v[spiked, spike_at] += 10 * v[spiked].std(axis=1)
    return v


def append_minute(store: HotStore, names: list[str], t: float, v: np.ndarray) -> float:
    """One new point per metric at time t (values: each metric's next one, 1 % of them a
    spike), through the store's write path."""
    v = v.copy()
    v[np.random.default_rng(1).random(len(names)) < 0.01] *= 50
    started = time.perf_counter()
    for lo in range(0, len(names), 10_000):
        hi = min(len(names), lo + 10_000)
        store.append(names[lo:hi], np.full(hi - lo, t), v[lo:hi])
    return time.perf_counter() - started


def load(client: redis.Redis, names: list[str], points: int, end: float
         ) -> tuple[float, np.ndarray]:
    """Store the series; (seconds, each metric's next value: the one after its last)."""
    t = end - STEP * np.arange(points)[::-1]
    pts = np.empty((LOAD_CHUNK, points), dtype=POINT_DTYPE)
    pts["t"] = t
    following = np.empty(len(names))
    started = time.perf_counter()
    for lo in range(0, len(names), LOAD_CHUNK):
        hi = min(len(names), lo + LOAD_CHUNK)
        # one point more than stored, the planted spikes on the last stored one: the extra
        # point is each metric's own continuation (pass 2's new point)
        values = chunk_values(lo, hi, points + 1, spike_at=-2)
        pts["v"][: hi - lo] = values[:, :-1]
        following[lo:hi] = values[:, -1]
        pipe = client.pipeline(transaction=False)
        for j in range(hi - lo):
            pipe.set(keys.series(names[lo + j]), pts[j].tobytes())
        pipe.sadd(keys.METRIC_INDEX, *names[lo:hi])
        pipe.execute()
        if (hi // LOAD_CHUNK) % 10 == 0:
            progress(f"  loaded {hi:,} metrics")
    return time.perf_counter() - started, following


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def describe(label: str, r: RunReport) -> list[str]:
    s = r.stats
    stages = ", ".join(f"{k} {s.stages[k]:.2f} s" for k in STAGES if k in s.stages)
    return [
        f"  {label}: {s.duration:6.2f} s  {r.metrics_per_second:10,.0f} metrics/s  "
        f"({s.analysed:,} analysed, {r.candidates:,} anomalous, "
        f"{len(r.events):,} events written)",
        f"    stages (slowest worker for fetch..explain): {stages}",
    ]


def reference(store: HotStore, names: list[str], full_duration: float, consensus: int
              ) -> tuple[float, int]:
    """Upstream's shape: per metric one GET, decode, nine per-series algorithms, consensus."""
    anomalous = 0
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in names:
            s = store.read_one(name)
            votes = sum(1 for f in REFERENCES.values()
                        if f(s.timestamps, s.values, full_duration)[0] is True)
            anomalous += votes >= consensus
    return time.perf_counter() - started, anomalous


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--metrics", type=int, default=100_000)
    ap.add_argument("--points", type=int, default=1440)
    ap.add_argument("--processes", type=int, default=2, help="ANALYZER_PROCESSES")
    ap.add_argument("--chunk-size", type=int, default=2000, help="analyzer.chunk_size")
    ap.add_argument("--detector", choices=("score", "consensus", "learning"), default="score",
                    help="analyzer.detector (default: the analyzer's default, score)")
    ap.add_argument("--reference", type=int, default=2000, help="metrics for the reference")
    args = ap.parse_args()
    m, n = args.metrics, args.points
    names = names_for(m)
    data_dir = Path(tempfile.mkdtemp(prefix="skyline-bench-analyzer-"))
    try:
        settings = load_settings(
            DATA_DIR=data_dir, REDIS_URL=None, FULL_DURATION=max(600, int(n * STEP)),
            ANALYZER_PROCESSES=args.processes, LOG_LEVEL="WARNING",
            analyzer={"chunk_size": args.chunk_size, "detector": args.detector},
            redis={"anomaly_stream_maxlen": max(1000, m)})
        with redis_session(settings) as handle:
            assert handle.embedded is not None
            url = handle.embedded.url
            client = make_client(url, 300.0)
            client.config_set("appendonly", "no")
            client.config_set("save", "")
            client.flushdb()
            redis_pid = int(client.info("server")["process_id"])

            progress(f"loading {m:,} x {n} ...")
            end = time.time() - STEP
            load_s, following = load(client, names, n, end)
            size = m * n * 16
            analyzer = Analyzer(settings, client, url)
            started = time.perf_counter()
            analyzer.start()
            start_s = time.perf_counter() - started
            try:
                progress("pass 1 ...")
                first = analyzer.run_once(now=end + 1)
                client.delete(keys.ANOMALY_STREAM)
                progress("one new point per metric ...")
                append_s = append_minute(HotStore(client), names, end + STEP, following)
                progress("pass 2 ...")
                redis_before = cpu_seconds(redis_pid)
                second = analyzer.run_once(now=end + STEP + 1)
                redis_cpu = cpu_seconds(redis_pid) - redis_before
                state_bytes = analyzer.config.pipeline().layout.size
            finally:
                analyzer.close()

            k = min(args.reference, m)
            progress(f"reference path on {k:,} metrics ...")
            ref_s, ref_anomalous = reference(HotStore(client), names[:k],
                                             float(settings.FULL_DURATION), settings.CONSENSUS)
            client.flushdb()
            client.close()
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)

    best = min(first, second, key=lambda r: r.stats.duration)
    # --reference 0 skips the per-series comparison (no ratio to print)
    ref_rate = k / ref_s if k and ref_s > 0 else 0.0
    ratio = best.metrics_per_second / ref_rate if ref_rate else 0.0
    print(f"analyzer bench: {m:,} metrics x {n} points (60 s), ANALYZER_PROCESSES="
          f"{args.processes}, chunks of {args.chunk_size:,} metrics; {os.cpu_count()} CPUs")
    print(f"  load: {size / 1e9:.2f} GB in {load_s:.1f} s (one SET per series); "
          f"worker start {start_s:.1f} s")
    lines = describe("pass 1 (fresh workers)", first) + describe("pass 2 (steady state)", second)
    for line in lines:
        print(line)
    print(f"  redis-server CPU during pass 2: {redis_cpu:.2f} s (one thread; it serves "
          f"{size / 1e9:.2f} GB of replies)")
    print(f"  analysis state: {state_bytes} bytes per metric ({state_bytes * m / 1e6:.1f} MB "
          f"for {m:,} metrics); appending one point to each took {append_s:.2f} s")
    if k:
        print(f"  reference, per series (GET + nine per-series algorithms + consensus): "
              f"{ref_s:.2f} s for {k:,} metrics, {ref_rate:,.0f} metrics/s "
              f"({ref_anomalous} anomalous)")
        print(f"  speed ratio (best pass / reference): {ratio:,.0f}x")
    out: dict[str, Any] = {
        "bench": "analyzer", "detector": args.detector, "metrics": m, "points": n,
        "processes": args.processes,
        "load_s": round(load_s, 2),
        "pass1_s": round(first.stats.duration, 3), "pass2_s": round(second.stats.duration, 3),
        "metrics_per_s": round(best.metrics_per_second),
        "stages_s": {k2: round(v, 3) for k2, v in second.stats.stages.items()},
        "redis_cpu_s": round(redis_cpu, 2),
        "anomalies": second.candidates, "events": len(second.events),
        "state_bytes_per_metric": state_bytes,
        "reference_metrics_per_s": round(ref_rate, 1), "speed_ratio": round(ratio),
    }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
