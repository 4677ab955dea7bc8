"""Data for the web app tests, put in through the real store functions."""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np
import pytest
from fastapi.testclient import TestClient

from skyline.core.events import AlgorithmResult, AnomalyEvent
from skyline.runtime.context import Context
from skyline.services.webapp import create_app
from skyline.settings import load_settings
from skyline.store.redis_client import redis_session
from skyline.store.sql import alerts as alert_store
from skyline.store.sql import db, save_anomaly
from skyline.store.sql.runs import RunStats, save_run

HOSTILE = """web.<script>alert("x")</script>&'amp;*.cpu"""


def window(end: float, n: int = 300, spike: bool = True) -> tuple[np.ndarray, np.ndarray]:
    t = end - 60.0 * np.arange(n)[::-1]
    v = 10 + np.sin(np.arange(n) / 7.0)
    if spike:
        v[-1] = 90.0
    return t, v


def anomaly(ctx: Context, metric: str, ts: float, *, score: float = 0.8,
            triggered: tuple[str, ...] = ("grubbs", "stddev_from_average"),
            status: str = "anomalous", with_window: bool = True) -> AnomalyEvent:
    wt, wv = window(ts)
    results = (
        AlgorithmResult("grubbs", "grubbs" in triggered, 4.2, 3.1,
                        "Grubbs statistic 4.2 above the critical 3.1"),
        AlgorithmResult("stddev_from_average", "stddev_from_average" in triggered, 5.0, 3.0,
                        "last value 5.0 sigma from the mean"),
        AlgorithmResult("ks_test", None, None, None, "abstained: too few points"),
    )
    e = AnomalyEvent.build(metric=metric, timestamp=ts, value=float(wv[-1]), score=score,
                           source="analyzer", status=status, triggered=triggered,  # type: ignore[arg-type]
                           results=results, created=ts,
                           window_timestamps=wt if with_window else None,
                           window_values=wv if with_window else None)
    assert save_anomaly(ctx.engine, e)
    return e


def delivery(ctx: Context, e: AnomalyEvent, channel: str = "smtp", ok: bool = True,
             error: str = "") -> None:
    alert_store.enqueue(ctx.engine, event_id=e.id, channel=channel, kind="alert",
                        metric=e.metric, payload={})
    for d in alert_store.deliveries(ctx.engine, event_id=e.id, channel=channel):
        alert_store.record_attempt(ctx.engine, d, ok=ok, error=error, duration=0.1,
                                   retry_at=None)


def runs(ctx: Context, n: int = 3, interval: float = 60.0) -> None:
    now = time.time()
    for i in range(n):
        save_run(ctx.engine, RunStats(instance="test", started=now - interval * (n - i),
                                      duration=interval * (2 if i == 0 else 0.25),
                                      metrics=1000 + i, analysed=990 + i, anomalies=i,
                                      exceptions={"TooShort": 10}, stages={"ensemble": 1.0}))


def series(ctx: Context, metric: str, end: float, n: int = 300) -> None:
    t, v = window(end, n)
    ctx.store.append([metric] * n, t, v)



@pytest.fixture
def web(tmp_path) -> Iterator[tuple[Context, TestClient]]:
    """A context on a real embedded Redis and a fresh SQLite database, and a client of the
    whole app (login off: these tests are about the pages and the API)."""
    settings = load_settings(DATA_DIR=tmp_path / "var", WEBAPP_AUTH_ENABLED=False)
    with redis_session(settings) as handle:
        ctx = Context(settings, handle)
        engine = ctx.engine = db.make_engine(settings.database_url)
        db.upgrade(engine)
        try:
            yield ctx, TestClient(create_app(ctx), raise_server_exceptions=False)
        finally:
            engine.dispose()
