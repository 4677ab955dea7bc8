"""Anomaly events published on the stream land in SQL exactly once, through `skyline run`."""

from __future__ import annotations

import time

import numpy as np

from skyline.core.events import AnomalyEvent
from skyline.events.stream import publish
from skyline.settings import load_settings
from skyline.store.redis_client import redis_session
from skyline.store.sql import latest_anomalies, make_engine
from tests.conftest import free_port
from tests.e2e.skylineproc import Running, env_for


def _event(i: int) -> AnomalyEvent:
    t = np.arange(0.0, 600.0, 60.0) + 1.8e9
    return AnomalyEvent.build(metric=f"svc.{i}", timestamp=float(t[-1]), value=float(i),
                              score=0.9, source="analyzer", window_timestamps=t,
                              window_values=np.arange(10.0), triggered=("grubbs",))


def test_events_are_stored_once_even_when_published_twice(tmp_path):
    port = free_port()
    data = tmp_path / "var"
    run = Running(env_for(data, port), tmp_path)
    try:
        run.wait_healthy(f"http://127.0.0.1:{port}")
        with redis_session(load_settings(DATA_DIR=data)) as h:
            for i in range(5):
                publish(h.client, _event(i))
            publish(h.client, _event(0))  # a producer retried: same id
        engine = make_engine(f"sqlite:///{data / 'skyline.db'}")
        deadline = time.monotonic() + 20
        rows: list[AnomalyEvent] = []
        while time.monotonic() < deadline:
            rows = latest_anomalies(engine, limit=50)
            if len(rows) >= 5:
                break
            time.sleep(0.2)
        time.sleep(1)
        rows = latest_anomalies(engine, limit=50)
        engine.dispose()
    finally:
        assert run.stop() == 0, run.stderr
    assert sorted(r.metric for r in rows) == [f"svc.{i}" for i in range(5)]
    stored = {r.metric: r for r in rows}["svc.3"]
    assert stored.window_arrays()[1].tolist() == list(np.arange(10.0))
    assert stored.triggered == ("grubbs",)
