"""The long history built by the roomba, against real Redis."""

from __future__ import annotations

import numpy as np

from skyline.store import history as hist
from skyline.store import keys
from skyline.store.hotstore import HotStore
from skyline.store.roomba import HistoryPolicy, Roomba

R = 600
DAY = 86400.0
NOW = 1_800_000_000.0  # a multiple of 600
RETENTION = DAY + 600


def _roomba(client, span=7 * DAY, batch=3600.0):
    return Roomba(client, retention=RETENTION, batch_size=7,
                  history=HistoryPolicy(resolution=R, span=span, batch=batch))


def _history(client, name):
    raw = client.get(keys.history(name))
    return None if raw is None else hist.decode(raw)


def _feed(store, name, t, v):
    store.append([name] * len(t), t, v)


def test_whole_buckets_beyond_the_retention_move_into_the_history(redis_client):
    store = HotStore(redis_client)
    t = np.arange(NOW - 3 * DAY, NOW, 60.0)
    v = np.round(np.random.default_rng(1).normal(100, 10, t.size), 1)
    _feed(store, "m", t, v)
    stats = _roomba(redis_client).run_pass(NOW, 100)
    assert stats.history_written == 1 and stats.rewritten == 1
    cut = np.floor((NOW - RETENTION) / R) * R
    raw = store.read_one("m")
    assert raw.timestamps[0] == cut and raw.timestamps.tolist() == t[t >= cut].tolist()
    h = _history(redis_client, "m")
    assert h is not None
    expect = hist.bucketise(t[t < cut], v[t < cut], R)
    assert h.index.tolist() == expect.index.tolist()
    assert h.sum.tolist() == expect.sum.tolist() and h.count.tolist() == expect.count.tolist()
    assert h.min.tolist() == expect.min.tolist() and h.max.tolist() == expect.max.tolist()
    # every point is in exactly one of the two
    assert int(h.count.sum()) + len(raw) == t.size
    assert stats.buckets_moved == len(expect)


def test_nothing_moves_until_a_batch_has_aged(redis_client):
    store = HotStore(redis_client)
    t = np.arange(NOW - RETENTION - 1800, NOW, 60.0)  # half an hour beyond the retention
    _feed(store, "m", t, np.ones(t.size))
    stats = _roomba(redis_client).run_pass(NOW, 100)
    assert stats.history_written == 0
    assert redis_client.exists(keys.history("m")) == 0
    assert len(store.read_one("m")) == t.size


def test_passes_over_a_week_keep_every_bucket_once(redis_client):
    """Points arrive for nine days while the roomba passes every 20 minutes (and is a new
    object now and then, as after a restart): the history equals the buckets of every point
    older than the last cut, within the span, none lost or counted twice."""
    store = HotStore(redis_client)
    rng = np.random.default_rng(3)
    start = NOW - 9 * DAY
    everything_t = np.arange(start, NOW, 60.0)
    everything_v = rng.integers(0, 1000, everything_t.size).astype(float)
    span = 7 * DAY
    roomba = _roomba(redis_client, span=span)
    fed = 0
    for i, now in enumerate(np.arange(start + 1200, NOW + 1, 1200.0)):
        upto = int(np.searchsorted(everything_t, now, side="left"))
        _feed(store, "m", everything_t[fed:upto], everything_v[fed:upto])
        fed = upto
        if i % 50 == 0:
            roomba = _roomba(redis_client, span=span)  # a restart
        roomba.trim_names(["m"], float(now))
    raw = store.read_one("m")
    h = _history(redis_client, "m")
    assert h is not None
    cut = raw.timestamps[0]
    old = everything_t < cut
    first = int(np.floor((NOW - span) / R))
    expect = hist.bucketise(everything_t[old], everything_v[old], R).since(first)
    assert h.index.tolist() == expect.index.tolist()
    assert h.count.tolist() == expect.count.tolist()
    assert h.sum.tolist() == expect.sum.tolist()
    assert raw.timestamps.tolist() == everything_t[~old].tolist()
    # span kept: about 7 days of buckets, all of them complete
    assert h.timestamps[0] >= NOW - span - R
    assert set(h.count.tolist()) == {10}


def test_a_history_changed_meanwhile_is_left_for_the_next_pass(redis_client):
    store = HotStore(redis_client)
    t = np.arange(NOW - 2 * DAY, NOW, 60.0)
    _feed(store, "m", t, np.ones(t.size))
    roomba = _roomba(redis_client)
    before = redis_client.get(keys.series("m"))
    # someone wrote the history after the roomba read it: SHA differs, nothing is written
    other = hist.encode(hist.bucketise(np.array([0.0]), np.array([5.0]), R))
    redis_client.set(keys.history("m"), other)
    result = roomba._move(keys=[keys.series("m"), keys.history("m")],
                          args=[len(before), b"", hist.encode(hist.Buckets.empty(R)), "x" * 40])
    assert result == -1
    assert redis_client.get(keys.series("m")) == before
    assert redis_client.get(keys.history("m")) == other


def test_corrupt_history_is_replaced_and_counted(redis_client):
    store = HotStore(redis_client)
    t = np.arange(NOW - 2 * DAY, NOW, 60.0)
    _feed(store, "m", t, np.ones(t.size))
    _feed(store, "w", t, np.ones(t.size))
    redis_client.set(keys.history("m"), b"garbage")
    redis_client.lpush(keys.history("w"), b"x")
    stats = _roomba(redis_client).run_pass(NOW, 100)
    assert stats.history_corrupt == 2 and stats.history_written == 2
    for name in ("m", "w"):
        h = _history(redis_client, name)
        assert h is not None and float(h.mean.min()) == 1.0


def test_history_goes_with_its_metric(redis_client):
    store = HotStore(redis_client)
    t = np.arange(NOW - 2 * DAY, NOW, 60.0)
    _feed(store, "m", t, np.ones(t.size))
    _roomba(redis_client).run_pass(NOW, 100)
    assert redis_client.exists(keys.history("m")) == 1
    store.delete(["m"])
    assert redis_client.exists(keys.history("m")) == 0
