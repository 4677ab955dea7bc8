"""Soak bench: `skyline run` under a steady load for a long time, RSS per component per minute.

Starts `skyline run` (a temporary DATA_DIR, free ports, embedded Redis and SQLite, every
component) with FULL_DURATION short enough (--full-duration, default 900 s) that the roomba
trims from the first quarter hour on, then sends --metrics metrics one point each every
--interval seconds over Graphite plaintext (a sender process) and a few flux JSON posts. Every
minute it prints the resident memory of each process (the main one: web app, flux, analyzer
scheduling, panorama, alerters, roomba; horizon's own; the analyzer workers together; the
embedded redis-server) and Redis' used memory. At the end, per component, the slope of a
least-squares line over the second half of the run (MB per hour: a plateau is near 0) and
over the whole run.

    .venv/bin/python bench/soak.py                      # an hour, 10k metrics
    .venv/bin/python bench/soak.py --minutes 5 --metrics 2000

Progress goes to stderr; per-minute lines and the summary to stdout; the last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil

from skyline.settings import load_settings
from skyline.store.redis_client import redis_session

COMPONENTS = ("main", "horizon", "analyzer_workers", "redis_rss", "redis_used")


def progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sender(port: int, metrics: int, interval: float, stop: Any) -> None:
    """One point per metric every `interval` seconds, as a relay would send them."""
    names = [f"soak.host-{m // 100:04d}.metric-{m % 100:02d}" for m in range(metrics)]
    sock: socket.socket | None = None
    tick = time.time()
    while not stop.is_set():
        stamp = int(tick)
        payload = "".join(f"{n} {(m * 7 + stamp) % 100} {stamp}\n"
                          for m, n in enumerate(names)).encode()
        try:
            if sock is None:
                sock = socket.create_connection(("127.0.0.1", port), timeout=30)
            sock.sendall(payload)
        except OSError:
            if sock is not None:
                sock.close()
            sock = None
        tick += interval
        stop.wait(max(0.0, tick - time.time()))
    if sock is not None:
        sock.close()


def rss_by_component(root: psutil.Process) -> dict[str, float]:
    """MB resident per component; the analyzer's worker processes summed."""
    out = dict.fromkeys(COMPONENTS[:-1], 0.0)
    out["main"] = root.memory_info().rss / 2**20
    for p in root.children(recursive=True):
        try:
            cmd = " ".join(p.cmdline())
            rss = p.memory_info().rss / 2**20
        except psutil.Error:
            continue
        if "redis-server" in cmd:
            out["redis_rss"] += rss
        elif "serve horizon" in cmd:
            out["horizon"] += rss
        else:  # the analyzer's workers, custom-algorithm children, their forkserver
            out["analyzer_workers"] += rss
    return out


def slope_per_hour(minutes: list[float], values: list[float]) -> float | None:
    if len(minutes) < 3:
        return None
    a, _b = np.polyfit(np.asarray(minutes), np.asarray(values), 1)
    return round(float(a) * 60, 1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=60)
    ap.add_argument("--metrics", type=int, default=10_000)
    ap.add_argument("--interval", type=float, default=10.0)
    ap.add_argument("--full-duration", type=int, default=900)
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="skyline-soak-"))
    web = free_port()
    plaintext = free_port()
    key = "soak-soak-soak-soak-soak-soak-00"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SKYLINE_")}
    env.update({
        "SKYLINE_DATA_DIR": str(tmp / "var"), "SKYLINE_WEBAPP_PORT": str(web),
        "SKYLINE_HORIZON__PLAINTEXT_PORT": str(plaintext),
        "SKYLINE_HORIZON__PLAINTEXT_UDP_PORT": str(free_port(socket.SOCK_DGRAM)),
        "SKYLINE_PICKLE_PORT": str(free_port()),
        "SKYLINE_UDP_PORT": str(free_port(socket.SOCK_DGRAM)),
        "SKYLINE_HORIZON__STATSD_PORT": str(free_port(socket.SOCK_DGRAM)),
        "SKYLINE_FULL_DURATION": str(args.full_duration),
        "SKYLINE_MAX_NEW_METRICS_PER_MINUTE": str(max(args.metrics * 2, 1000)),
        "SKYLINE_FLUX_API_KEYS": json.dumps({key: "soakflux"}),
    })
    proc = subprocess.Popen([sys.executable, "-m", "skyline.cli.main", "run"], env=env,
                            cwd=tmp, stdout=subprocess.DEVNULL, stderr=open(tmp / "log", "w"))
    stop = mp.Event()
    send = mp.Process(target=sender, args=(plaintext, args.metrics, args.interval, stop))
    rows: list[dict[str, float]] = []
    try:
        base = f"http://127.0.0.1:{web}"
        deadline = time.monotonic() + 120
        while True:
            try:
                r = httpx.get(f"{base}/api/v1/health", timeout=5)
                # up, and horizon's own process too (it imports for a few seconds)
                if r.status_code == 200 and "horizon" in r.json().get("components", {}):
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit("skyline did not come up: see " + str(tmp / "log"))
            time.sleep(0.5)
        progress(f"skyline run up (pid {proc.pid}); {args.metrics} metrics every "
                 f"{args.interval:g} s for {args.minutes:g} min")
        send.start()
        root = psutil.Process(proc.pid)
        settings = load_settings(DATA_DIR=tmp / "var")
        started = time.monotonic()
        with redis_session(settings) as handle, httpx.Client(base_url=base, timeout=30) as c:
            print("minute " + " ".join(f"{k:>16}" for k in COMPONENTS), flush=True)
            minute = 0
            while minute <= args.minutes:
                # a little flux traffic too, so its code paths run all along
                for _ in range(6):
                    c.post("/flux/metric_data_post", headers={"key": key},
                           json={"metrics": [{"metric": f"m{i}", "value": i,
                                              "timestamp": int(time.time())}
                                             for i in range(50)]})
                row = rss_by_component(root)
                row["redis_used"] = float(handle.client.info("memory")["used_memory"]) / 2**20
                row["minute"] = float(minute)
                rows.append(row)
                print(f"{minute:>6} " + " ".join(f"{row[k]:>16.1f}" for k in COMPONENTS),
                      flush=True)
                minute += 1
                time.sleep(max(0.0, started + minute * 60 - time.monotonic()))
                if proc.poll() is not None:
                    raise SystemExit("skyline exited during the soak: see " + str(tmp / "log"))
    finally:
        stop.set()
        if send.is_alive():
            send.join(timeout=30)
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=90)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)

    minutes = [r["minute"] for r in rows]
    half = len(rows) // 2
    summary: dict[str, Any] = {"bench": "soak", "minutes": args.minutes,
                               "metrics": args.metrics, "interval": args.interval}
    print("\ncomponent          first MB  last MB   slope MB/h (all)  slope MB/h (2nd half)")
    for k in COMPONENTS:
        values = [r[k] for r in rows]
        all_slope = slope_per_hour(minutes, values)
        late = slope_per_hour(minutes[half:], values[half:])
        print(f"{k:<18} {values[0]:>8.1f} {values[-1]:>8.1f} {all_slope!s:>18} {late!s:>22}")
        summary[f"{k}_first_mb"] = round(values[0], 1)
        summary[f"{k}_last_mb"] = round(values[-1], 1)
        summary[f"{k}_slope_mb_per_h"] = all_slope
        summary[f"{k}_late_slope_mb_per_h"] = late
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
