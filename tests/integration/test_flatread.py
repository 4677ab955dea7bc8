"""FlatReader: many series into one buffer, agreeing with HotStore.read point for point."""

from __future__ import annotations

import numpy as np
import pytest
import redis

from skyline.store import keys
from skyline.store.flatread import FlatReader
from skyline.store.hotstore import HotStore
from skyline.store.series import encode


@pytest.fixture(params=[2, 3], ids=["resp2", "resp3"])
def client(request: pytest.FixtureRequest, redis_client: redis.Redis):
    """The same server over RESP2 and RESP3 (missing keys and errors are spelled apart)."""
    kw = dict(redis_client.connection_pool.connection_kwargs)
    kw["protocol"] = request.param
    if request.param == 2:
        # redis-py 8 turns maintenance notifications on for RESP3 TCP clients and refuses
        # them over RESP2
        kw.pop("maint_notifications_config", None)
    pool = redis.ConnectionPool(connection_class=redis_client.connection_pool.connection_class,
                                **kw)
    c = redis.Redis(connection_pool=pool)
    yield c
    c.close()


def test_flat_read_matches_the_store(client):
    redis_client = client
    rng = np.random.default_rng(0)
    names, expected = [], []
    for i in range(2500):
        n = int(rng.integers(0, 300))
        if i == 7:
            n = 200_000  # 3.2 MB: larger than the receive buffer, read straight into place
        t = np.arange(n, dtype=np.float64) * 60 + 1.7e9
        v = rng.normal(size=n)
        name = f"m.{i:05d}"
        if n:
            redis_client.set(keys.series(name), encode(t, v))
        names.append(name)
        expected.append((t, v))
    redis_client.set(keys.series("m.corrupt"), encode(np.arange(3.0), np.ones(3)) + b"xyz")
    redis_client.hset(keys.series("m.hash"), "a", "b")
    names += ["m.corrupt", "m.hash", "m.missing"]
    expected += [(np.arange(3.0), np.ones(3)), (np.empty(0), np.empty(0)),
                 (np.empty(0), np.empty(0))]

    reader = FlatReader(redis_client, batch=300, initial_bytes=1024)
    for _ in range(2):  # the buffer is reused
        flat = reader.read(names)
        assert flat.counts.tolist() == [len(t) for t, _ in expected]
        assert flat.stats.corrupt == 1 and flat.stats.wrong_type == 1
        # empty strings are never stored; 0-point names and m.missing are missing keys
        assert flat.stats.missing == sum(1 for t, _ in expected if not len(t)) - 1
        assert np.array_equal(flat.timestamps, np.concatenate([t for t, _ in expected]))
        assert np.array_equal(flat.values, np.concatenate([v for _, v in expected]))

    # the connection is still in step: an ordinary command works after the reads
    assert redis_client.ping()
    store = HotStore(redis_client).read(names[:50])
    offsets = np.cumsum(flat.counts) - flat.counts
    for i, s in enumerate(store):
        a = int(offsets[i])
        assert np.array_equal(s.values, flat.values[a:a + int(flat.counts[i])])


def test_empty_request(redis_client):
    flat = FlatReader(redis_client).read([])
    assert len(flat.counts) == 0 and len(flat.points) == 0


def test_tail_reads_only_the_last_points(client):
    """Luminosity's read: the last `tail` points of each series with one GETRANGE each;
    shorter and missing series give what they have."""
    t = np.arange(100, dtype=np.float64) * 60 + 1.7e9
    v = np.arange(100, dtype=np.float64)
    client.set(keys.series("tail.long"), encode(t, v))
    client.set(keys.series("tail.short"), encode(t[:3], v[:3]))
    reader = FlatReader(client, batch=2)
    flat = reader.read(["tail.long", "tail.short", "tail.missing"], tail=10)
    assert flat.counts.tolist() == [10, 3, 0]
    assert flat.values[:10].tolist() == v[90:].tolist()
    assert flat.timestamps[10:].tolist() == t[:3].tolist()
    with pytest.raises(ValueError):
        reader.read(["tail.long"], tail=0)


def test_last_points_of_many_series_in_order(client):
    """HotStore.last_points (stale listings, Thunder): the newest point of each name, NaN for
    a missing or empty series or a key of another type, in the caller's order across
    chunks."""
    names = [f"last.{i}" for i in range(25)]
    for i, name in enumerate(names):
        if i % 7 == 3:
            continue  # missing
        n = 1 + i
        client.set(keys.series(name), encode(1.7e9 + 60.0 * np.arange(n), i + np.arange(n)))
    client.set(keys.series("last.empty"), b"")
    client.rpush(keys.series("last.list"), b"x")
    store = HotStore(client, read_chunk_size=4)
    asked = [*reversed(names), "last.empty", "last.list"]
    t, v = store.last_points(asked)
    for j, name in enumerate(asked[:25]):
        i = int(name.split(".")[1])
        if i % 7 == 3:
            assert np.isnan(t[j]) and np.isnan(v[j])
        else:
            assert (t[j], v[j]) == (1.7e9 + 60.0 * i, float(2 * i))
    assert np.isnan(t[-2:]).all() and np.isnan(v[-2:]).all()
