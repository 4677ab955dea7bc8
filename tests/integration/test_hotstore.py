"""The hot store against real Redis: the embedded server, and the external one in CI."""

from __future__ import annotations

import numpy as np

from skyline.settings import load_settings
from skyline.store import keys
from skyline.store.hotstore import HotStore, ReadStats
from skyline.store.redis_client import redis_session
from skyline.store.roomba import Roomba
from skyline.store.series import encode_point

NOW = 1_800_000_000.0


def _store(client):
    return HotStore(client, read_chunk_size=3, write_batch_size=4)


def test_append_read_and_index(redis_client):
    store = _store(redis_client)
    names = ["a.b", "a.c", "a.b", "x{k=\"v\"}", "a.b"]
    stats = store.append(names, np.array([NOW, NOW, NOW + 60, NOW, NOW + 120]),
                         np.array([1.0, 2.0, 3.0, 4.0, 5.0]))
    assert stats.points == 5 and stats.new_metrics == 3
    assert store.names() == sorted(["a.b", "a.c", 'x{k="v"}'])
    assert store.names("a.*") == ["a.b", "a.c"]
    assert store.count() == 3
    [ab, missing] = store.read(["a.b", "nope"])
    assert ab.timestamps.tolist() == [NOW, NOW + 60, NOW + 120]
    assert ab.values.tolist() == [1.0, 3.0, 5.0]
    assert len(missing) == 0
    part = store.read_one("a.b", since=NOW, until=NOW + 60)
    assert part.timestamps.tolist() == [NOW + 60]


def test_many_metrics_read_in_chunks_keep_order(redis_client):
    store = _store(redis_client)
    names = [f"m.{i}" for i in range(25)]
    store.append(names, np.full(25, NOW), np.arange(25.0))
    out = store.read(list(reversed(names)))
    assert [s.name for s in out] == list(reversed(names))
    assert [s.values[0] for s in out] == list(reversed(range(25)))


def test_corrupt_and_wrong_type_series_are_counted_not_fatal(redis_client):
    store = _store(redis_client)
    store.append(["good", "bad"], np.array([NOW, NOW]), np.array([1.0, 2.0]))
    redis_client.append(keys.series("bad"), b"\x00\x01\x02")
    redis_client.lpush(keys.series("list"), b"x")
    redis_client.sadd(keys.METRIC_INDEX, "list")
    stats = ReadStats()
    good, bad, lst = store.read(["good", "bad", "list"], stats=stats)
    assert bad.values.tolist() == [2.0]
    assert len(lst) == 0
    assert (stats.corrupt, stats.wrong_type) == (1, 1)
    trimmed = Roomba(redis_client, retention=3600).run_pass(NOW, 100)
    assert trimmed.corrupt_repaired == 1 and trimmed.wrong_type_removed == 1
    assert redis_client.strlen(keys.series("bad")) == 16
    assert "list" not in store.names()


def test_delete(redis_client):
    store = _store(redis_client)
    store.append(["a", "b", "c"], np.full(3, NOW), np.ones(3))
    assert store.delete(["a", "c"]) == 2
    assert store.names() == ["b"]
    assert redis_client.exists(keys.series("a")) == 0


def test_roomba_trims_sorts_dedupes_and_deletes_empty(redis_client):
    store = _store(redis_client)
    store.append(["m"] * 5 + ["old"],
                 np.array([NOW - 10, NOW - 5000, NOW - 20, NOW - 10, NOW, NOW - 9000]),
                 np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0]))
    stats = Roomba(redis_client, retention=3600).run_pass(NOW, 100)
    assert stats.deleted == 1 and stats.rewritten == 1 and stats.points_removed == 3
    assert stats.wrapped
    assert store.names() == ["m"]
    raw = redis_client.get(keys.series("m"))
    assert raw == b"".join(encode_point(t, v) for t, v in [(NOW - 20, 3.0), (NOW - 10, 4.0),
                                                            (NOW, 5.0)])
    again = Roomba(redis_client, retention=3600).run_pass(NOW, 100)
    assert again.rewritten == 0 and again.deleted == 0


