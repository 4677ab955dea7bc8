"""Horizon ingest bench: real TCP senders against `skyline serve horizon` on embedded Redis.

Starts `skyline serve horizon` as a subprocess (a temporary DATA_DIR, free ports, no roomba,
so nothing is trimmed while counting), then for each protocol (Graphite plaintext, then
Graphite pickle) runs --clients sender processes at once. Each sender encodes its payload
before the clock starts: its share of the metrics, every metric's points 1 s apart and ending
now (time-major order, as a relay forwards them), pickle in frames of --frame-points as
carbon-relay sends. Then all senders connect together and send.

Figures per protocol:
- accepted datapoints/s: points / time until every sender's connection was read to its end
  (horizon has parsed and accepted everything; the server closes after EOF);
- stored datapoints/s: points / time until every point is in Redis (sum of the series
  lengths, counted before any trimming);
- CPU seconds of the horizon process, of its embedded redis-server, and of the senders;
- loss: points sent minus points stored (must be 0).

    .venv/bin/python bench/ingest.py                              # 10M points, 10k metrics
    .venv/bin/python bench/ingest.py --points 200000 --metrics 2000

Progress goes to stderr; the last stdout line is JSON.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import pickle
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from skyline.settings import load_settings
from skyline.store import keys
from skyline.store.hotstore import HotStore
from skyline.store.redis_client import redis_session
from skyline.store.series import POINT_SIZE

PROTOCOLS = ("plaintext", "pickle")
SETTLE_TIMEOUT = 120.0  # seconds without progress before giving up on the stored count
VERIFY_METRICS = 20


def progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def metric_name(protocol: str, m: int) -> str:
    return f"bench.{protocol}.host-{m // 100:04d}.metric-{m % 100:02d}"


def points_of(m: int, metrics: int, points: int) -> int:
    return points // metrics + (1 if m < points % metrics else 0)


def expected(m: int, metrics: int, points: int, now: int) -> tuple[np.ndarray, np.ndarray]:
    k = points_of(m, metrics, points)
    i = np.arange(k, dtype=np.float64)
    return now - (k - 1) + i, (m % 97) + i * 0.25


# senders (separate processes) ---------------------------------------------------------------
@dataclass
class Job:
    protocol: str
    client: int
    clients: int
    metrics: int
    points: int
    now: int
    port: int
    frame_points: int


def encode(job: Job) -> tuple[bytes, int]:
    """This sender's payload: metrics client, client + clients, ... in time-major order."""
    mine = range(job.client, job.metrics, job.clients)
    series = [(metric_name(job.protocol, m), *expected(m, job.metrics, job.points, job.now))
              for m in mine]
    depth = max((len(t) for _, t, _ in series), default=0)
    records: list[tuple[str, float, float]] = []
    for i in range(depth):
        for name, t, v in series:
            if i < len(t):
                records.append((name, float(t[i]), float(v[i])))
    if job.protocol == "plaintext":
        payload = "".join(f"{n} {v!r} {int(t)}\n" for n, t, v in records).encode()
    else:
        frames = []
        for start in range(0, len(records), job.frame_points):
            body = pickle.dumps([(n, (t, v)) for n, t, v in records[start:start + job.frame_points]],
                                protocol=2)
            frames.append(struct.pack("!I", len(body)) + body)
        payload = b"".join(frames)
    return payload, len(records)


def sender(job: Job, ready: Any, go: Any, results: Any) -> None:
    payload, count = encode(job)
    ready.put(count)
    go.wait()
    cpu0 = time.process_time()
    with socket.create_connection(("127.0.0.1", job.port)) as s:
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        while s.recv(65536):  # horizon closes once it has read everything
            pass
    results.put((time.monotonic(), time.process_time() - cpu0))


