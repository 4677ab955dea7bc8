"""End-to-end alert latency: from a datapoint written to horizon's Graphite plaintext listener
to its alert arriving at a webhook.

`skyline run` (embedded Redis, SQLite) is started with one ALERTS rule sending
`bench.latency.**` to the webhook channel, pointed at a tiny HTTP server in this process that
records when each alert arrives. ANOMALIES metrics get 200 points of normal history (60 s
apart) through plaintext TCP; once it is stored, one spike point per metric is sent, each at
a recorded time, the sends spread at random over one run interval. Latency = arrival at the
webhook - time the spike line was written, so it includes the wait for the next analyzer run
(about half an interval on average).

1. Latency at --interval (ANALYZER_OPTIMUM_RUN_DURATION; default 60 s, as shipped, which
   makes this phase take minutes: the spike waits for the next run).
2. Keep-up search: --metrics series of history (default 10k) are loaded straight into the hot
   store (fresh, so none is Stale), and `skyline run` is started with each --candidates
   interval in decreasing order; an interval keeps up when none of --runs runs (after one
   warm-up run) took longer than the interval, per the analyzer_runs table. The smallest that
   keeps up is reported, then the latency at that interval with the --metrics series loaded.

    .venv/bin/python bench/e2e_latency.py                          # 60 s, then 10k search
    .venv/bin/python bench/e2e_latency.py --interval 2 --metrics 2000 --candidates 4,2,1,0.5

Progress goes to stderr; human lines and, last, one JSON line to stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from skyline.settings import load_settings
from skyline.store import keys
from skyline.store.redis_client import redis_session
from skyline.store.series import POINT_DTYPE
from skyline.store.sql import latest_runs, make_engine

STEP = 60.0
POINTS = 200
PREFIX = "bench.latency"
SKYLINE = [sys.executable, "-m", "skyline.cli.main"]


def progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Sink:
    """A webhook receiver recording (metric, kind, arrival time) of every alert."""

    def __init__(self) -> None:
        self.arrivals: list[tuple[str, str, float]] = []
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                at = time.time()
                try:
                    a = json.loads(body)["alert"]
                    sink.arrivals.append((a["metric"], a["kind"], at))
                except (ValueError, KeyError, TypeError):
                    pass
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Skyline:
    """`skyline run` in a subprocess, its log in a file (a pipe nobody reads would fill)."""

    def __init__(self, data: Path, cfg: Path, interval: float, log: Path):
        self.data = data
        self.web = free_port()
        self.plaintext = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("SKYLINE_")}
        env.update({
            "SKYLINE_DATA_DIR": str(data), "SKYLINE_CONFIG": str(cfg),
            "SKYLINE_WEBAPP_PORT": str(self.web),
            "SKYLINE_HORIZON__PLAINTEXT_PORT": str(self.plaintext),
            "SKYLINE_HORIZON__PLAINTEXT_UDP_PORT": str(free_port(socket.SOCK_DGRAM)),
            "SKYLINE_PICKLE_PORT": str(free_port()),
            "SKYLINE_UDP_PORT": str(free_port(socket.SOCK_DGRAM)),
            "SKYLINE_HORIZON__STATSD_PORT": str(free_port(socket.SOCK_DGRAM)),
            "SKYLINE_ANALYZER_OPTIMUM_RUN_DURATION": str(interval),
        })
        self.log = log.open("a")
        self.proc = subprocess.Popen([*SKYLINE, "run"], env=env, cwd=data.parent,
                                     stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise SystemExit(f"skyline exited {self.proc.returncode}; see {log}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.web}/api/v1/health",
                             timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"skyline not healthy after 60 s; see {log}")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def write_config(path: Path, url: str) -> None:
    path.write_text(f"""
[[ALERTS]]
pattern = "{PREFIX}.**"
channel = "webhook"
expiration = 3600

