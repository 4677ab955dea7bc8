"""Cluster bench (issue 21, first slice): the hot store's bulk read and append of METRICS
series of POINTS points, on one standalone redis-server and on a 3-master Redis Cluster (no
replicas), through the same fast paths: FlatReader on the single node, store.cluster's
ClusterStore (each master's share over its own connection) on the cluster.

Printed: read seconds (median of --passes) and MB/s, append seconds for one point per
metric, the share of series per master, and each server's CPU seconds (INFO cpu) during the
reads. On this 2-core machine the cluster cannot be faster: the figures show its overhead
and its balance.

    .venv/bin/python bench/cluster.py                       # 20k metrics x 1440 points
    .venv/bin/python bench/cluster.py --metrics 5000 --points 360

Human lines go to stdout, progress to stderr; the last stdout line is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.rediscluster import RedisCluster, _ports, wait_for  # noqa: E402

from skyline.store import keys  # noqa: E402
from skyline.store.cluster import ClusterStore  # noqa: E402
from skyline.store.embedded import redis_server_binary  # noqa: E402
from skyline.store.flatread import FlatReader  # noqa: E402
from skyline.store.hotstore import _raw_appends  # noqa: E402
from skyline.store.series import encode  # noqa: E402


def progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def cpu(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def seed(clients: list[redis.Redis], owner: np.ndarray, names: list[str],
         blob: bytes) -> None:
    for m, c in enumerate(clients):
        mine = [names[i] for i in np.flatnonzero(owner == m).tolist()]
        for lo in range(0, len(mine), 500):
            pipe = c.pipeline(transaction=False)
            for n in mine[lo:lo + 500]:
                pipe.set(keys.series(n), blob)
            pipe.execute()


def timed(fn, passes: int) -> float:  # type: ignore[no-untyped-def]
    runs = []
    for _ in range(passes):
        t0 = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t0)
    return statistics.median(runs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--metrics", type=int, default=20_000)
    ap.add_argument("--points", type=int, default=1440)
    ap.add_argument("--passes", type=int, default=3)
    args = ap.parse_args()
    names = [f"bench.host{i % 1000}.m{i}" for i in range(args.metrics)]
    blob = encode(1.7e9 + 60.0 * np.arange(args.points), np.random.default_rng(0).random(
        args.points))
    mb = args.metrics * len(blob) / 1e6
    one = [encode(np.array([2e9]), np.array([1.0]))] * args.metrics
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        port = _ports(1)[0]
        single = subprocess.Popen([redis_server_binary(), "--port", str(port), "--bind",
                                   "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", d],
                                  stdout=subprocess.DEVNULL)
        cluster = RedisCluster(tmp, masters=3, replicas=False)
        try:
            s = redis.Redis(port=port, socket_timeout=60)
            wait_for(s.ping, "single start")
            progress(f"seeding {args.metrics} x {args.points} ({mb:.0f} MB) on each")
            seed([s], np.zeros(len(names), dtype=np.int64), names, blob)
            store = ClusterStore(cluster.seeds, timeout=60)
            topo = store.refresh()
            owner = topo.masters_of(names)
            masters = [redis.Redis(host=m.host, port=m.port, socket_timeout=60)
                       for m in topo.masters]
            seed(masters, owner, names, blob)
            share = np.bincount(owner, minlength=len(masters)).tolist()

            reader = FlatReader(s)
            progress("reading")
            c0 = cpu(s)
            single_read = timed(lambda: reader.read(names), args.passes)
            single_cpu = (cpu(s) - c0) / args.passes
            before = [cpu(c) for c in masters]
            cluster_read = timed(lambda: store.read(names), args.passes)
            node_cpu = [(cpu(c) - b) / args.passes for c, b in zip(masters, before, strict=True)]
            got = store.read(names)
            assert got.counts.sum() == args.metrics * args.points and not got.stats.wrong_type

            def single_append() -> None:
                pool = s.connection_pool
                conn = pool.get_connection()
                try:
                    for lo in range(0, len(names), 1000):
                        _raw_appends(conn, names[lo:lo + 1000], one[lo:lo + 1000])
                finally:
                    pool.release(conn)

            progress("appending")
            single_append_s = timed(single_append, args.passes)
            cluster_append_s = timed(lambda: store.append(names, one), args.passes)
            store.close()
        finally:
            cluster.close()
            single.terminate()
            single.wait()
    load = os.getloadavg()[0]
    print(f"{args.metrics} metrics x {args.points} points ({mb:.0f} MB); load {load:.1f} on "
          f"{os.cpu_count()} cores")
    print(f"read, one node:     {single_read:.2f} s ({mb / single_read:,.0f} MB/s), "
          f"redis CPU {single_cpu:.2f} s")
    print(f"read, 3 masters:    {cluster_read:.2f} s ({mb / cluster_read:,.0f} MB/s), "
          f"redis CPU per master {', '.join(f'{c:.2f}' for c in node_cpu)} s; "
          f"series per master {share}")
    print(f"append 1 point to each, one node: {single_append_s:.3f} s; 3 masters: "
          f"{cluster_append_s:.3f} s")
    print(json.dumps({"bench": "cluster", "metrics": args.metrics, "points": args.points,
                      "single_read_s": round(single_read, 3),
                      "cluster_read_s": round(cluster_read, 3),
                      "single_append_s": round(single_append_s, 3),
                      "cluster_append_s": round(cluster_append_s, 3),
                      "share": share, "node_cpu_s": [round(c, 2) for c in node_cpu],
                      "load": round(load, 1)}))


if __name__ == "__main__":
    main()
