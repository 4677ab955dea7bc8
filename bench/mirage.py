"""Mirage bench: the long history's bytes per metric and the roomba's cost of building it.

bytes: 7 days of MIRAGE_ANALYSIS_RESOLUTION (600 s) buckets of 60-s points for --metrics
metrics in Redis (a pool of --pool distinct histories per kind of metric, generated with seed
1, written under --metrics keys): integer counters (Poisson), two-decimal gauges, full-precision
floats. Printed: the encoded size per kind, MEMORY USAGE of sampled keys, and the INFO
used_memory delta divided by the number of metrics, for the mix --mix (int,dec2,float shares),
measured once the AOF rewrite the writes started has ended (its buffer is not the history's).

build: --build-metrics metrics each holding FULL_DURATION + grace + 1 h of 60-s points and a
7-day history; one roomba pass with the history on (moves the aged hour into the history) is
timed against one with it off (only trims), and the difference is given per 1,000 metrics
and for a default pass (roomba.max_keys_per_pass 20,000).

stage: --candidates metrics with 7 days of history (history key built by a roomba pass plus
the raw FULL_DURATION series) in Redis; one candidate each (its newest point) through the
Mirage stage as the analyzer calls it: the candidates of one analysis step together
(Stages.check_many: one Redis round trip per 500 metrics, one judgement); seconds for all
(stage_s_1000, per 1,000), and a quarter of them one by one for comparison.

quality: series generated with seed --seed at 300-s steps over 9 days, --quality-metrics of
each pattern: "nightly" (a job at 02:00 +- 15 min every day, 10-20 min, +40..60), "alternate"
(the same every 48 h), "weekday" (09:00-10:00 +30 on weekdays only); every other series gets
one planted anomaly (+80 for 15 min at a random time of the last 2 days away from its
pattern). Each is replayed (analysis.replay, the default analyzer settings) without stages
and with analyzer.stages = ["mirage"] (168 h); over the last 2 days, events are counted as
planted (within 30 min of a planted anomaly), pattern-caused (within 30 min of a pattern's
activity) or other. pattern_fp_vetoed_pct: share of the analyzer's pattern-caused events
Mirage vetoes; planted_lost: planted anomalies the analyzer found and Mirage vetoed.

    .venv/bin/python bench/mirage.py
    .venv/bin/python bench/mirage.py --metrics 10000 --build-metrics 1000 --candidates 200

Runs on the embedded Redis in a temporary DATA_DIR. The last line of output is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import redis

from skyline.settings import load_settings
from skyline.store import history as hist
from skyline.store import keys
from skyline.store.redis_client import make_client, redis_session
from skyline.store.roomba import HistoryPolicy, Roomba
from skyline.store.series import encode

R = 600
DAY = 86400
NOW = 1_800_000_000.0
RETENTION = DAY + 600
KINDS = ("int", "dec2", "float")


def progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@contextmanager
def embedded() -> Iterator[redis.Redis]:
    data_dir = Path(tempfile.mkdtemp(prefix="skyline-bench-mirage-"))
    try:
        with redis_session(load_settings(DATA_DIR=data_dir, REDIS_URL=None)) as handle:
            client = make_client(handle.url, 300.0)
            try:
                yield client
            finally:
                client.flushdb()
                client.close()
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def settle(client: redis.Redis, wait: float = 120.0) -> None:
    """Wait for an AOF rewrite the writes started to end: while one runs, Redis 6 keeps the
    new writes in a rewrite buffer counted in used_memory (tens of MB at 100k metrics)."""
    until = time.monotonic() + wait
    while time.monotonic() < until:
        p = client.info("persistence")
        if not p.get("aof_rewrite_in_progress") and not p.get("aof_rewrite_scheduled"):
            break
        time.sleep(0.2)
    time.sleep(0.5)


def points(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    day = np.sin(np.arange(n) * 60.0 / DAY * 2 * np.pi)
    if kind == "int":
        return rng.poisson(200 + 100 * day).astype(float)
    if kind == "dec2":
        return np.round(50 + 10 * day + rng.normal(0, 2, n), 2)
    return 50 + 10 * day + rng.normal(0, 2, n)


def week_history(kind: str, rng: np.random.Generator, end: float = NOW) -> hist.Buckets:
    t = np.arange(end - 7 * DAY, end, 60.0)
    return hist.bucketise(t, points(kind, t.size, rng), R)


def bench_bytes(client: redis.Redis, metrics: int, pool: int, mix: tuple[float, ...]
                ) -> dict[str, float]:
    rng = np.random.default_rng(1)
    blobs: dict[str, list[bytes]] = {}
    for kind in KINDS:
        blobs[kind] = [hist.encode(week_history(kind, rng)) for _ in range(pool)]
        sizes = np.array([len(b) for b in blobs[kind]])
        print(f"encoded 7 d history, {kind:5s}: mean {sizes.mean():8.0f} B "
              f"(min {sizes.min()}, max {sizes.max()}), "
              f"{sizes.mean() / len(week_history(kind, rng)):.2f} B per bucket")
    client.flushdb()
    before = int(client.info("memory")["used_memory"])
    share = np.array(mix) / sum(mix)
    kinds = rng.choice(len(KINDS), size=metrics, p=share)
    pipe = client.pipeline(transaction=False)
    for i in range(metrics):
        kind = KINDS[kinds[i]]
        pipe.set(keys.history(f"bench.mirage.m{i:06d}"), blobs[kind][i % pool])
        if i % 5000 == 4999:
            pipe.execute()
    pipe.execute()
    settle(client)
    used = int(client.info("memory")["used_memory"]) - before
    sample = rng.choice(metrics, size=min(300, metrics), replace=False)
    usage = {k: [] for k in KINDS}  # type: dict[str, list[int]]
    for i in sample.tolist():
        usage[KINDS[kinds[i]]].append(
            int(client.memory_usage(keys.history(f"bench.mirage.m{i:06d}")) or 0))
    out = {f"memory_usage_{k}": float(np.mean(v)) for k, v in usage.items() if v}
    out["bytes_per_metric_7d"] = used / metrics
    for k in KINDS:
        if f"memory_usage_{k}" in out:
            print(f"MEMORY USAGE of a history key, {k:5s}: {out[f'memory_usage_{k}']:.0f} B")
    print(f"used_memory delta / metrics, mix int:dec2:float = "
          f"{':'.join(f'{m:g}' for m in mix)} at {metrics} metrics: "
          f"{out['bytes_per_metric_7d']:.0f} B per metric")
    client.flushdb()
    return out


def bench_build(client: redis.Redis, metrics: int) -> dict[str, float]:
    rng = np.random.default_rng(2)
    t = np.arange(NOW - RETENTION - 3600 - 600, NOW, 60.0)
    names = [f"bench.mirage.b{i:06d}" for i in range(metrics)]
    old_end = float(np.floor((t[0]) / R) * R)
    pool = [hist.encode(week_history(KINDS[i % 3], rng, old_end)) for i in range(30)]
    series = [encode(t, points(KINDS[i % 3], t.size, rng)) for i in range(30)]

    def load() -> None:
        client.flushdb()
        pipe = client.pipeline(transaction=False)
        for i, name in enumerate(names):
            pipe.set(keys.series(name), series[i % 30])
            pipe.set(keys.history(name), pool[i % 30])
            pipe.sadd(keys.METRIC_INDEX, name)
            if i % 2000 == 1999:
                pipe.execute()
        pipe.execute()

    out: dict[str, float] = {}
    for label, policy in (("without", None),
                          ("with", HistoryPolicy(resolution=R, span=7 * DAY, batch=3600))):
        load()
        roomba = Roomba(client, retention=RETENTION, batch_size=500, history=policy)
        started, cpu = time.perf_counter(), time.process_time()
        stats = roomba.run_pass(NOW, metrics)
        took = time.perf_counter() - started
        out[f"pass_s_{label}"] = took
        out[f"pass_cpu_s_{label}"] = time.process_time() - cpu
        print(f"roomba pass over {metrics} metrics {label} history: {took:.2f} s, "
              f"{out[f'pass_cpu_s_{label}']:.2f} s of roomba CPU "
              f"(rewritten {stats.rewritten}, histories written {stats.history_written}, "
              f"buckets moved {stats.buckets_moved})")
    extra = max(out["pass_s_with"] - out["pass_s_without"], 0.0)
    out["history_build_s_per_1000"] = extra / metrics * 1000
    out["history_build_s_per_pass"] = extra / metrics * 20_000
    cpu_extra = max(out["pass_cpu_s_with"] - out["pass_cpu_s_without"], 0.0)
    out["history_build_cpu_ms_per_metric"] = cpu_extra / metrics * 1000
    print(f"history build cost: {out['history_build_s_per_1000']:.3f} s per 1,000 metrics "
          f"moving an hour; {out['history_build_s_per_pass']:.2f} s for a pass of 20,000 "
          "(each metric moves once per mirage.history_batch, 3600 s); roomba CPU "
          f"{out['history_build_cpu_ms_per_metric']:.2f} ms per metric moved")
    return out


def bench_stage(client: redis.Redis, candidates: int) -> dict[str, float]:
    from skyline.algorithms import AnalysisParams
    from skyline.analysis.mirage import READ_CHUNK, MirageRules, MirageStage
    from skyline.analysis.stages import Candidate, Stages

    rng = np.random.default_rng(4)
    client.flushdb()
    t = np.arange(NOW - 7 * DAY, NOW, 60.0)
    names = [f"bench.mirage.c{i:05d}" for i in range(candidates)]
    pool = [points(KINDS[i % 3], t.size, rng) for i in range(20)]
    pipe = client.pipeline(transaction=False)
    for i, name in enumerate(names):
        pipe.set(keys.series(name), encode(t, pool[i % 20]))
        pipe.sadd(keys.METRIC_INDEX, name)
    pipe.execute()
    Roomba(client, retention=RETENTION, batch_size=500,
           history=HistoryPolicy(resolution=R, span=7 * DAY, batch=3600)).run_pass(NOW, candidates)
    stage = MirageStage(rules=MirageRules((("bench.**", 168.0),)), params=AnalysisParams(),
                        client=client)
    cands = [Candidate(metric=n, timestamp=NOW, value=float(pool[i % 20][-1]) + 30.0, score=0.9,
                       band_low=0.0, band_high=float(pool[i % 20][-1]) + 1,
                       window_timestamps=t[-10:], window_values=pool[i % 20][-10:])
             for i, n in enumerate(names)]
    stage.check(cands[0], time.monotonic() + 60)  # the judge is made once
    out: dict[str, float] = {}
    # as the analyzer calls it: a step's candidates together (Stages.check_many)
    chain = Stages([stage], budget=60.0)
    started, cpu = time.perf_counter(), time.process_time()
    got = chain.check_many(cands)
    took, cpu = time.perf_counter() - started, time.process_time() - cpu
    verdicts: dict[str, int] = {}
    for _, vs in got:
        verdicts[vs[0].verdict] = verdicts.get(vs[0].verdict, 0) + 1
    print(f"Mirage stage, {candidates} candidates of one analysis step together (one Redis "
          f"round trip per {READ_CHUNK} metrics, one judgement): {took:.2f} s wall, {cpu:.2f} s "
          f"CPU of this process; verdicts {verdicts}")
    out["stage_s_1000"] = took / candidates * 1000
    out["stage_cpu_s_1000"] = cpu / candidates * 1000
    one = cands[: max(1, candidates // 4)]
    started, cpu = time.perf_counter(), time.process_time()
    for c in one:
        stage.check(c, time.monotonic() + 60)
    took, cpu = time.perf_counter() - started, time.process_time() - cpu
    print(f"Mirage stage, {len(one)} candidates one by one (a Redis round trip each): "
          f"{took:.2f} s wall, {cpu:.2f} s CPU")
    out["stage_s_1000_one_by_one"] = took / len(one) * 1000
    client.flushdb()
    return out


def _quality_series(kind: str, rng: np.random.Generator, planted: bool
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[float]]:
    step = 300.0
    start = NOW - NOW % DAY - 9 * DAY
    t = np.arange(start, start + 9 * DAY, step)
    v = 100 + rng.normal(0, 3, t.size)
    active = np.zeros(t.size, dtype=bool)
    days = np.arange(9)
    if kind in ("nightly", "alternate"):
        for d in days[:: 1 if kind == "nightly" else 2]:
            s0 = start + d * DAY + 7200 + rng.uniform(-900, 900)
            dur = rng.uniform(600, 1200)
            on = (t >= s0) & (t < s0 + dur)
            v[on] += rng.uniform(40, 60)
            active |= on
    else:  # weekday: 09:00-10:00 on weekdays (1970-01-01 was a Thursday)
        dow = ((t // DAY) + 3) % 7  # 0 Monday
        hour = (t % DAY) / 3600
        on = (dow < 5) & (hour >= 9) & (hour < 10)
        v[on] += 30
        active |= on
    plants: list[float] = []
    if planted:
        last2 = t >= t[-1] - 2 * DAY + 3600
        for _ in range(50):
            at = float(rng.choice(t[last2]))
            near = np.abs(t - at) <= 3 * 3600
            if not active[near].any():
                on = (t >= at) & (t < at + 900)
                v[on] += 80
                plants.append(at)
                break
    return t, v, active, plants


def bench_quality(seed: int, per_kind: int) -> dict[str, float]:
    from skyline.analysis.config import from_settings
    from skyline.analysis.replay import replay

    rng = np.random.default_rng(seed)
    base = load_settings()
    with_mirage = load_settings(analyzer={"stages": ["mirage"]},
                                mirage={"namespaces": [{"pattern": "q.**", "hours": 168}]})
    plain = from_settings(base).pipeline()
    mirage = from_settings(with_mirage).pipeline()
    counts = {"pattern": [0, 0], "planted_found": [0, 0], "other": [0, 0]}
    planted_total = 0
    lost = 0
    i = 0
    for kind in ("nightly", "alternate", "weekday"):
        for j in range(per_kind):
            t, v, active, plants = _quality_series(kind, rng, planted=j % 2 == 0)
            planted_total += len(plants)
            name = f"q.{kind}.{j}"
            i += 1
            found: list[set[float]] = [set(), set()]
            for col, pipeline in enumerate((plain, mirage)):
                out = replay(name, t, v, pipeline)
                rows = np.flatnonzero(out.alerted & (t >= t[-1] - 2 * DAY))
                for r in rows.tolist():
                    at = float(t[r])
                    hit = [p for p in plants if -1800 <= at - p <= 1800]
                    if hit:
                        counts["planted_found"][col] += 1
                        found[col].add(hit[0])
                        continue
                    near = np.abs(t - at) <= 1800
                    counts["pattern" if active[near].any() else "other"][col] += 1
            # a planted anomaly the analyzer found and Mirage vetoed
            lost += len(found[0] - found[1])
            progress(f"quality {name}: {counts}")
    a, b = counts["pattern"]
    vetoed = (a - b) / a * 100 if a else 0.0
    print(f"quality, seed {seed}, {i} series ({per_kind} per pattern), last 2 days: "
          f"pattern-caused false positives analyzer-only {a}, with Mirage {b} "
          f"({vetoed:.0f} % vetoed); other false positives {counts['other'][0]} -> "
          f"{counts['other'][1]}; planted anomalies {planted_total}, found analyzer-only "
          f"{counts['planted_found'][0]} events, with Mirage {counts['planted_found'][1]}; "
          f"planted lost to Mirage {lost}")
    return {"pattern_fp_analyzer": float(a), "pattern_fp_mirage": float(b),
            "pattern_fp_vetoed_pct": vetoed, "other_fp_analyzer": float(counts["other"][0]),
            "other_fp_mirage": float(counts["other"][1]), "planted": float(planted_total),
            "planted_events_analyzer": float(counts["planted_found"][0]),
            "planted_events_mirage": float(counts["planted_found"][1]), "planted_lost": lost}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument("--metrics", type=int, default=100_000)
    p.add_argument("--pool", type=int, default=200)
    p.add_argument("--mix", default="4,4,2", help="shares of int,dec2,float metrics")
    p.add_argument("--build-metrics", type=int, default=5000)
    p.add_argument("--candidates", type=int, default=1000)
    p.add_argument("--quality-metrics", type=int, default=10, help="series per pattern")
    p.add_argument("--seed", type=int, default=42)
    a = p.parse_args(argv)
    mix = tuple(float(x) for x in a.mix.split(","))
    if len(mix) != 3 or min(mix) < 0 or sum(mix) <= 0:
        p.error("--mix takes three non-negative shares")
    print(f"machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}")
    result: dict[str, object] = {"bench": "mirage"}
    with embedded() as client:
        progress("history bytes ...")
        result.update(bench_bytes(client, a.metrics, a.pool, mix))
        progress("history build ...")
        result.update(bench_build(client, a.build_metrics))
        progress("stage ...")
        result.update(bench_stage(client, a.candidates))
    progress("quality ...")
    result.update(bench_quality(a.seed, a.quality_metrics))
    result = {k: round(v, 4) if isinstance(v, float) else v for k, v in result.items()}
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
