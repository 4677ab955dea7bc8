"""HotStore.append on a real Redis: series content and order, the metric index, the stats.

Runs on the embedded server always, and on an external Redis when SKYLINE_TEST_REDIS_URL is set
(its database is flushed before and after each test).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from skyline.settings import load_settings
from skyline.store import hotstore, keys
from skyline.store.hotstore import HotStore
from skyline.store.redis_client import redis_session
from skyline.store.series import POINT_DTYPE, POINT_SIZE


@pytest.fixture(scope="module", params=["embedded", "external"])
def redis_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
              ) -> Iterator[str]:
    if request.param == "external":
        url = os.environ.get("SKYLINE_TEST_REDIS_URL")
        if not url:
            pytest.skip("SKYLINE_TEST_REDIS_URL is not set")
        yield url
        return
    data_dir: Path = tmp_path_factory.mktemp("hotstore-append")
    with redis_session(load_settings(DATA_DIR=data_dir, REDIS_URL=None)) as handle:
        assert handle.embedded is not None
        yield handle.embedded.url


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    # few retries and no backoff, so the reconnection tests are quick
    c = redis.Redis.from_url(redis_url, socket_timeout=10, retry=Retry(NoBackoff(), 3))
    c.flushdb()
    yield c
    c.flushdb()
    c.close()


@pytest.fixture(params=["raw", "pipeline"])
def write_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """append's own RESP writer (with hiredis), or its fallback through redis-py's pipeline."""
    if request.param == "pipeline":
        monkeypatch.setattr(hotstore, "HAVE_HIREDIS", False)
    elif not hotstore.HAVE_HIREDIS:
        pytest.skip("hiredis is not installed")
    return str(request.param)


def raw_points(client: redis.Redis, name: str) -> list[tuple[float, float]]:
    raw = client.get(keys.series(name))
    assert raw is not None and len(raw) % POINT_SIZE == 0
    return [(float(t), float(v)) for t, v in np.frombuffer(raw, dtype=POINT_DTYPE)]


def expected(names: list[str], ts: np.ndarray, vs: np.ndarray) -> dict[str, list]:
    out: dict[str, list] = {}
    for name, t, v in zip(names, ts, vs, strict=True):
        out.setdefault(name, []).append((float(t), float(v)))
    return out


def index(client: redis.Redis) -> set[str]:
    return {m.decode() for m in client.smembers(keys.METRIC_INDEX)}


def test_repeated_and_new_names_across_batches(client: redis.Redis, write_path: str
                                                 ) -> None:
    store = HotStore(client, write_batch_size=3)
    # "a" three times (twice in the first batch of 3), "b" across a batch boundary, and
    # timestamps out of order: the series keeps arrival order, read() sorts
    names = ["a", "b", "a", "c", "b", "d", "a", "e", "f", "g"]
    ts = np.array([100.0, 100, 160, 100, 40, 100, 130, 100, 100, 100])
    vs = np.arange(len(names), dtype=np.float64) + 0.5
    stats = store.append(names, ts, vs)
    assert (stats.points, stats.new_metrics, stats.errors) == (10, 7, [])
    assert index(client) == set(names)
    for name, points in expected(names, ts, vs).items():
        assert raw_points(client, name) == points
    a = store.read_one("a")
    assert a.timestamps.tolist() == [100.0, 130.0, 160.0]
    assert a.values.tolist() == [0.5, 6.5, 2.5]

    # a second call: old names are not new again, new ones are
    names2 = ["a", "h", "b", "h", "i"]
    ts2 = np.full(5, 220.0)
    vs2 = np.array([1.0, 2, 3, 4, 5])
    stats = store.append(names2, ts2, vs2)
    assert (stats.points, stats.new_metrics, stats.errors) == (5, 2, [])
    assert index(client) == set(names) | {"h", "i"}
    assert raw_points(client, "h") == [(220.0, 2.0), (220.0, 4.0)]
    assert raw_points(client, "a")[-1] == (220.0, 1.0)
    assert store.read_one("h").values.tolist() == [4.0]  # same timestamp: last write wins


def test_large_call_many_batches_and_reads(client: redis.Redis, write_path: str) -> None:
    """More replies than one socket read holds, batches that do not divide the call."""
    n_metrics, rounds = 5000, 5
    store = HotStore(client, write_batch_size=7000)
    metrics = [f"bench.host-{i:05d}.cpu{{cpu=\"{i % 7}\"}}" for i in range(n_metrics)]
    names = metrics * rounds  # round r holds point r of every metric, as ingest writes
    ts = np.repeat(1000.0 + 60 * np.arange(rounds), n_metrics)
    vs = np.arange(len(names), dtype=np.float64)
    stats = store.append(names, ts, vs)
    assert (stats.points, stats.new_metrics, stats.errors) == (len(names), n_metrics, [])
    assert store.count() == n_metrics
    assert store.names() == sorted(metrics)
    series = store.read(metrics)
    for i, s in enumerate(series):
        assert s.timestamps.tolist() == (1000.0 + 60 * np.arange(rounds)).tolist()
        assert s.values.tolist() == [float(i + r * n_metrics) for r in range(rounds)]

    # one more round through a store with the default batch size: nothing new
    stats = HotStore(client).append(metrics, np.full(n_metrics, 9999.0), np.zeros(n_metrics))
    assert (stats.points, stats.new_metrics, stats.errors) == (n_metrics, 0, [])
    assert all(len(s) == rounds + 1 for s in store.read(metrics))


def test_empty_append(client: redis.Redis) -> None:
    stats = HotStore(client).append([], np.empty(0), np.empty(0))
    assert (stats.points, stats.new_metrics, stats.errors) == (0, 0, [])
    assert client.dbsize() == 0


def test_names_and_points_must_match(client: redis.Redis) -> None:
    with pytest.raises(ValueError):
        HotStore(client).append(["a", "b"], np.array([1.0]), np.array([1.0]))
    assert client.dbsize() == 0


def test_key_of_another_type_is_an_error_and_the_rest_lands(
    client: redis.Redis, write_path: str
) -> None:
    client.rpush(keys.series("bad"), "x")
    store = HotStore(client, write_batch_size=2)
    stats = store.append(["x", "bad", "y", "bad"], np.array([1.0, 2, 3, 4]),
                         np.array([1.0, 2, 3, 4]))
    assert stats.points == 2 and stats.new_metrics == 2
    assert len(stats.errors) == 2 and all(e.startswith("bad: WRONGTYPE") for e in stats.errors)
    assert index(client) == {"x", "y"}
    assert raw_points(client, "y") == [(3.0, 3.0)]


def test_reconnects_after_the_server_dropped_the_connection(client: redis.Redis) -> None:
    store = HotStore(client, write_batch_size=4)
    names = [f"m{i}" for i in range(10)]
    store.append(names, np.full(10, 1.0), np.ones(10))
    with redis.Redis(connection_pool=redis.ConnectionPool(
            connection_class=client.connection_pool.connection_class,
            **client.connection_pool.connection_kwargs)) as killer:
        assert killer.client_kill_filter(_type="normal", skipme=True) >= 1
    stats = store.append(names + ["new"], np.full(11, 2.0), np.full(11, 2.0))
    assert (stats.points, stats.new_metrics, stats.errors) == (11, 1, [])
    assert raw_points(client, "m3") == [(1.0, 1.0), (2.0, 2.0)]
    assert index(client) == set(names) | {"new"}


def test_a_batch_retried_after_landing_still_indexes_its_new_series(
    client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The connection fails after Redis applied a batch but before its replies were read:
    the retry appends the batch again (the duplicates share timestamps, so readers see one
    point) and its new series answer 32, not 16; they must still reach the index."""
    if not hotstore.HAVE_HIREDIS:
        pytest.skip("the raw write path needs hiredis")
    real = hotstore._read_replies
    calls = {"n": 0}

    def flaky(conn, count):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 2:  # the second batch: applied, then the connection "drops"
            real(conn, count)
            raise redis.ConnectionError("injected")
        return real(conn, count)

    monkeypatch.setattr(hotstore, "_read_replies", flaky)
    store = HotStore(client, write_batch_size=3)
    names = ["a", "b", "c", "d", "e", "a", "f"]
    stats = store.append(names, np.arange(7.0), np.arange(7.0))
    assert calls["n"] == 4  # three batches, the second read twice
    assert stats.points == 7 and stats.errors == []
    assert stats.new_metrics == 6
    assert index(client) == set(names)
    assert raw_points(client, "d") == [(3.0, 3.0), (3.0, 3.0)]  # the duplicate from the retry
    assert len(store.read_one("d")) == 1
    assert store.read_one("a").timestamps.tolist() == [0.0, 5.0]