def test_roomba_keeps_points_appended_during_a_trim(redis_client):
    store = _store(redis_client)
    store.append(["m", "m"], np.array([NOW - 9000, NOW]), np.array([1.0, 2.0]))
    roomba = Roomba(redis_client, retention=3600)
    # roomba read the series, then a writer appended before the rewrite ran
    raw = redis_client.get(keys.series("m"))
    redis_client.append(keys.series("m"), encode_point(NOW + 60, 3.0))
    result = roomba._rewrite(keys=[keys.series("m")], args=[len(raw), encode_point(NOW, 2.0)])
    assert result == 1
    series = store.read_one("m")
    assert series.timestamps.tolist() == [NOW, NOW + 60]
    assert series.values.tolist() == [2.0, 3.0]
    # a series rewritten shorter by someone else meanwhile is left for the next pass
    assert roomba._rewrite(keys=[keys.series("m")], args=[10_000, b""]) == -1


def test_roomba_recreated_series_stays_indexed(redis_client):
    store = _store(redis_client)
    store.append(["gone"], np.array([NOW - 9000]), np.array([1.0]))
    roomba = Roomba(redis_client, retention=3600)
    stats = roomba.trim_names(["gone"], NOW)
    assert stats.deleted == 1 and store.names() == []
    # the writer re-creates it; a stale index removal must not hide it
    store.append(["gone"], np.array([NOW]), np.array([2.0]))
    roomba._unindex(["gone"])
    assert store.names() == ["gone"]


def test_roomba_work_per_pass_is_bounded_and_resumes(redis_client):
    store = _store(redis_client)
    names = [f"m.{i}" for i in range(50)]
    store.append(names, np.full(50, NOW - 9000), np.ones(50))
    roomba = Roomba(redis_client, retention=3600, batch_size=5)
    first = roomba.run_pass(NOW, 10)
    assert 10 <= first.examined < 50 and not first.wrapped
    total = first.examined
    for _ in range(20):
        s = roomba.run_pass(NOW, 10)
        total += s.examined
        if store.count() == 0:
            break
    assert store.count() == 0


def test_embedded_data_survives_a_restart(tmp_path):
    settings = load_settings(DATA_DIR=tmp_path / "var")
    with redis_session(settings) as h:
        assert h.embedded is not None and h.embedded.started_here
        HotStore(h.client).append(["kept"], np.array([NOW]), np.array([42.0]))
    with redis_session(settings) as h:
        assert h.embedded is not None and h.embedded.started_here
        assert HotStore(h.client).read_one("kept").values.tolist() == [42.0]


def test_second_session_attaches_to_the_running_server(tmp_path):
    settings = load_settings(DATA_DIR=tmp_path / "var")
    with redis_session(settings) as owner:
        with redis_session(settings) as guest:
            assert guest.embedded is not None and not guest.embedded.started_here
            guest.client.set("x", "1")
        # the guest leaving must not stop the owner's server
        assert owner.client.get("x") == b"1"


def test_long_data_dir_gets_a_short_socket(tmp_path):
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    with redis_session(load_settings(DATA_DIR=deep)) as h:
        assert h.client.ping()
        assert h.embedded is not None and len(str(h.embedded.socket)) <= 100


def test_index_all_reindexes_series_a_failed_flush_created(redis_client):
    store = _store(redis_client)
    # a first attempt created the series, then failed before its SADD
    redis_client.append(keys.series("half"), encode_point(NOW, 1.0))
    stats = store.append_payloads(["half", "fresh"], [encode_point(NOW, 1.0),
                                                      encode_point(NOW, 2.0)], index_all=True)
    assert stats.points == 2 and stats.new_metrics == 2
    assert store.names() == ["fresh", "half"]


def test_point_buffer_groups_per_metric_and_counts_wrong_types(redis_client):
    from skyline.store.writer import PointBuffer

    store = _store(redis_client)
    redis_client.lpush(keys.series("alist"), b"x")
    buf = PointBuffer(store, max_points=100)
    assert buf.add_many(["a", "b", "a", "alist", "a"], [NOW, NOW, NOW + 1, NOW, NOW + 2],
                        [1.0, 2.0, 3.0, 4.0, 5.0]) == 5
    assert len(buf) == 5
    assert buf.flush() == 4
    assert buf.write_errors == 1 and len(buf) == 0
    assert store.read_one("a").values.tolist() == [1.0, 3.0, 5.0]
    assert redis_client.strlen(keys.series("a")) == 48
