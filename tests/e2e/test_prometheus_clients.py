"""Real Prometheus clients reading a real `skyline run` through its Prometheus-compatible API:
promtool's instant and range queries, and a vmalert rule on `skyline_anomaly_score` firing
into a real Alertmanager."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from skyline.settings import load_settings
from skyline.store import keys
from skyline.store.redis_client import redis_session
from skyline.store.series import encode
from tests.conftest import free_port
from tests.e2e.skylineproc import AUTH, Running, env_for
from tests.servers import alertmanager, need, send_lines, vmalert
from tests.webauth import TOKEN

pytestmark = pytest.mark.system


class Sky:
    def __init__(self, tmp: Path):
        self.port = free_port()
        self.data = tmp / "var"
        self.env = env_for(self.data, self.port, SKYLINE_INGEST__FLUSH_INTERVAL="0.2")
        self.run = Running(self.env, tmp)
        self.base = f"http://127.0.0.1:{self.port}"
        self.run.wait_healthy(self.base)
        self._session = redis_session(load_settings(DATA_DIR=self.data))
        self.client = self._session.__enter__().client

    def close(self) -> None:
        self._session.__exit__(None, None, None)
        assert self.run.stop() == 0, self.run.stderr
        assert "Traceback" not in self.run.stderr


@pytest.fixture
def sky(tmp_path: Path) -> Iterator[Sky]:
    s = Sky(tmp_path)
    yield s
    s.close()


def _seed(sky: Sky, now: int) -> None:
    port = int(sky.env["SKYLINE_HORIZON__PLAINTEXT_PORT"])
    send_lines(port, [f"web.host1.rps {i} {now - 60 * (5 - i)}" for i in range(6)])
    # the analyzer's score series, as it writes it (keys.scores, packed like a series)
    t = now - 60.0 * np.arange(5)[::-1]
    sky.client.set(keys.scores("web.host1.rps"), encode(t, np.array([0.1, 0.2, 0.3, 0.5, 0.95])))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        r = httpx.get(f"{sky.base}/api/v1/series/web.host1.rps", headers=AUTH)
        if r.status_code == 200 and r.json()["points"] == 6:
            return
        time.sleep(0.2)
    raise AssertionError("the seeded points did not arrive")


def test_promtool_instant_and_range(sky, tmp_path):
    promtool = need("promtool", "apt-get install prometheus")
    now = int(time.time())
    _seed(sky, now)
    # promtool's instant query has no header flag: basic auth, the API token as password
    url = f"http://grafana:{TOKEN}@127.0.0.1:{sky.port}/prometheus"
    out = subprocess.run([promtool, "query", "instant", f"--time={now}", url,
                          '{__name__="web.host1.rps"}'], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f'web.host1.rps => 5 @[{now}]'
    out = subprocess.run([promtool, "query", "instant", f"--time={now}", url,
                          'skyline_anomaly_score{metric="web.host1.rps"} > 0.9'],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f'{{metric="web.host1.rps"}} => 0.95 @[{now}]'
    out = subprocess.run([promtool, "query", "range", f"--start={now - 300}", f"--end={now}",
                          "--step=1m", f"--header=Authorization=Bearer {TOKEN}",
                          f"http://127.0.0.1:{sky.port}/prometheus",
                          '{__name__="web.host1.rps"}'], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[0] == "web.host1.rps =>"
    assert lines[1:] == [f"{i} @[{now - 60 * (5 - i)}]" for i in range(6)]
    # an unsupported query: promtool shows Prometheus' own error
    out = subprocess.run([promtool, "query", "instant", url, "rate(x[5m])"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "bad_data" in out.stderr + out.stdout
    # and without the token: refused
    out = subprocess.run([promtool, "query", "instant", f"http://127.0.0.1:{sky.port}/prometheus",
                          "up"], capture_output=True, text=True, timeout=60)
    assert out.returncode != 0


def test_vmalert_rule_on_anomaly_score_fires_into_alertmanager(sky, tmp_path):
    now = int(time.time())
    _seed(sky, now)
    am, am_url = alertmanager(tmp_path)
    rules = """
groups:
  - name: skyline
    interval: 1s
    rules:
      - alert: SkylineAnomalous
        expr: skyline_anomaly_score > 0.7
        labels:
          severity: page
        annotations:
          summary: "{{ $labels.metric }} anomaly score {{ $value }}"
"""
    rule = vmalert(tmp_path, rules, f"http://127.0.0.1:{sky.port}/prometheus", am_url,
                   f"-datasource.bearerToken={TOKEN}")
    try:
        deadline = time.monotonic() + 60
        alerts: list[dict] = []
        while time.monotonic() < deadline and not alerts:
            r = httpx.get(f"{am_url}/api/v2/alerts", timeout=5)
            alerts = [a for a in r.json() if a["labels"].get("alertname") == "SkylineAnomalous"]
            time.sleep(0.5)
        assert alerts, rule.output()
        (alert,) = alerts
        assert alert["labels"]["metric"] == "web.host1.rps"
        assert alert["labels"]["severity"] == "page"
        assert alert["annotations"]["summary"] == "web.host1.rps anomaly score 0.95"
    finally:
        rule.close()
        am.close()


def test_metrics_page_passes_promtool_check_metrics(sky):
    promtool = need("promtool", "apt-get install prometheus")
    _seed(sky, int(time.time()))
    deadline = time.monotonic() + 30
    text = ""
    while time.monotonic() < deadline and "skyline_ingest_accepted_plaintext_total" not in text:
        text = httpx.get(f"{sky.base}/metrics").text
        time.sleep(0.3)
    assert "# TYPE skyline_ingest_accepted_plaintext_total counter" in text
    assert "skyline_build_info{" in text
    out = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0 and not out.stdout.strip() and not out.stderr.strip(), (
        out.stdout + out.stderr)
