"""`skyline run` against an external Redis that goes down and comes back: the service keeps
running, reports the outage, recovers by itself, and loses none of the points it accepted
meanwhile (here: its own self-metric series)."""

from __future__ import annotations

import time

import httpx

from skyline.store.hotstore import HotStore
from skyline.store.redis_client import make_client
from tests.conftest import free_port
from tests.e2e.skylineproc import Running, env_for
from tests.redisproc import RedisProcess


def test_service_survives_redis_restart_without_losing_points(tmp_path):
    server = RedisProcess(tmp_path / "redis", free_port())
    server.start()
    port = free_port()
    env = env_for(tmp_path / "var", port, SKYLINE_REDIS_URL=server.url,
                  SKYLINE_TELEMETRY__SERIES_INTERVAL="1", SKYLINE_ROOMBA__INTERVAL="0.5",
                  SKYLINE_REDIS__RETRY_MAX_BACKOFF="1")
    run = Running(env, tmp_path)
    health_url = f"http://127.0.0.1:{port}/api/v1/health"
    try:
        run.wait_healthy(f"http://127.0.0.1:{port}")
        time.sleep(2.5)
        server.stop()
        down_from = time.time()
        time.sleep(3)
        down = httpx.get(health_url, timeout=10)
        assert down.status_code == 503 and down.json()["redis"]["ok"] is False
        down_until = time.time()
        server.start()
        deadline = time.monotonic() + 30
        while httpx.get(health_url, timeout=10).status_code != 200:
            assert time.monotonic() < deadline, "service did not recover"
            time.sleep(0.2)
        time.sleep(2.5)
    finally:
        stop_at = time.time()
        code = run.stop()
        server_up = server.proc is not None
    assert code == 0, run.stderr
    assert "Traceback" not in run.stderr
    assert "unreachable" in run.stderr and "reachable again" in run.stderr
    assert server_up
    client = make_client(server.url, timeout=2)
    series = HotStore(client).read_one("skyline.roomba.passes")
    client.close()
    server.stop()
    ts = series.timestamps
    during = ts[(ts > down_from + 0.5) & (ts < down_until - 0.5)]
    # one point a second was produced while Redis was down; all must have landed afterwards
    assert len(during) >= 1, ts.tolist()
    # the points of the running service: the last one is taken when the stop has finished,
    # which on a loaded machine can be many seconds later (a component process still starting)
    running = ts[ts <= stop_at]
    assert running[-1] > down_until, ts.tolist()  # it went on writing after the outage
    gaps = running[1:] - running[:-1]
    assert gaps.max() < 2.5, f"a gap in the self-metric series: {gaps.max():.1f}s"
