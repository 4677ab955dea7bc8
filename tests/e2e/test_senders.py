"""Real senders into a real `skyline run`, checked by the names and values the hot store
holds: collectd's write_graphite into horizon's plaintext listener, vmagent scraping a real
node_exporter into flux's remote_write, and Etsy's statsd daemon (npm) into horizon."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from skyline.settings import load_settings
from skyline.store.hotstore import HotStore
from skyline.store.redis_client import redis_session
from tests.conftest import free_port
from tests.e2e.skylineproc import Running, env_for
from tests.servers import collectd, node_exporter, statsd, vmagent

pytestmark = pytest.mark.system
KEY = "V" * 32


class Sky:
    def __init__(self, tmp: Path):
        self.port = free_port()
        self.data = tmp / "var"
        self.env = env_for(self.data, self.port, SKYLINE_INGEST__FLUSH_INTERVAL="0.2",
                           SKYLINE_FLUX_API_KEYS=json.dumps({KEY: "vm"}))
        self.run = Running(self.env, tmp)
        self.base = f"http://127.0.0.1:{self.port}"
        self.run.wait_http(f"{self.base}/api/v1/health")
        self._session = redis_session(load_settings(DATA_DIR=self.data))
        self.store = HotStore(self._session.__enter__().client)
        self.plaintext = int(self.env["SKYLINE_HORIZON__PLAINTEXT_PORT"])

    def points(self, name: str) -> list[tuple[float, float]]:
        s = self.store.read_one(name)
        return list(zip(s.timestamps.tolist(), s.values.tolist(), strict=True))

    def wait(self, name: str, n: int, timeout: float = 60) -> list[tuple[float, float]]:
        deadline = time.monotonic() + timeout
        while True:
            pts = self.points(name)
            if len(pts) >= n or time.monotonic() > deadline:
                return pts
            time.sleep(0.2)

    def wait_sum(self, name: str, total: float, timeout: float = 60) -> float:
        deadline = time.monotonic() + timeout
        while True:
            got = sum(v for _, v in self.points(name))
            if got >= total or time.monotonic() > deadline:
                return got
            time.sleep(0.2)

    def close(self) -> None:
        self._session.__exit__(None, None, None)
        assert self.run.stop() == 0, self.run.stderr
        assert "Traceback" not in self.run.stderr


@pytest.fixture
def sky(tmp_path: Path) -> Iterator[Sky]:
    s = Sky(tmp_path)
    yield s
    s.close()


def test_collectd_write_graphite(sky, tmp_path):
    table = tmp_path / "app.table"
    table.write_text("42 0.125\n")
    proc = collectd(tmp_path, sky.plaintext, table)
    try:
        # collectd's name: <prefix><host>.<plugin>-<instance>.<type>-<type instance>, with
        # the host's dots escaped
        pts = sky.wait("collectd.sender_example.table-app.gauge-requests", 3)
        assert len(pts) >= 3, (proc.output(), sky.store.names()[:20])
        assert {v for _, v in pts} == {42.0}
        lat = sky.wait("collectd.sender_example.table-app.gauge-latency", 3)
        assert {v for _, v in lat} == {0.125}
        assert abs(pts[-1][0] - time.time()) < 30
        table.write_text("43 0.25\n")  # a new value is read and sent on
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and 43.0 not in {
                v for _, v in sky.points("collectd.sender_example.table-app.gauge-requests")}:
            time.sleep(0.2)
        assert 43.0 in {v for _, v in sky.points(
            "collectd.sender_example.table-app.gauge-requests")}
    finally:
        proc.close()


def _exposition_value(text: str, metric: str) -> float:
    for line in text.splitlines():
        if line.startswith(metric + " ") or line.startswith(metric + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{metric} not exposed")


def test_vmagent_scraping_node_exporter_into_remote_write(sky, tmp_path):
    exporter, target = node_exporter(tmp_path)
    agent = vmagent(tmp_path, target, f"{sky.base}/flux/prometheus/write", KEY)
    try:
        name = f'vm.node_memory_MemTotal_bytes{{instance="{target}",job="node"}}'
        pts = sky.wait(name, 3)
        assert len(pts) >= 3, (agent.output(), sky.store.names()[:20])
        exposed = _exposition_value(httpx.get(f"http://{target}/metrics").text,
                                    "node_memory_MemTotal_bytes")
        # vmagent re-encodes a sample through its own decimal form before remote_write,
        # so a large gauge may come back one float step away (25276203008.000004)
        assert all(v == pytest.approx(exposed, rel=1e-12) for _, v in pts), (pts, exposed)
        up = sky.wait(f'vm.up{{instance="{target}",job="node"}}', 2)
        assert {v for _, v in up} == {1.0}
        times = [t for t, _ in pts]
        assert times == sorted(times) and abs(times[-1] - time.time()) < 60
    finally:
        agent.close()
        exporter.close()


def test_statsd_daemon_into_horizon(sky, tmp_path):
    proc, port = statsd(tmp_path, sky.plaintext)
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for _ in range(10):
                s.sendto(b"shop.orders:3|c\nshop.temperature:21.5|g\nshop.latency:120|ms",
                         ("127.0.0.1", port))
                time.sleep(0.05)
        # statsd's graphite backend: counters as count and rate, gauges, timer stats
        total = sky.wait_sum("stats.counters.shop.orders.count", 30)
        assert total == 30.0, (proc.output(), sky.store.names()[:30])
        assert {v for _, v in sky.wait("stats.gauges.shop.temperature", 1)} == {21.5}
        assert sky.wait_sum("stats.timers.shop.latency.count", 10) == 10.0
        assert {v for _, v in sky.points("stats.timers.shop.latency.mean")} == {120.0}
    finally:
        proc.close()
