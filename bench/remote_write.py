"""remote_write bench: Vista's send of anomaly scores for METRICS scored metrics to a real
VictoriaMetrics (or, with --no-vm or without the binary, to the tests' Python receiver).

Each metric has POINTS score points already sent, and one new one per pass (as after one
analyzer run). Measured per pass: the whole send (reading each score series' tail, finding
what is new, encoding, compressing, posting, recording what was sent), median of --passes;
the first send (the backfill of every metric's POINTS points) is reported apart. Embedded
Redis in a temporary directory.

    .venv/bin/python bench/remote_write.py                      # 100k metrics
    .venv/bin/python bench/remote_write.py --metrics 10000 --passes 3

Human lines go to stdout, progress to stderr; the last stdout line is JSON with `metrics`,
`pass_s` and `samples_per_s`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from skyline.remote import RemoteClient
from skyline.runtime.context import Context
from skyline.services.vista.writer import ScoreWriter, WriteResult
from skyline.settings import load_settings
from skyline.store import keys
from skyline.store.redis_client import redis_session
from skyline.store.series import encode

STEP = 60.0


def progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_vm(tmp: Path) -> tuple[subprocess.Popen[bytes], str] | None:
    binary = shutil.which("victoria-metrics")
    if binary is None:
        return None
    port = free_port()
    proc = subprocess.Popen([binary, f"-storageDataPath={tmp / 'vm'}",
                             f"-httpListenAddr=127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("victoria-metrics did not start")


def seed(ctx: Context, names: list[str], t: np.ndarray, rng: np.random.Generator) -> None:
    for start in range(0, len(names), 2000):
        pipe = ctx.client.pipeline(transaction=False)
        chunk = names[start:start + 2000]
        pipe.sadd(keys.METRIC_INDEX, *chunk)
        for n in chunk:
            pipe.append(keys.scores(n), encode(t, rng.random(len(t))))
        pipe.execute()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--metrics", type=int, default=100_000)
    ap.add_argument("--points", type=int, default=10)
    ap.add_argument("--passes", type=int, default=3)
    ap.add_argument("--no-vm", action="store_true", help="send to the Python test receiver")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    names = [f"bench.host{i % 1000}.m{i}" for i in range(args.metrics)]
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        vm = None if args.no_vm else start_vm(tmp)
        fake = None
        if vm is None:
            sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
            from tests.remotes import FakeRemote
            fake = FakeRemote()
            url = fake.url
        else:
            url = vm[1]
        receiver = "victoria-metrics" if vm else "python test receiver"
        settings = load_settings(DATA_DIR=tmp / "var", vista={
            "remote_write_url": f"{url}/api/v1/write", "remote_write_backfill": 86400,
            "remote_write_events": False, "timeout": 60})
        try:
            with redis_session(settings) as handle:
                ctx = Context(settings, handle)
                now = float(int(time.time()) // 60 * 60)
                progress(f"seeding {args.metrics} score series of {args.points} points")
                seed(ctx, names, now - STEP * np.arange(args.points)[::-1], rng)

                async def go() -> tuple[float, WriteResult, list[tuple[float, WriteResult]]]:
                    async with RemoteClient(ctx.telemetry("vista")) as client:
                        w = ScoreWriter(ctx, client, client.telemetry)
                        t0 = time.perf_counter()
                        first = await w.send(now)
                        took_first = time.perf_counter() - t0
                        runs = []
                        for k in range(1, args.passes + 1):
                            at = now + STEP * k
                            await asyncio.to_thread(seed, ctx, names, np.array([at]), rng)
                            t0 = time.perf_counter()
                            r = await w.send(at)
                            runs.append((time.perf_counter() - t0, r))
                        return took_first, first, runs

                took_first, first, runs = asyncio.run(go())
        finally:
            if vm is not None:
                vm[0].terminate()
                vm[0].wait()
            if fake is not None:
                fake.close()
    pass_s = statistics.median(t for t, _ in runs)
    samples = runs[0][1].samples
    load = os.getloadavg()[0]
    print(f"receiver: {receiver}; load {load:.1f} on {os.cpu_count()} cores")
    print(f"first send (backfill): {first.samples} samples in {first.requests} requests, "
          f"{took_first:.2f} s ({first.samples / took_first:,.0f} samples/s)")
    print(f"send of one new score per metric: {samples} samples, median {pass_s:.2f} s "
          f"over {len(runs)} passes ({samples / pass_s:,.0f} samples/s)")
    print(json.dumps({"bench": "remote_write", "receiver": receiver, "metrics": args.metrics,
                      "first_s": round(took_first, 3), "first_samples": first.samples,
                      "pass_s": round(pass_s, 3), "samples_per_s": round(samples / pass_s),
                      "load": round(load, 1)}))


if __name__ == "__main__":
    main()