[alerters.webhook]
enabled = true
url = "{url}"
rate_limit = 0
""")


def load_direct(data: Path, n: int, end: float) -> None:
    """`n` series of noise straight into the hot store (not alerted: outside the rule)."""
    t = end - STEP * np.arange(POINTS)[::-1]
    rng = np.random.default_rng(7)
    pts = np.empty(POINTS, dtype=POINT_DTYPE)
    pts["t"] = t
    with redis_session(load_settings(DATA_DIR=data)) as h:
        for lo in range(0, n, 2000):
            hi = min(n, lo + 2000)
            names = [f"bench.background.m{i:06d}" for i in range(lo, hi)]
            pipe = h.client.pipeline(transaction=False)
            for name in names:
                pts["v"] = rng.normal(rng.uniform(50, 500), rng.uniform(1, 5), POINTS)
                pipe.set(keys.series(name), pts.tobytes())
            pipe.sadd(keys.METRIC_INDEX, *names)
            pipe.execute()


def stored_points(data: Path, names: list[str]) -> int:
    """Fewest points stored among `names`."""
    with redis_session(load_settings(DATA_DIR=data)) as h:
        pipe = h.client.pipeline(transaction=False)
        for n in names:
            pipe.strlen(keys.series(n))
        return min(pipe.execute()) // POINT_DTYPE.itemsize


def latency(work: Path, interval: float, anomalies: int, background: int,
            sink: Sink) -> dict[str, Any]:
    """One `skyline run` at `interval`: plant `anomalies` spikes, time their alerts."""
    data = Path(tempfile.mkdtemp(prefix=f"lat-{interval:g}-", dir=work)) / "var"
    sky = Skyline(data, work / "skyline.toml", interval, data.parent / "skyline.log")
    try:
        names = [f"{PREFIX}.host-{i // 10:03d}.m{i % 10}" for i in range(anomalies)]
        spike_ts = float(int(time.time()))
        if background:
            progress(f"  loading {background:,} background metrics into the hot store")
            load_direct(data, background, spike_ts)
        progress(f"  sending {anomalies} x {POINTS - 1} points of history through plaintext")
        ts = spike_ts - STEP * np.arange(1, POINTS)[::-1]
        rng = np.random.default_rng(1)
        lines = []
        for name in names:
            v = rng.normal(100.0, 5.0, len(ts))
            lines += [f"{name} {x:.3f} {t:.0f}\n" for t, x in zip(ts, v, strict=True)]
        with socket.create_connection(("127.0.0.1", sky.plaintext), timeout=30) as s:
            s.sendall("".join(lines).encode())
        deadline = time.monotonic() + 60
        while stored_points(data, names) < POINTS - 1:
            if time.monotonic() > deadline:
                raise SystemExit("history was not stored within 60 s")
            time.sleep(0.2)
        progress(f"  history stored; sending {anomalies} spikes over {interval:g} s")
        # spread over one run interval, as real anomalies arrive: sent at one instant, they
        # would all share one phase of the analyzer's cycle and time only that phase
        offsets = np.sort(np.random.default_rng(2).uniform(0.0, interval, len(names)))
        sent: dict[str, float] = {}
        with socket.create_connection(("127.0.0.1", sky.plaintext), timeout=30) as s:
            start = time.monotonic()
            for name, off in zip(names, offsets, strict=True):
                pause = start + off - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                now = time.time()
                s.sendall(f"{name} 1500.0 {max(now, spike_ts):.0f}\n".encode())
                sent[name] = now
        wait = 3 * interval + 60
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            got = {m for m, k, _ in sink.arrivals if k == "alert" and m in sent}
            if len(got) == len(sent):
                break
            time.sleep(0.1)
        first: dict[str, float] = {}
        for m, k, at in sink.arrivals:
            if k == "alert" and m in sent and m not in first:
                first[m] = at
        dup = sum(1 for m, k, _ in sink.arrivals if k == "alert" and m in sent) - len(first)
    finally:
        sky.stop()
    lat = np.array([first[m] - sent[m] for m in first])
    out: dict[str, Any] = {"interval": interval, "background_metrics": background,
                           "anomalies": anomalies, "alerted": len(first),
                           "duplicates": dup}
    if len(lat):
        out.update(p50=round(float(np.percentile(lat, 50)), 3),
                   p99=round(float(np.percentile(lat, 99)), 3),
                   min=round(float(lat.min()), 3), max=round(float(lat.max()), 3))
    sink.arrivals.clear()
    return out


def keeps_up(work: Path, metrics: int, interval: float, runs: int) -> dict[str, Any]:
    data = Path(tempfile.mkdtemp(prefix=f"keepup-{interval:g}-", dir=work)) / "var"
    sky = Skyline(data, work / "skyline.toml", interval, data.parent / "skyline.log")
    engine = make_engine(f"sqlite:///{data / 'skyline.db'}")
    try:
        load_direct(data, metrics, time.time())
        loaded = time.time()
        # one warm-up run, then `runs` runs, all started after the load
        timeout = (runs + 2) * max(interval, 1.0) * 4 + 60
        deadline = time.monotonic() + timeout
        done: list[Any] = []
        while time.monotonic() < deadline:
            done = [r for r in latest_runs(engine, limit=runs + 10) if r.started >= loaded]
            if len(done) >= runs + 1 and all(r.metrics >= metrics for r in done):
                break
            time.sleep(0.2)
    finally:
        engine.dispose()
        sky.stop()
    done = sorted(done, key=lambda r: r.started)[1:runs + 1]
    durations = [round(r.duration, 3) for r in done]
    return {"interval": interval, "runs": len(done), "durations": durations,
            "metrics": done[0].metrics if done else 0,
            "ok": len(done) == runs and max(durations) <= interval}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--metrics", type=int, default=10_000,
                    help="metrics loaded for the keep-up search (0 skips it)")
    ap.add_argument("--anomalies", type=int, default=100, help="planted anomalies")
    ap.add_argument("--interval", type=float, default=60.0,
                    help="ANALYZER_OPTIMUM_RUN_DURATION of the first latency phase")
    ap.add_argument("--candidates", default="30,20,10,5,3,2,1,0.5,0.25",
                    help="intervals tried by the keep-up search, tried in decreasing order")
    ap.add_argument("--runs", type=int, default=3, help="runs that must not overrun")
    ap.add_argument("--keep", action="store_true",
                    help="keep the data directories and skyline logs, and print where")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="skyline-e2e-latency-"))
    sink = Sink()
    write_config(work / "skyline.toml", sink.url)
    result: dict[str, Any] = {"bench": "e2e_latency", "interval": args.interval,
                              "anomalies": args.anomalies, "metrics": args.metrics}
    try:
        progress(f"latency at interval {args.interval:g} s ({args.anomalies} anomalies)")
        lat = latency(work, args.interval, args.anomalies, 0, sink)
        result["latency"] = lat
        print(f"interval {args.interval:g} s: {lat['alerted']}/{args.anomalies} alerted, "
              f"p50 {lat.get('p50')} s, p99 {lat.get('p99')} s")
        if args.metrics:
            tried = []
            best: float | None = None
            for c in sorted({float(x) for x in args.candidates.split(",")}, reverse=True):
                progress(f"keep-up: {args.metrics:,} metrics at interval {c:g} s")
                k = keeps_up(work, args.metrics, c, args.runs)
                progress(f"  runs {k['durations']} -> {'ok' if k['ok'] else 'overrun'}")
                tried.append(k)
                if not k["ok"]:
                    break
                best = c
            # every candidate kept up: the true shortest may be shorter still
            result["keepup"] = {"tried": tried, "shortest_interval": best,
                                "limited_by_candidates": bool(tried) and tried[-1]["ok"]}
            print(f"keep-up with {args.metrics:,} metrics: shortest interval {best} s "
                  f"(tried {[t['interval'] for t in tried]})")
            if best is not None:
                progress(f"latency at interval {best:g} s with {args.metrics:,} metrics")
                lk = latency(work, best, args.anomalies, args.metrics, sink)
                result["keepup"]["latency"] = lk
                print(f"interval {best:g} s + {args.metrics:,} metrics: "
                      f"{lk['alerted']}/{args.anomalies} alerted, p50 {lk.get('p50')} s, "
                      f"p99 {lk.get('p99')} s")
    except BaseException:
        progress(f"failed; logs kept in {work}")
        raise
    else:
        if args.keep:
            progress(f"logs kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    finally:
        sink.close()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
