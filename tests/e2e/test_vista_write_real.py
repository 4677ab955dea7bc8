"""Vista's remote_write of anomaly scores and events from a real `skyline run` into a real
VictoriaMetrics, and into a real Prometheus with its remote-write receiver, read back through
the receiver's own query_range (as a Grafana panel or an alert rule there would read them)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from skyline.core.events import AnomalyEvent
from skyline.events.stream import publish
from skyline.settings import load_settings
from skyline.store import keys
from skyline.store.redis_client import redis_session
from skyline.store.series import encode
from tests.conftest import free_port
from tests.e2e.skylineproc import Running, env_for
from tests.servers import prometheus, send_lines, victoriametrics

pytestmark = pytest.mark.system

METRIC = "web.host1.rps"


@pytest.fixture(params=["victoriametrics", "prometheus"])
def vm(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The receiver: its base URL (remote_write at /api/v1/write on both)."""
    if request.param == "victoriametrics":
        server, url = victoriametrics(tmp_path)
    else:
        server, url = prometheus(tmp_path, "global:\n  scrape_interval: 15s\n",
                                 "--web.enable-remote-write-receiver")
    yield url
    server.close()


def _query_range(vm: str, query: str, start: float, end: float) -> dict[float, float]:
    r = httpx.get(f"{vm}/api/v1/query_range",
                  params={"query": query, "start": start, "end": end, "step": "60s"},
                  timeout=10)
    r.raise_for_status()
    result = r.json()["data"]["result"]
    assert len(result) <= 1, result
    return {float(t): float(v) for t, v in result[0]["values"]} if result else {}


def _wait(vm: str, query: str, start: float, end: float, n: int) -> dict[float, float]:
    deadline = time.monotonic() + 90
    while True:
        got = _query_range(vm, query, start, end)
        if len(got) >= n or time.monotonic() > deadline:
            return got
        time.sleep(0.5)


def test_scores_and_events_arrive_in_the_receiver(vm, tmp_path):
    port = free_port()
    data = tmp_path / "var"
    env = env_for(data, port, SKYLINE_INGEST__FLUSH_INTERVAL="0.2",
                  SKYLINE_VISTA__REMOTE_WRITE_URL=f"{vm}/api/v1/write",
                  SKYLINE_VISTA__REMOTE_WRITE_INTERVAL="1",
                  SKYLINE_VISTA__REMOTE_WRITE_LABELS=json.dumps({"skyline": "e2e"}))
    run = Running(env, tmp_path)
    try:
        run.wait_healthy(f"http://127.0.0.1:{port}")
        now = int(time.time()) // 60 * 60
        send_lines(int(env["SKYLINE_HORIZON__PLAINTEXT_PORT"]),
                   [f"{METRIC} {i} {now - 60 * (5 - i)}" for i in range(6)])
        t = now - 60.0 * np.arange(5)[::-1]
        scores = [0.1, 0.2, 0.3, 0.5, 0.95]
        with redis_session(load_settings(DATA_DIR=data)) as h:
            deadline = time.monotonic() + 30
            while not h.client.sismember(keys.METRIC_INDEX, METRIC):
                assert time.monotonic() < deadline, "the seeded points did not arrive"
                time.sleep(0.2)
            # the analyzer's score series, as it writes it (keys.scores, packed like a series)
            h.client.set(keys.scores(METRIC), encode(t, np.array(scores)))
            publish(h.client, AnomalyEvent.build(metric=METRIC, timestamp=float(now - 60),
                                                 value=4.0, score=0.95, source="analyzer"))
        got = _wait(vm, f'skyline_anomaly_score{{metric="{METRIC}",skyline="e2e"}}',
                    now - 600, now, 5)
        assert sorted(got) == t.tolist()
        # VictoriaMetrics stores floats as decimals: compare within a relative 1e-12
        assert [got[k] for k in t.tolist()] == pytest.approx(scores, rel=1e-12)
        events = _wait(vm, f'skyline_anomaly{{metric="{METRIC}",source="analyzer",'
                       'status="anomalous"}', now - 60, now - 60, 1)
        assert events == {float(now - 60): pytest.approx(0.95, rel=1e-12)}
    finally:
        assert run.stop() == 0, run.stderr
    assert "Traceback" not in run.stderr
