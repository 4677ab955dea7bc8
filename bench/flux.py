"""Flux bench: points per second through the real HTTP stack into the embedded hot store.

The web app with flux's routes runs under uvicorn in this process, on a loopback port, with a
flush loop writing accepted points to an embedded Redis (a temporary DATA_DIR) as `skyline
run` does. One client thread (httpx, keep-alive) posts, one request at a time:

- remote_write: WriteRequests of --series series with one sample each (snappy + protobuf);
- json: /flux/metric_data_post bodies of 450 metrics (FLUX_MAX_METRICS_PER_POST);
- influx: /api/v2/write bodies of --series lines with one field each.

Each request must answer 204. The figure is points accepted / wall time from the first request
to the last point written to Redis. Human lines on stdout, the last line JSON.

    .venv/bin/python bench/flux.py
    .venv/bin/python bench/flux.py --requests 50 --series 2000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cramjam
import httpx
import uvicorn

from skyline.runtime.context import Context
from skyline.services import flux
from skyline.services.flux.promwrite import WriteRequest
from skyline.services.webapp import create_app
from skyline.settings import load_settings
from skyline.store.redis_client import redis_session

KEY = "B" * 32


def remote_write_body(i: int, series: int, now: float) -> bytes:
    req = WriteRequest()
    t = int((now + i * 0.001) * 1000)
    for s in range(series):
        ts = req.timeseries.add()
        ts.labels.add(name="__name__", value="bench_metric")
        ts.labels.add(name="instance", value=f"host{s % 100}:9100")
        ts.labels.add(name="series", value=str(s))
        ts.samples.add(timestamp=t, value=float(s))
    return bytes(cramjam.snappy.compress_raw(req.SerializeToString()))


def json_body(i: int, series: int, now: float) -> bytes:
    t = now + i * 0.001
    return json.dumps({"metrics": [{"metric": f"bench.json.m{s}", "timestamp": t, "value": s}
                                   for s in range(450)]}).encode()


def influx_body(i: int, series: int, now: float) -> bytes:
    t = int((now + i * 0.001) * 1e9)
    return "".join(f"bench,host=h{s % 100},s={s} value={s} {t}\n"
                   for s in range(series)).encode()


CASES: dict[str, tuple[str, dict[str, str], Callable[[int, int, float], bytes], bool]] = {
    "remote_write": ("/flux/prometheus/write", {"Content-Encoding": "snappy"},
                     remote_write_body, True),
    "json": ("/flux/metric_data_post", {"Content-Type": "application/json"}, json_body, False),
    "influx": ("/api/v2/write", {}, influx_body, True),
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=100)
    ap.add_argument("--series", type=int, default=1000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(DATA_DIR=Path(tmp) / "var", FLUX_API_KEYS={KEY: "bench"},
                                 ingest={"flush_interval": 0.2})
        with redis_session(settings) as handle:
            ctx = Context(settings, handle)
            figures = asyncio.run(_run(ctx, args.requests, args.series))
    for name, (points, seconds) in figures.items():
        print(f"{name:13} {points:8d} points in {seconds:6.2f} s: {points / seconds:10.0f} "
              "points/s")
    print(json.dumps({"bench": "flux", **{f"{k}_pps": round(p / s) for k, (p, s) in
                                          figures.items()}}))
    return 0


async def _run(ctx: Context, requests: int, series: int) -> dict[str, tuple[int, float]]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    app = create_app(ctx, flux.routers(ctx))
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False,
                                           lifespan="off"))
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    stop = asyncio.Event()

    async def flush_loop() -> None:
        while not stop.is_set():
            await asyncio.to_thread(ctx.points.flush)
            ctx.ingest.after_flush()
            await asyncio.sleep(ctx.settings.ingest.flush_interval)

    flusher = asyncio.create_task(flush_loop())
    while not server.started:
        await asyncio.sleep(0.01)
    figures: dict[str, tuple[int, float]] = {}
    for name, (path, headers, make, per_series) in CASES.items():
        now = time.time() - 60
        bodies = [make(i, series, now) for i in range(requests)]
        per_request = series if per_series else 450
        result: dict[str, float] = {}

        def client(path: str = path, headers: dict[str, str] = headers,
                   bodies: list[bytes] = bodies, result: dict[str, float] = result) -> None:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}",
                              headers={"key": KEY, **headers}, timeout=60) as c:
                started = time.perf_counter()
                for body in bodies:
                    r = c.post(path, content=body)
                    if r.status_code != 204:
                        raise SystemExit(f"{path}: {r.status_code} {r.text[:200]}")
                result["started"] = started

        written = ctx.points.written
        await asyncio.to_thread(client)
        total = requests * per_request
        # written counts points once Redis has them, not when a flush takes them
        while ctx.points.written - written < total:
            await asyncio.sleep(0.01)
        figures[name] = (total, time.perf_counter() - result["started"])
    stop.set()
    await flusher
    server.should_exit = True
    await serving
    return figures


if __name__ == "__main__":
    raise SystemExit(main())
