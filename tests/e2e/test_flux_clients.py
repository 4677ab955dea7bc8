"""Flux driven by real clients against a real `skyline run`: a Prometheus server's
remote_write, the OpenTelemetry SDK's OTLP/HTTP exporter, the InfluxDB v2 client, Telegraf's
v1 line protocol and the JSON API over httpx. Each test checks the values the hot store holds,
not only that series appeared."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from skyline.settings import load_settings
from skyline.store.hotstore import HotStore
from skyline.store.redis_client import redis_session
from tests.conftest import free_port, skip_or_fail
from tests.e2e.skylineproc import Running, env_for

KEY = "A" * 32
PROM_KEY = "P" * 32
OTEL_KEY = "O" * 32
ROOT_KEY = "R" * 32
KEYS = {KEY: "json", PROM_KEY: "prom", OTEL_KEY: "otel", ROOT_KEY: ""}


class Skyline:
    def __init__(self, tmp: Path):
        self.port = free_port()
        self.data = tmp / "var"
        env = env_for(self.data, self.port, SKYLINE_FLUX_API_KEYS=json.dumps(KEYS),
                      SKYLINE_INGEST__FLUSH_INTERVAL="0.2")
        self.run = Running(env, tmp)
        self.base = f"http://127.0.0.1:{self.port}"
        self.run.wait_http(f"{self.base}/api/v1/health")
        self._session = redis_session(load_settings(DATA_DIR=self.data))
        self.store = HotStore(self._session.__enter__().client)

    def points(self, name: str) -> list[tuple[float, float]]:
        s = self.store.read_one(name)
        return list(zip(s.timestamps.tolist(), s.values.tolist(), strict=True))

    def wait_points(self, name: str, n: int, timeout: float = 60) -> list[tuple[float, float]]:
        deadline = time.monotonic() + timeout
        while True:
            pts = self.points(name)
            if len(pts) >= n or time.monotonic() > deadline:
                return pts
            time.sleep(0.2)

    def close(self) -> None:
        self._session.__exit__(None, None, None)
        assert self.run.stop() == 0, self.run.stderr
        assert "Traceback" not in self.run.stderr


@pytest.fixture(scope="module")
def sky(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Skyline]:
    s = Skyline(tmp_path_factory.mktemp("flux"))
    yield s
    s.close()


# the JSON API and Telegraf's v1 line protocol over httpx -----------------------------------------
def test_json_api_over_httpx(sky):
    now = int(time.time())
    with httpx.Client(base_url=sky.base) as c:
        r = c.get("/flux/metric_data", params={"metric": "web.rps", "value": 3,
                                               "timestamp": now - 1, "key": KEY})
        assert r.status_code == 204
        body = {"key": KEY, "metrics": [{"metric": "web.rps", "timestamp": now, "value": 4.5},
                                        {"metric": "web rps", "timestamp": now, "value": 1}]}
        r = c.post("/flux/metric_data_post", content=gzip.compress(json.dumps(body).encode()),
                   headers={"Content-Encoding": "gzip", "Content-Type": "application/json"})
        assert r.status_code == 207 and r.json()["errors"][0]["reason"] == "bad_name_chars"
    assert sky.wait_points("json.web.rps", 2) == [(now - 1, 3.0), (now, 4.5)]


def test_telegraf_lines_over_v1_write(sky):
    now_ns = time.time_ns() // 10**9 * 10**9
    # what Telegraf's influxdb output posts: ns timestamps, gzip, basic auth, string fields
    batch = (f"cpu,cpu=cpu-total,host=web\\ 1 usage_idle=97.25,usage_system=1.5 {now_ns}\n"
             f"mem,host=web\\ 1 used=1048576i,used_percent=12.5 {now_ns}\n"
             f'system,host=web\\ 1 uptime=3600u,uptime_format=" 1:00",n_users=2i {now_ns}\n')
    r = httpx.post(f"{sky.base}/write", params={"db": "telegraf"}, auth=("telegraf", ROOT_KEY),
                   content=gzip.compress(batch.encode()),
                   headers={"Content-Encoding": "gzip", "User-Agent": "Telegraf/1.30"})
    assert r.status_code == 204, r.text
    now = now_ns / 1e9
    assert sky.wait_points('cpu_usage_idle{cpu="cpu-total",host="web 1"}', 1) == [(now, 97.25)]
    assert sky.wait_points('mem_used{host="web 1"}', 1) == [(now, 1048576.0)]
    assert sky.wait_points('system_uptime{host="web 1"}', 1) == [(now, 3600.0)]
    assert sky.points('system_uptime_format{host="web 1"}') == []


# the InfluxDB v2 client -------------------------------------------------------------------------
def test_influxdb_client_v2(sky):
    from influxdb_client import InfluxDBClient, Point, WritePrecision
    from influxdb_client.client.write_api import SYNCHRONOUS

    now = int(time.time())
    with InfluxDBClient(url=sky.base, token=OTEL_KEY, org="o") as client:
        write = client.write_api(write_options=SYNCHRONOUS)
        write.write(bucket="b", record=[
            Point("weather").tag("city", "Oslo").field("temp", 4.5).field("wind", 7)
            .time(now - 1, WritePrecision.S),
            Point("weather").tag("city", "Oslo").field("temp", 5.0).time(now, WritePrecision.S),
        ], write_precision=WritePrecision.S)
        write.write(bucket="b", record=f"weather,city=Oslo temp=5.5 {(now + 1) * 1000}",
                    write_precision=WritePrecision.MS)
    assert sky.wait_points('otel.weather_temp{city="Oslo"}', 3) == [
        (now - 1, 4.5), (now, 5.0), (now + 1, 5.5)]
    assert sky.points('otel.weather_wind{city="Oslo"}') == [(now - 1, 7.0)]


# the OpenTelemetry SDK --------------------------------------------------------------------------
def test_opentelemetry_sdk_gauge_and_counter_deltas(sky):
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource

    def provider() -> MeterProvider:
        exporter = OTLPMetricExporter(endpoint=f"{sky.base}/v1/metrics",
                                      headers={"Authorization": f"Bearer {OTEL_KEY}"})
        reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
        return MeterProvider(metric_readers=[reader],
                             resource=Resource.create({"service.name": "shop",
                                                       "service.instance.id": "i-1"}))

    first = provider()
    meter = first.get_meter("test")
    orders = meter.create_counter("orders")
    temp = meter.create_gauge("room.temperature")
    orders.add(5, {"shop.region": "eu"})
    temp.set(21.5, {"room": "a"})
    first.force_flush()
    orders.add(3, {"shop.region": "eu"})
    temp.set(22.5, {"room": "a"})
    first.force_flush()
    first.shutdown()  # exports once more: no change, a delta of 0

    # the application restarts: a new start time, the cumulative count starts again
    second = provider()
    second.get_meter("test").create_counter("orders").add(2, {"shop.region": "eu"})
    second.force_flush()
    second.shutdown()

    counter = 'otel.orders{service_name="shop",shop_region="eu"}'
    values = [v for _, v in sky.wait_points(counter, 5)]
    assert values == [5.0, 3.0, 0.0, 2.0, 0.0]
    gauge = [v for _, v in sky.wait_points('otel.room.temperature{room="a",service_name="shop"}',
                                           3)]
    assert gauge[:2] == [21.5, 22.5] and set(gauge) == {21.5, 22.5}


# a real Prometheus server ------------------------------------------------------------------------
class _Target(BaseHTTPRequestHandler):
    scrapes = 0

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        type(self).scrapes += 1
        body = ("# TYPE flux_test_gauge gauge\n"
                'flux_test_gauge{kind="constant"} 42.5\n'
                "# TYPE flux_test_scrapes_total counter\n"
                f"flux_test_scrapes_total {type(self).scrapes * 10}\n").encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.system
def test_prometheus_remote_write(sky, tmp_path):
    binary = shutil.which("prometheus")
    if binary is None:
        skip_or_fail("the prometheus binary is not installed (apt-get install prometheus)")
    target = ThreadingHTTPServer(("127.0.0.1", 0), _Target)
    threading.Thread(target=target.serve_forever, daemon=True).start()
    tport = target.server_address[1]
    config = tmp_path / "prometheus.yml"
    config.write_text(f"""
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: flux-test
    static_configs:
      - targets: ["127.0.0.1:{tport}"]