# the server -----------------------------------------------------------------------------------
class Server:
    def __init__(self, data_dir: Path, ports: dict[str, int], full_duration: int):
        env = {k: v for k, v in os.environ.items() if not k.startswith("SKYLINE_")}
        env.update({
            "SKYLINE_DATA_DIR": str(data_dir),
            "SKYLINE_HORIZON__PLAINTEXT_PORT": str(ports["plaintext"]),
            "SKYLINE_PICKLE_PORT": str(ports["pickle"]),
            "SKYLINE_HORIZON__PLAINTEXT_UDP_PORT": "0",
            "SKYLINE_UDP_PORT": "0",
            "SKYLINE_HORIZON__STATSD_PORT": "0",
            "SKYLINE_MAX_METRICS": "0",
            "SKYLINE_MAX_NEW_METRICS_PER_MINUTE": "0",
            "SKYLINE_FULL_DURATION": str(full_duration),
            "SKYLINE_LOG_LEVEL": "WARNING",
        })
        self.log = open(data_dir.parent / "server.log", "w")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "skyline.cli.main", "serve", "horizon"], env=env,
            stdout=self.log, stderr=subprocess.STDOUT)
        self.ps = psutil.Process(self.proc.pid)

    def wait_listening(self, port: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"skyline serve horizon exited {self.proc.returncode}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("horizon did not start listening")

    def cpu(self) -> tuple[float, float]:
        """CPU seconds (user + system) of horizon itself and of its embedded redis-server."""
        t = self.ps.cpu_times()
        redis_cpu = 0.0
        for child in self.ps.children(recursive=True):
            with_times = child.cpu_times()
            redis_cpu += with_times.user + with_times.system
        return t.user + t.system, redis_cpu

    def stop(self) -> None:
        self.proc.send_signal(2)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def stored_points(store: HotStore, names: list[str]) -> int:
    total = 0
    for start in range(0, len(names), 5000):
        pipe = store.client.pipeline(transaction=False)
        for name in names[start:start + 5000]:
            pipe.strlen(keys.series(name))
        total += sum(pipe.execute())
    return total // POINT_SIZE


def run_protocol(args: argparse.Namespace, protocol: str, server: Server, store: HotStore,
                 port: int) -> dict[str, Any]:
    ctx = mp.get_context("fork")
    ready, results = ctx.Queue(), ctx.Queue()
    go = ctx.Event()
    now = int(time.time())
    procs = [ctx.Process(target=sender, args=(Job(protocol, c, args.clients, args.metrics,
                                                  args.points, now, port, args.frame_points),
                                              ready, go, results))
             for c in range(args.clients)]
    progress(f"{protocol}: encoding {args.points:,} points of {args.metrics:,} metrics in "
             f"{args.clients} senders")
    for p in procs:
        p.start()
    sent = sum(ready.get() for _ in procs)
    names = [metric_name(protocol, m) for m in range(args.metrics)]
    progress(f"{protocol}: sending")
    cpu0, redis0 = server.cpu()
    t0 = time.monotonic()
    go.set()
    done = [results.get() for _ in procs]
    t_accepted = max(t for t, _ in done) - t0
    sender_cpu = sum(c for _, c in done)
    for p in procs:
        p.join()
    progress(f"{protocol}: all read by horizon after {t_accepted:.1f} s; waiting for Redis")
    stored, last_change, last = 0, time.monotonic(), -1
    while True:
        stored = stored_points(store, names)
        now_m = time.monotonic()
        if stored >= sent:
            break
        if stored != last:
            last, last_change = stored, now_m
        elif now_m - last_change > SETTLE_TIMEOUT:
            break
        time.sleep(0.05)
    t_stored = time.monotonic() - t0
    cpu1, redis1 = server.cpu()
    mismatches = 0
    for m in np.linspace(0, args.metrics - 1, min(VERIFY_METRICS, args.metrics)).astype(int):
        got = store.read_one(names[m])
        t, v = expected(int(m), args.metrics, args.points, now)
        if not (np.array_equal(got.timestamps, t) and np.array_equal(got.values, v)):
            mismatches += 1
    out = {
        "points": sent, "stored": stored, "loss": sent - stored,
        "accepted_dps": round(sent / t_accepted), "stored_dps": round(sent / t_stored),
        "seconds_accepted": round(t_accepted, 2), "seconds_stored": round(t_stored, 2),
        "horizon_cpu_s": round(cpu1 - cpu0, 2), "redis_cpu_s": round(redis1 - redis0, 2),
        "senders_cpu_s": round(sender_cpu, 2), "verify_mismatches": int(mismatches),
    }
    print(f"{protocol:>9}: {sent:,} points, accepted {out['accepted_dps']:,}/s "
          f"({t_accepted:.1f} s), stored {out['stored_dps']:,}/s ({t_stored:.1f} s), "
          f"horizon CPU {out['horizon_cpu_s']} s, redis CPU {out['redis_cpu_s']} s, "
          f"senders CPU {out['senders_cpu_s']} s, loss {out['loss']}, "
          f"sampled series that differ {mismatches}", flush=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--points", type=int, default=10_000_000)
    ap.add_argument("--metrics", type=int, default=10_000)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--frame-points", type=int, default=500,
                    help="points per pickle frame (carbon-relay's MAX_DATAPOINTS_PER_MESSAGE)")
    ap.add_argument("--protocols", default=",".join(PROTOCOLS))
    args = ap.parse_args()
    protocols = [p for p in args.protocols.split(",") if p]
    if args.metrics < 1 or args.points < args.metrics or set(protocols) - set(PROTOCOLS):
        ap.error("need --points >= --metrics >= 1 and protocols among plaintext,pickle")
    per_metric = -(-args.points // args.metrics)
    full_duration = min(30 * 86400, max(86400, per_metric + 3600))

    tmp = Path(tempfile.mkdtemp(prefix="skyline-bench-ingest-"))
    ports = {"plaintext": free_port(), "pickle": free_port()}
    server = Server(tmp / "var", ports, full_duration)
    results: dict[str, dict[str, Any]] = {}
    try:
        server.wait_listening(ports["plaintext"])
        progress(f"horizon pid {server.proc.pid} listening on {ports}; data in {tmp}")
        with redis_session(load_settings(DATA_DIR=tmp / "var")) as handle:
            store = HotStore(handle.client)
            for protocol in protocols:
                results[protocol] = run_protocol(args, protocol, server, store, ports[protocol])
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    summary: dict[str, Any] = {"bench": "ingest"}
    for protocol, r in results.items():
        summary[f"{protocol}_dps"] = r["accepted_dps"]
    summary["loss"] = sum(r["loss"] for r in results.values())
    summary.update({"points": args.points, "metrics": args.metrics, "clients": args.clients,
                    "cpus": os.cpu_count()})
    for protocol, r in results.items():
        for k in ("stored_dps", "horizon_cpu_s", "redis_cpu_s", "senders_cpu_s"):
            summary[f"{protocol}_{k}"] = r[k]
    print(json.dumps(summary))
    bad = summary["loss"] != 0 or any(r["verify_mismatches"] for r in results.values())
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
