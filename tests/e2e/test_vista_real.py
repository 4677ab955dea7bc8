"""Vista in a real `skyline run`, pulling from real servers: a Prometheus scraping a real
node_exporter, and graphite-web over a carbon-cache fed by plaintext. Each test compares what
the hot store holds with what the remote itself answers."""

from __future__ import annotations

import json
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
from tests.servers import graphite, node_exporter, prometheus, send_lines

pytestmark = pytest.mark.system


class Sky:
    def __init__(self, tmp: Path, fetches: list[dict], **extra: str):
        self.port = free_port()
        self.data = tmp / "var"
        env = env_for(self.data, self.port, SKYLINE_VISTA_FETCH_METRICS=json.dumps(fetches),
                      SKYLINE_INGEST__FLUSH_INTERVAL="0.2", **extra)
        self.run = Running(env, tmp)
        self.run.wait_http(f"http://127.0.0.1:{self.port}/api/v1/health")
        self._session = redis_session(load_settings(DATA_DIR=self.data))
        self.store = HotStore(self._session.__enter__().client)

    def points(self, name: str) -> dict[float, float]:
        s = self.store.read_one(name)
        return dict(zip(s.timestamps.tolist(), s.values.tolist(), strict=True))

    def wait(self, name: str, n: int, timeout: float = 90) -> dict[float, float]:
        deadline = time.monotonic() + timeout
        while True:
            pts = self.points(name)
            if len(pts) >= n or time.monotonic() > deadline:
                return pts
            time.sleep(0.3)

    def close(self) -> str:
        self._session.__exit__(None, None, None)
        assert self.run.stop() == 0, self.run.stderr
        assert "Traceback" not in self.run.stderr
        return self.run.stderr


@pytest.fixture
def prom(tmp_path: Path) -> Iterator[str]:
    exporter, target = node_exporter(tmp_path)
    server, url = prometheus(tmp_path, f"""
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: node
    static_configs:
      - targets: ["{target}"]
""")
    try:
        yield url
    finally:
        server.close()
        exporter.close()


def _prom_range(url: str, query: str, start: float, end: float, step: float) -> dict:
    r = httpx.get(f"{url}/api/v1/query_range",
                  params={"query": query, "start": start, "end": end, "step": step})
    out = {}
    for item in r.json()["data"]["result"]:
        labels = dict(item["metric"])
        name = labels.pop("__name__")
        body = ",".join(f'{k}="{labels[k]}"' for k in sorted(labels))
        out[f"{name}{{{body}}}"] = {float(t): float(v) for t, v in item["values"]}
    return out


def test_vista_pulls_node_exporter_through_prometheus(prom, tmp_path):
    # wait until Prometheus has scraped for a while, so the first pull back-fills
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        r = httpx.get(f"{prom}/api/v1/query", params={"query": "count_over_time(up[1m])"})
        res = r.json()["data"]["result"]
        if res and float(res[0]["value"][1]) >= 12:
            break
        time.sleep(0.5)
    fetches = [{"source": "prometheus", "url": prom, "query": q, "frequency": 10, "step": 2,
                "namespace_prefix": "remote"}
               for q in ("node_memory_MemTotal_bytes", "node_load1", "up")]
    sky = Sky(tmp_path, fetches, SKYLINE_VISTA_DO_NOT_SUBMIT_CURRENT_MINUTE="false",
              SKYLINE_VISTA__BACKFILL="600")
    try:
        for query in ("node_memory_MemTotal_bytes", "node_load1", "up"):
            prefix = f"remote.{query}{{"
            deadline = time.monotonic() + 60
            names: list[str] = []
            while time.monotonic() < deadline and not names:
                names = [n for n in sky.store.names() if n.startswith(prefix)]
                time.sleep(0.3)
            assert len(names) == 1, (query, sky.store.names()[:30], sky.run.proc.poll())
            name = names[0]
            assert 'job="node"' in name and "instance=" in name
            stored = sky.wait(name, 5)
            assert len(stored) >= 5
            # the values are exactly what Prometheus answers for those times
            times = sorted(stored)
            want = _prom_range(prom, query, times[0], times[-1], 2)[name[len("remote."):]]
            common = [t for t in times if t in want]
            assert len(common) >= len(times) - 1
            assert all(stored[t] == want[t] for t in common)
            assert all(t % 2 == 0 for t in times)  # aligned on the step
        # a later pull adds new points, never a duplicate timestamp
        load = [n for n in sky.store.names() if n.startswith("remote.node_load1{")][0]
        before = sky.store.read_one(load)
        time.sleep(12)
        raw = sky.store.read_raw([load])[0]
        assert raw is not None and len(raw) // 16 == len(sky.points(load)) > len(before)
    finally:
        log = sky.close()
    assert "failed" not in log


def test_vista_pulls_graphite_fed_by_plaintext(tmp_path):
    carbon, web, line_port, url = graphite(tmp_path)
    try:
        now = int(time.time())
        minute = now // 60 * 60
        sent = {float(t): float(i) for i, t in enumerate(range(minute - 600, now, 10))}
        sent[float(minute - 300)] = 1e12  # a big value survives the trip
        send_lines(line_port, [f"app.web1.requests {v!r} {int(t)}" for t, v in sent.items()])
        # carbon has them (cache or whisper) once graphite-web shows the last one
        def landed() -> bool:
            r = httpx.get(f"{url}/render", params={"format": "json", "from": str(now - 30),
                                                   "target": "app.web1.requests"})
            return any(p[0] is not None for s in r.json() for p in s["datapoints"])

        web.wait_until(landed)
        fetches = [{"source": "graphite", "url": url, "query": "app.web1.requests",
                    "frequency": 10, "namespace_prefix": "graphite"},
                   {"source": "graphite", "url": url, "query": "app.*.requests",
                    "frequency": 10, "namespace_prefix": "glob"}]
        sky = Sky(tmp_path, fetches, SKYLINE_VISTA__BACKFILL="900")
        try:
            cutoff = time.time() // 60 * 60
            want = {t: v for t, v in sent.items() if t < min(cutoff, minute)}
            got = sky.wait("graphite.app.web1.requests", len(want))
            # every point sent before the current minute, exactly; nothing of the current one
            assert {t: v for t, v in got.items() if t < minute} == want
            assert all(t < time.time() // 60 * 60 for t in got)
            assert sky.wait("glob.app.web1.requests", len(want)).keys() >= want.keys()
        finally:
            sky.close()
    finally:
        web.close()
        carbon.close()