remote_write:
  - url: {sky.base}/flux/prometheus/write
    authorization:
      credentials: {PROM_KEY}
    queue_config:
      batch_send_deadline: 1s
      min_backoff: 100ms
      max_backoff: 1s
""")
    proc = subprocess.Popen(
        [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{free_port()}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        instance = f"127.0.0.1:{tport}"
        gauge = f'prom.flux_test_gauge{{instance="{instance}",job="flux-test",kind="constant"}}'
        counter = f'prom.flux_test_scrapes_total{{instance="{instance}",job="flux-test"}}'
        up = f'prom.up{{instance="{instance}",job="flux-test"}}'
        gauge_points = sky.wait_points(gauge, 3, timeout=90)
        assert len(gauge_points) >= 3, (
            f"no remote_write after 90 s: {proc.poll()=} {sky.store.names()[:20]}")
        assert {v for _, v in gauge_points} == {42.5}
        counts = [v for _, v in sky.wait_points(counter, 3)]
        # every value is one the target served, in the order it served them
        assert len(counts) >= 3 and all(v % 10 == 0 and v > 0 for v in counts)
        assert counts == sorted(counts) and len(set(counts)) == len(counts)
        assert {v for _, v in sky.wait_points(up, 1)} == {1.0}
        times = [t for t, _ in gauge_points]
        assert times == sorted(times) and abs(times[-1] - time.time()) < 120
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        target.shutdown()
        target.server_close()
