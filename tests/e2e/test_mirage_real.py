"""The Mirage stage reading a week of history from real servers: a Prometheus whose TSDB was
back-filled with `promtool tsdb create-blocks-from openmetrics` (remote_write refuses
week-old samples), and graphite-web over a carbon-cache fed 7 days by plaintext. Skyline
itself holds only the last day, so without the remote the stage abstains ("only 24 h"); with
it, a nightly job at this time of day is vetoed on the week, and a value never seen is
confirmed. The stage is built from the settings, as the analyzer builds it."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from skyline.analysis.mirage import factory
from skyline.analysis.stages import Candidate, StageContext
from skyline.settings import load_settings
from skyline.store.hotstore import HotStore
from skyline.store.redis_client import redis_session
from tests.servers import graphite, need, prometheus, send_lines

pytestmark = pytest.mark.system

DAY = 86400.0
STEP = 60.0


def week(now: float, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """8 days of 60-s points around 100 (two decimals), and a job lifting the metric to ~150
    for 10 minutes every day at the time of day of `now` (the candidate's)."""
    rng = np.random.default_rng(seed)
    t = np.arange(now - now % STEP - 8 * DAY, now - STEP, STEP)
    v = np.round(100 + rng.normal(0, 2, t.size), 2)
    job = ((now - t) % DAY) < 600
    v[job] += 50
    return t, v


@pytest.fixture
def store(tmp_path: Path) -> Iterator[HotStore]:
    with redis_session(load_settings(DATA_DIR=tmp_path / "var")) as h:
        yield HotStore(h.client)


def _stage(store: HotStore, namespace: dict):
    # a remote's week takes longer than the default 1 s budget on this shared machine
    settings = load_settings(DATA_DIR=Path("unused"),
                             analyzer={"stages": ["mirage"], "stage_budget": 30.0},
                             mirage={"namespaces": [namespace], "remote_timeout": 30.0})
    return factory({}, StageContext(settings=settings, client=store.client))


def _candidate(name: str, now: float, value: float) -> Candidate:
    return Candidate(metric=name, timestamp=now, value=value, score=0.9, band_low=90.0,
                     band_high=110.0, window_timestamps=np.empty(0), window_values=np.empty(0))


def _judge(store: HotStore, name: str, namespace: dict, now: float) -> None:
    alone = _stage(store, {"pattern": namespace["pattern"], "hours": 168})
    got = alone.check(_candidate(name, now, 151.0), time.monotonic() + 60)
    assert got.verdict == "abstain" and "only 2" in got.reason, got  # ~24 h of its own
    st = _stage(store, namespace)
    job = st.check(_candidate(name, now, 151.0), time.monotonic() + 60)
    assert job.verdict == "veto", job
    assert job.figures["history_hours"] >= 160, job
    new = st.check(_candidate(name, now, 400.0), time.monotonic() + 60)
    assert new.verdict == "confirm", new
    assert st.telemetry.snapshot()[0].get("remote_requests", 0) >= 1


def test_mirage_reads_the_week_from_a_backfilled_prometheus(tmp_path, store):
    promtool = need("promtool", "apt-get install prometheus")
    now = time.time()
    t, v = week(now)
    om = tmp_path / "history.om"
    om.write_text("# TYPE app_jobs gauge\n" + "".join(
        f'app_jobs{{job="batch"}} {x} {int(ts)}\n' for ts, x in zip(t, v, strict=True))
        + "# EOF\n")
    made = subprocess.run([promtool, "tsdb", "create-blocks-from", "openmetrics", str(om),
                           str(tmp_path / "prom-tsdb")], capture_output=True, text=True,
                          timeout=300)
    assert made.returncode == 0, made.stderr
    server, url = prometheus(tmp_path, "global:\n  scrape_interval: 15s\n")
    try:
        name = 'app_jobs{job="batch"}'
        recent = t >= now - DAY
        store.append([name] * int(recent.sum()), t[recent], v[recent])
        probe = httpx.get(f"{url}/api/v1/query", params={"query": f"count_over_time({name}[8d])"},
                          timeout=30).json()
        assert probe["data"]["result"], probe  # the back-filled blocks are loaded
        _judge(store, name, {"pattern": "app_jobs*", "hours": 168, "source": "prometheus",
                             "url": url}, now)
    finally:
        server.close()


def test_mirage_reads_the_week_from_graphite(tmp_path, store):
    carbon, web, line_port, url = graphite(tmp_path, retention="60s:9d")
    try:
        now = time.time()
        t, v = week(now, seed=4)
        name = "app.jobs.nightly"
        lines = [f"{name} {x} {int(ts)}" for ts, x in zip(t, v, strict=True)]
        for lo in range(0, len(lines), 2000):
            send_lines(line_port, lines[lo:lo + 2000])
        deadline = time.monotonic() + 180
        while True:  # carbon writes the week out (graphite-web also asks carbon's cache)
            body = httpx.get(f"{url}/render", params={
                "target": name, "format": "json", "from": str(int(t[0]) - 60),
                "until": str(int(now))}, timeout=30).json()
            n = sum(1 for val, _ in body[0]["datapoints"] if val is not None) if body else 0
            if n >= t.size * 0.99 or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert n >= t.size * 0.99, (n, t.size, carbon.output())
        recent = t >= now - DAY
        store.append([name] * int(recent.sum()), t[recent], v[recent])
        _judge(store, name, {"pattern": "app.**", "hours": 168, "source": "graphite",
                             "url": url}, now)
    finally:
        web.close()
        carbon.close()
