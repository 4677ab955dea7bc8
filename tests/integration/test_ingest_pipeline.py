"""The shared write path into a real (embedded) Redis."""

from __future__ import annotations

import asyncio
import time

import pytest

from skyline.ingest import Ingest
from skyline.settings import load_settings
from skyline.store.hotstore import HotStore
from skyline.store.redis_client import redis_session
from skyline.store.writer import PointBuffer
from skyline.telemetry import Telemetry

NOW = 1_800_000_000.0


@pytest.fixture
def store(tmp_path):
    with redis_session(load_settings(DATA_DIR=tmp_path / "var")) as h:
        yield HotStore(h.client)


def _ingest(store, **overrides):
    settings = load_settings(**overrides)
    buf = PointBuffer(store, settings.redis.write_buffer_max_points)
    return Ingest(settings, buf, Telemetry("ingest", "test")), buf


def test_valid_points_survive_garbage_around_them(store):
    ingest, buf = _ingest(store, SKIP_LIST=["debug.**"], DO_NOT_SKIP_LIST=["debug.keep"])
    names = ["ok.a", "bad name", "ok.a", "ok.b", "debug.x.y", "debug.keep", "ok.c", "ok.d"]
    ts = [NOW, NOW, NOW + 1, NOW - 90000, NOW, NOW, NOW + 3600, NOW]
    vs = [1.0, 2.0, float("nan"), 4.0, 5.0, 6.0, 7.0, float("inf")]
    r = ingest.submit("test", names, ts, vs, now=NOW, with_reasons=True)
    assert r.reasons == [None, "bad_name_chars", "bad_value", "timestamp_too_old", "skip_list",
                         None, "timestamp_in_future", "bad_value"]
    assert r.accepted == 2 and sum(r.rejected.values()) == 6
    assert buf.flush() == 2
    assert store.names() == ["debug.keep", "ok.a"]
    counters, _ = ingest.telemetry.snapshot()
    assert counters["received_test"] == 8 and counters["accepted_test"] == 2
    assert counters["rejected_test_bad_value"] == 2
    assert counters["rejected_test_skip_list"] == 1


def test_max_age_defaults_to_full_duration(store):
    ingest, _ = _ingest(store, FULL_DURATION=3600)
    r = ingest.submit("t", ["a", "b"], [NOW - 3599, NOW - 3601], [1.0, 1.0], now=NOW)
    assert r.accepted == 1 and r.rejected == {"timestamp_too_old": 1}
    ingest2, _ = _ingest(store, FULL_DURATION=3600, ingest={"max_age": 7200})
    assert ingest2.submit("t", ["b"], [NOW - 3601], [1.0], now=NOW).accepted == 1


def test_cardinality_guard_refuses_only_new_names(store):
    ingest, _ = _ingest(store, MAX_METRICS=2)
    assert ingest.submit("t", ["a", "b"], [NOW, NOW], [1.0, 1.0], now=NOW).accepted == 2
    r = ingest.submit("t", ["c", "a"], [NOW, NOW + 1], [1.0, 1.0], now=NOW)
    assert r.accepted == 1 and r.rejected == {"max_metrics": 1}


def test_backpressure_pauses_and_resumes(store):
    ingest, buf = _ingest(store, ingest={"high_watermark": 1000, "low_watermark": 500})
    names = [f"m.{i}" for i in range(1000)]
    ingest.submit("t", names, [NOW] * 1000, [1.0] * 1000, now=NOW)
    assert ingest.paused

    async def wait_then_flush() -> float:
        waiter = asyncio.create_task(ingest.wait_writable())
        await asyncio.sleep(0.05)
        assert not waiter.done()
        started = time.monotonic()
        buf.flush()
        ingest.after_flush()
        await asyncio.wait_for(waiter, 2)
        return time.monotonic() - started

    assert asyncio.run(wait_then_flush()) < 2
    assert not ingest.paused
    assert store.count() == 1000


def test_full_buffer_is_counted(store):
    ingest, _ = _ingest(store, redis={"write_buffer_max_points": 1000},
                        ingest={"high_watermark": 1000, "low_watermark": 500})
    r = ingest.submit("t", [f"m.{i}" for i in range(1200)], [NOW] * 1200, [1.0] * 1200, now=NOW)
    assert r.accepted == 1000 and r.rejected == {"buffer_full": 200}
