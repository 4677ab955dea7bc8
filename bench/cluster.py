"""Cluster bench (issue 21): the hot store, the analyzer and horizon on a 3-master Redis
Cluster (no replicas, tests/rediscluster.py). Each section starts a cluster of its own.

--store: the hot store's bulk read and append of METRICS series of POINTS points, on one
standalone redis-server and on the cluster, through the same fast paths (FlatReader on the
single node, store.cluster's ClusterStore on the cluster). Printed: read seconds (median of
--passes) and MB/s, append seconds for one point per metric, the share of series per master,
and each server's CPU seconds (INFO cpu) during the reads.

--analyzer: METRICS x POINTS series (bench/analyzer.py's data: noise, sine, trend, 1 % spikes)
loaded with one SET per series, grouped per master, and listed in the cluster's index; then
(1) ONE analyzer (ANALYZER_PROCESSES=2): pass 1, one new point appended to every metric,
pass 2; (2) TWO analyzers, each its own OS process (ANALYZER_PROCESSES=1 each): both join the
membership (a lease renewal, as run_once starts with), pass 1 in both at once (no new point:
the states are there from (1)), one new point per metric, pass 2 in both at once. Printed:
pass-2 seconds and metrics of each analyzer, the bytes each read (its metrics x points x 16;
the masters' measured output in total beside it), `exactly_once` (the two shares are
disjoint, cover the index and analysed every metric), and each master's CPU seconds during
pass 2.

--ingest: two `skyline serve horizon` processes on the cluster, one Graphite plaintext sender
process per horizon (each its half of --ingest-metrics, points 1 s apart ending now, sent in
time order); accepted points/s (until each horizon has read its sender's stream to the end)
and end-to-end points/s (until the cluster holds every point), the loss, horizon and
per-master CPU seconds.

With no section flag all three run. On this 2-core machine a cluster cannot be faster: the
figures show its overhead and its balance.

    .venv/bin/python bench/cluster.py                        # all, 100k metrics x 1440 points
    .venv/bin/python bench/cluster.py --analyzer --ingest    # the analyzer and ingest only
    .venv/bin/python bench/cluster.py --metrics 5000 --points 360 --ingest-points 200000

Human lines go to stdout, progress to stderr; the last stdout line is JSON (keys of a section
that did not run are null).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from tests.e2e.skylineproc import horizon_ports  # noqa: E402
from tests.rediscluster import RedisCluster, _ports, wait_for  # noqa: E402

import ingest as bench_ingest  # noqa: E402  (bench/ingest.py: its senders)
from analyzer import LOAD_CHUNK, STEP, append_minute, chunk_values, names_for  # noqa: E402
from skyline.services.analyzer import Analyzer, RunReport  # noqa: E402
from skyline.services.analyzer.leases import share as lease_share  # noqa: E402
from skyline.settings import Settings, load_settings  # noqa: E402
from skyline.store import keys  # noqa: E402
from skyline.store.cluster import ClusterStore  # noqa: E402
from skyline.store.embedded import redis_server_binary  # noqa: E402
from skyline.store.flatread import FlatReader  # noqa: E402
from skyline.store.hotstore import HotStore, _raw_appends  # noqa: E402
from skyline.store.redis_client import connect_url  # noqa: E402
from skyline.store.series import POINT_DTYPE, POINT_SIZE, encode  # noqa: E402

SETTLE_TIMEOUT = 120.0  # ingest: seconds without progress before giving up on the count
RESERVED_PORTS = {2024}


def progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def cpu(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def net_out(client: redis.Redis) -> int:
    return int(client.info("stats")["total_net_output_bytes"])


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


class Cluster:
    """A fresh 3-master cluster, a ClusterStore on it and a plain client per master."""

    def __init__(self, tmp: Path):
        self.rc = RedisCluster(tmp, masters=3, replicas=False)
        self.url = f"redis://127.0.0.1:{self.rc.ports[0]}/0"
        self.store = ClusterStore(self.rc.seeds, timeout=60)
        self.topo = self.store.refresh()
        self.masters = [redis.Redis(host=m.host, port=m.port, socket_timeout=60)
                        for m in self.topo.masters]

    def cpu(self) -> list[float]:
        return [cpu(c) for c in self.masters]

    def net_out(self) -> int:
        return sum(net_out(c) for c in self.masters)

    def close(self) -> None:
        for c in self.masters:
            c.close()
        self.store.close()
        self.rc.close()


def deltas(after: list[float], before: list[float]) -> list[float]:
    return [round(a - b, 2) for a, b in zip(after, before, strict=True)]


def fmt(xs: list[float]) -> str:
    return ", ".join(f"{x:.2f}" for x in xs)


# --store --------------------------------------------------------------------------------------
def store_section(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    names = [f"bench.host{i % 1000}.m{i}" for i in range(args.metrics)]
    blob = encode(1.7e9 + 60.0 * np.arange(args.points), np.random.default_rng(0).random(
        args.points))
    mb = args.metrics * len(blob) / 1e6
    one = [encode(np.array([2e9]), np.array([1.0]))] * args.metrics
    port = _ports(1)[0]
    single = subprocess.Popen([redis_server_binary(), "--port", str(port), "--bind",
                               "127.0.0.1", "--save", "", "--appendonly", "no", "--dir",
                               str(tmp)], stdout=subprocess.DEVNULL)
    cluster = Cluster(tmp / "store-cluster")
    try:
        s = redis.Redis(port=port, socket_timeout=60)
        wait_for(s.ping, "single start")
        progress(f"store: seeding {args.metrics} x {args.points} ({mb:.0f} MB) on each")
        seed([s], np.zeros(len(names), dtype=np.int64), names, blob)
        store, masters = cluster.store, cluster.masters
        owner = cluster.topo.masters_of(names)
        seed(masters, owner, names, blob)
        share = np.bincount(owner, minlength=len(masters)).tolist()

        reader = FlatReader(s)
        progress("store: reading")
        c0 = cpu(s)
        single_read = timed(lambda: reader.read(names), args.passes)
        single_cpu = (cpu(s) - c0) / args.passes
        before = cluster.cpu()
        cluster_read = timed(lambda: store.read(names), args.passes)
        node_cpu = [(c - b) / args.passes for c, b in zip(cluster.cpu(), before, strict=True)]
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

        progress("store: appending")
        single_append_s = timed(single_append, args.passes)
        cluster_append_s = timed(lambda: store.append(names, one), args.passes)
        s.close()
    finally:
        cluster.close()
        single.terminate()
        single.wait()
    print(f"store: {args.metrics} metrics x {args.points} points ({mb:.0f} MB)")
    print(f"  read, one node:     {single_read:.2f} s ({mb / single_read:,.0f} MB/s), "
          f"redis CPU {single_cpu:.2f} s")
    print(f"  read, 3 masters:    {cluster_read:.2f} s ({mb / cluster_read:,.0f} MB/s), "
          f"redis CPU per master {fmt(node_cpu)} s; series per master {share}")
    print(f"  append 1 point to each, one node: {single_append_s:.3f} s; 3 masters: "
          f"{cluster_append_s:.3f} s", flush=True)
    return {"single_read_s": round(single_read, 3), "cluster_read_s": round(cluster_read, 3),
            "single_append_s": round(single_append_s, 3),
            "cluster_append_s": round(cluster_append_s, 3),
            "share": share, "node_cpu_s": [round(c, 2) for c in node_cpu]}


# --analyzer -----------------------------------------------------------------------------------
def analyzer_settings(url: str, data_dir: Path, metrics: int, points: int) -> Settings:
    return load_settings(LOG_LEVEL="WARNING", REDIS_URL=url, DATA_DIR=data_dir,
                         FULL_DURATION=max(600, int(points * STEP)),
                         redis={"anomaly_stream_maxlen": max(1000, metrics)})


def load_cluster(store: ClusterStore, names: list[str], points: int, end: float
                 ) -> tuple[float, np.ndarray]:
    """bench/analyzer.py's series, one SET per metric grouped per master (ClusterStore.set),
    and the cluster's index; (seconds, each metric's next value)."""
    t = end - STEP * np.arange(points)[::-1]
    pts = np.empty((LOAD_CHUNK, points), dtype=POINT_DTYPE)
    pts["t"] = t
    following = np.empty(len(names))
    started = time.perf_counter()
    for lo in range(0, len(names), LOAD_CHUNK):
        hi = min(len(names), lo + LOAD_CHUNK)
        values = chunk_values(lo, hi, points + 1, spike_at=-2)
        pts["v"][: hi - lo] = values[:, :-1]
        following[lo:hi] = values[:, -1]
        chunk = names[lo:hi]
        assert store.set(chunk, [pts[j].tobytes() for j in range(hi - lo)], keys.series) == \
            hi - lo
        store.index(chunk)
        if (hi // LOAD_CHUNK) % 10 == 0:
            progress(f"  loaded {hi:,} metrics")
    return time.perf_counter() - started, following


def summary(r: RunReport) -> dict[str, Any]:
    s = r.stats
    return {"metrics": s.metrics, "analysed": s.analysed, "duration": s.duration,
            "fetch": s.stages.get("fetch", 0.0), "candidates": r.candidates,
            "stages": {k: round(v, 2) for k, v in s.stages.items()}}


def stages(st: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.2f}" for k, v in st.items())


def analyzer_proc(label: str, url: str, data_dir: str, metrics: int, points: int,
                  cmds: Any, results: Any) -> None:
    """One analyzer in its own process: its own client and cluster store, one worker."""
    settings = analyzer_settings(url, Path(data_dir), metrics, points)
    client, store = connect_url(url, 60)
    assert store is not None
    analyzer = Analyzer(settings, client, url, processes=1, cluster=store)
    analyzer.start()
    try:
        while True:
            cmd, arg = cmds.get()
            if cmd == "join":
                assert analyzer.leases is not None
                analyzer.leases.renew()
                results.put((label, cmd, None))
            elif cmd == "pass":
                results.put((label, cmd, summary(analyzer.run_once(now=arg))))
            elif cmd == "share":  # the metrics this analyzer takes (the current membership)
                leases = analyzer.leases
                assert leases is not None
                shards = lease_share(leases.members.index(leases.member), len(leases.members))
                results.put((label, cmd, store.names(shards)))
            else:
                break
    except BaseException as e:
        results.put((label, "error", repr(e)))
        raise
    finally:
        analyzer.close()
        client.close()
        store.close()


def analyzer_section(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    m, n = args.metrics, args.points
    names = names_for(m)
    cluster = Cluster(tmp / "analyzer-cluster")
    url = cluster.url
    size = m * n * POINT_SIZE
    try:
        progress(f"analyzer: loading {m:,} x {n} ({size / 1e9:.2f} GB) onto 3 masters ...")
        end = time.time() - 3 * STEP
        load_s, following = load_cluster(cluster.store, names, n, end)
        share = np.bincount(cluster.topo.masters_of(names), minlength=3).tolist()
        assert cluster.store.count() == m

        # (1) one analyzer, two worker processes
        settings = analyzer_settings(url, tmp / "var-1", m, n)
        client, store = connect_url(url, 60)
        assert store is not None
        analyzer = Analyzer(settings, client, url, processes=2, cluster=store)
        analyzer.start()
        try:
            progress("analyzer: one analyzer, pass 1 ...")
            one_p1 = analyzer.run_once(now=end + 1)
            client.delete(keys.ANOMALY_STREAM)
            progress("analyzer: one new point per metric ...")
            append1_s = append_minute(HotStore(client, cluster=store), names, end + STEP,
                                      following)
            progress("analyzer: one analyzer, pass 2 ...")
            c0, b0 = cluster.cpu(), cluster.net_out()
            one_p2 = analyzer.run_once(now=end + STEP + 1)
            one_cpu, one_net = deltas(cluster.cpu(), c0), cluster.net_out() - b0
            client.delete(keys.ANOMALY_STREAM)
        finally:
            analyzer.close()
            store.close()

        # (2) two analyzers, each its own process
        ctx = mp.get_context("spawn")
        results = ctx.Queue()
        labels = ["A", "B"]
        cmds = {lab: ctx.Queue() for lab in labels}
        procs = [ctx.Process(target=analyzer_proc, name=f"bench-analyzer-{lab}",
                             args=(lab, url, str(tmp / f"var-2{lab}"), m, n, cmds[lab], results))
                 for lab in labels]
        for p in procs:
            p.start()

        def ask(cmd: str, arg: Any = None) -> dict[str, Any]:
            for lab in labels:
                cmds[lab].put((cmd, arg))
            got: dict[str, Any] = {}
            while len(got) < len(labels):
                lab, what, value = results.get(timeout=3600)
                if what == "error":
                    raise RuntimeError(f"analyzer {lab} failed: {value}")
                got[lab] = value
            return got

        try:
            progress("analyzer: two analyzers joining ...")
            ask("join")
            wait_for(lambda: client.zcard(keys.ANALYZER_MEMBERS) == 2, "two analyzer members")
            progress("analyzer: two analyzers, pass 1 (together) ...")
            two_p1 = ask("pass", end + STEP + 2)
            progress("analyzer: one new point per metric ...")
            append2_s = append_minute(HotStore(client, cluster=cluster.store), names,
                                      end + 2 * STEP, following + 1.0)
            progress("analyzer: two analyzers, pass 2 (together) ...")
            c0, b0 = cluster.cpu(), cluster.net_out()
            t0 = time.perf_counter()
            two_p2 = ask("pass", end + 2 * STEP + 1)
            wall2 = time.perf_counter() - t0
            two_cpu, two_net = deltas(cluster.cpu(), c0), cluster.net_out() - b0
            shares = ask("share")
        finally:
            for lab in labels:
                cmds[lab].put(("stop", None))
            for p in procs:
                p.join(120)
                if p.is_alive():
                    p.terminate()
                    p.join()
        client.delete(keys.ANOMALY_STREAM)
        client.close()
    finally:
        cluster.close()

    a, b = (set(shares[lab]) for lab in labels)
    counts2 = [two_p2[lab]["metrics"] for lab in labels]
    analysed2 = [two_p2[lab]["analysed"] for lab in labels]
    exactly_once = (not (a & b) and a | b == set(names) and sum(counts2) == m
                    and sum(analysed2) == m and [len(a), len(b)] == counts2)
    bytes2 = [c * (n + 2) * POINT_SIZE for c in counts2]
    p2 = [round(two_p2[lab]["duration"], 3) for lab in labels]
    fetch2 = [round(two_p2[lab]["fetch"], 3) for lab in labels]
    p1 = [round(two_p1[lab]["duration"], 3) for lab in labels]
    print(f"analyzer: {m:,} metrics x {n} points ({size / 1e9:.2f} GB) on 3 masters, series "
          f"per master {share}; loaded in {load_s:.1f} s (one SET per series)")
    print(f"  one analyzer (2 worker processes): pass 1 {one_p1.stats.duration:.2f} s, "
          f"pass 2 {one_p2.stats.duration:.2f} s (fetch {one_p2.stats.stages.get('fetch', 0):.2f}"
          f" s), {one_p2.stats.metrics:,} metrics, {one_p2.stats.analysed:,} analysed; "
          f"append 1 point to each {append1_s:.2f} s")
    print(f"    stages, pass 1: {stages(summary(one_p1)['stages'])}")
    print(f"    stages, pass 2: {stages(summary(one_p2)['stages'])}")
    print(f"    redis CPU per master during pass 2: {fmt(one_cpu)} s; masters sent "
          f"{one_net / 1e6:,.0f} MB")
    print(f"  two analyzers (own processes, 1 worker each): pass 1 {p1} s; pass 2 {p2} s "
          f"(both done after {wall2:.2f} s; fetch {fmt(fetch2)} s), metrics {counts2}, "
          f"analysed {analysed2}; append 1 point to each {append2_s:.2f} s")
    for lab in labels:
        print(f"    stages, pass 2, analyzer {lab}: {stages(two_p2[lab]['stages'])}")
    print(f"    bytes read: {' + '.join(f'{x / 1e6:,.0f} MB' for x in bytes2)} of series "
          f"(metrics x {n + 2} points x 16; masters sent {two_net / 1e6:,.0f} MB in all, "
          f"states included); exactly_once: {str(exactly_once).lower()}")
    print(f"    redis CPU per master during pass 2: {fmt(two_cpu)} s", flush=True)
    return {
        "analyzer_load_s": round(load_s, 2), "analyzer_share": share,
        "analyzer_1_pass1_s": round(one_p1.stats.duration, 3),
        "analyzer_1_pass2_s": round(one_p2.stats.duration, 3),
        "analyzer_1_metrics": one_p2.stats.metrics, "analyzer_1_analysed": one_p2.stats.analysed,
        "analyzer_2_pass1_s": p1, "analyzer_2_pass2_s": p2,
        "analyzer_2_pass2_wall_s": round(wall2, 3), "analyzer_2_fetch_s": fetch2,
        "analyzer_2_metrics": counts2, "analyzer_2_analysed": analysed2,
        "exactly_once": exactly_once, "analyzer_bytes_read": bytes2,
        "node_cpu_analyzer_1_s": one_cpu, "node_cpu_analyzer_2_s": two_cpu,
        "net_out_analyzer_1_bytes": one_net, "net_out_analyzer_2_bytes": two_net,
    }


# --ingest -------------------------------------------------------------------------------------
class Horizon:
    def __init__(self, url: str, data_dir: Path, full_duration: int):
        while True:
            ports = horizon_ports()
            if not RESERVED_PORTS & {int(p) for p in ports.values()}:
                break
        self.port = int(ports["SKYLINE_HORIZON__PLAINTEXT_PORT"])
        env = {k: v for k, v in os.environ.items() if not k.startswith("SKYLINE_")}
        env.update(ports)
        env.update({"SKYLINE_REDIS_URL": url, "SKYLINE_DATA_DIR": str(data_dir),
                    "SKYLINE_MAX_METRICS": "0", "SKYLINE_MAX_NEW_METRICS_PER_MINUTE": "0",
                    "SKYLINE_FULL_DURATION": str(full_duration),
                    "SKYLINE_LOG_LEVEL": "WARNING"})
        data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = data_dir / "horizon.log"
        self.log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "skyline.cli.main", "serve", "horizon"], env=env,
            stdout=self.log, stderr=subprocess.STDOUT)
        self.ps = psutil.Process(self.proc.pid)

    def wait_listening(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"skyline serve horizon exited {self.proc.returncode}: "
                                   f"{self.log_path.read_text()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("horizon did not start listening")

    def cpu(self) -> float:
        """CPU seconds of horizon and its children (a supervised component's process)."""
        total = 0.0
        for p in [self.ps, *self.ps.children(recursive=True)]:
            try:
                t = p.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += t.user + t.system
        return total

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


def ingest_section(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    k, metrics = args.ingest_points, args.ingest_metrics
    if metrics < 2 or k < metrics or k // metrics >= 3600:
        raise SystemExit("need --ingest-points >= --ingest-metrics >= 2 and fewer than 3,600 "
                         "points per metric (timestamps within the last hour)")
    clients = 2
    cluster = Cluster(tmp / "ingest-cluster")
    horizons = [Horizon(cluster.url, tmp / f"horizon{i}", 86400) for i in range(clients)]
    try:
        for h in horizons:
            h.wait_listening()
        ctx = mp.get_context("spawn")
        ready, results = ctx.Queue(), ctx.Queue()
        go = ctx.Event()
        now = int(time.time())
        jobs = [bench_ingest.Job("plaintext", c, clients, metrics, k, now, horizons[c].port, 0)
                for c in range(clients)]
        procs = [ctx.Process(target=bench_ingest.sender, args=(job, ready, go, results))
                 for job in jobs]
        progress(f"ingest: encoding {k:,} points of {metrics:,} metrics in {clients} senders")
        for p in procs:
            p.start()
        sent = sum(ready.get() for _ in procs)
        names = [bench_ingest.metric_name("plaintext", i) for i in range(metrics)]
        progress("ingest: sending")
        c0, h0 = cluster.cpu(), [h.cpu() for h in horizons]
        t0 = time.monotonic()
        go.set()
        done = [results.get() for _ in procs]
        t_accepted = max(t for t, _ in done) - t0
        for p in procs:
            p.join()
        progress(f"ingest: all read by the horizons after {t_accepted:.1f} s; waiting for "
                 "the cluster")
        stored, last, last_change = 0, -1, time.monotonic()
        while True:
            stored = int(cluster.store.read(names).counts.sum())
            now_m = time.monotonic()
            if stored >= sent:
                break
            if stored != last:
                last, last_change = stored, now_m
            elif now_m - last_change > SETTLE_TIMEOUT:
                break
            time.sleep(0.1)
        t_stored = time.monotonic() - t0
        node_cpu, horizon_cpu = deltas(cluster.cpu(), c0), deltas([h.cpu() for h in horizons],
                                                                  h0)
        owner = cluster.topo.masters_of(names)
        share = np.bincount(owner, minlength=3).tolist()
        indexed = cluster.store.count()
    finally:
        codes = [h.stop() for h in horizons]
        cluster.close()
    tracebacks = sum("Traceback" in h.log_path.read_text() for h in horizons)
    accepted, end_to_end = sent / t_accepted, sent / t_stored
    print(f"ingest: {sent:,} Graphite plaintext points of {metrics:,} metrics, 2 horizons, "
          f"one sender each; series per master {share}")
    print(f"  accepted {accepted:,.0f} points/s ({t_accepted:.1f} s); in the cluster "
          f"{end_to_end:,.0f} points/s end to end ({t_stored:.1f} s); loss {sent - stored}; "
          f"indexed {indexed:,} metrics")
    print(f"  redis CPU per master: {fmt(node_cpu)} s; horizon CPU {fmt(horizon_cpu)} s; "
          f"horizons exited {codes}, tracebacks in logs: {tracebacks}", flush=True)
    return {"ingest_points": sent, "ingest_metrics": metrics,
            "ingest_accepted_per_s": round(accepted), "ingest_points_per_s": round(end_to_end),
            "ingest_loss": sent - stored, "ingest_indexed": indexed,
            "node_cpu_ingest_s": node_cpu, "horizon_cpu_ingest_s": horizon_cpu}


STORE_KEYS = ("single_read_s", "cluster_read_s", "single_append_s", "cluster_append_s",
              "share", "node_cpu_s")
ANALYZER_KEYS = ("analyzer_load_s", "analyzer_share", "analyzer_1_pass1_s",
                 "analyzer_1_pass2_s", "analyzer_1_metrics", "analyzer_1_analysed",
                 "analyzer_2_pass1_s", "analyzer_2_pass2_s", "analyzer_2_pass2_wall_s",
                 "analyzer_2_fetch_s", "analyzer_2_metrics", "analyzer_2_analysed",
                 "exactly_once", "analyzer_bytes_read", "node_cpu_analyzer_1_s",
                 "node_cpu_analyzer_2_s", "net_out_analyzer_1_bytes",
                 "net_out_analyzer_2_bytes")
INGEST_KEYS = ("ingest_points", "ingest_metrics", "ingest_accepted_per_s",
               "ingest_points_per_s", "ingest_loss", "ingest_indexed", "node_cpu_ingest_s",
               "horizon_cpu_ingest_s")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", action="store_true", help="the store's reads and appends")
    ap.add_argument("--analyzer", action="store_true", help="1 and 2 analyzers")
    ap.add_argument("--ingest", action="store_true", help="2 horizons")
    ap.add_argument("--metrics", type=int, default=100_000)
    ap.add_argument("--points", type=int, default=1440)
    ap.add_argument("--passes", type=int, default=3, help="--store: timed passes (median)")
    ap.add_argument("--ingest-points", type=int, default=2_000_000)
    ap.add_argument("--ingest-metrics", type=int, default=10_000)
    args = ap.parse_args()
    if not (args.store or args.analyzer or args.ingest):
        args.store = args.analyzer = args.ingest = True
    out: dict[str, Any] = {"bench": "cluster", "metrics": args.metrics, "points": args.points}
    out.update(dict.fromkeys(STORE_KEYS + ANALYZER_KEYS + INGEST_KEYS))
    with tempfile.TemporaryDirectory(prefix="skyline-bench-cluster-") as d:
        tmp = Path(d)
        print(f"cluster bench: 3 masters, no replicas; {os.cpu_count()} cores", flush=True)
        if args.store:
            out.update(store_section(args, tmp))
        if args.analyzer:
            out.update(analyzer_section(args, tmp))
        if args.ingest:
            out.update(ingest_section(args, tmp))
    out["load"] = round(os.getloadavg()[0], 1)
    print(f"load {out['load']} on {os.cpu_count()} cores")
    print(json.dumps(out))
    return 0 if out["exactly_once"] is not False and not out["ingest_loss"] else 1


if __name__ == "__main__":
    sys.exit(main())
