"""The hot store's own operations on a real Redis Cluster (3 masters: tests/rediscluster.py),
through the same classes the components use with a cluster store beside their client: the
write path indexes new metrics on their own master, listing, counting, deleting, analysis
states, the roomba's trim and history moves with its cursor over the index shards, and the
analyzers' leases."""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np
import pytest

from skyline.services.analyzer.leases import Leases, share
from skyline.store import keys
from skyline.store.analysis_state import StateStore
from skyline.store.cluster import ClusterStore
from skyline.store.hotstore import HotStore
from skyline.store.redis_client import connect_url
from skyline.store.roomba import HistoryPolicy, Roomba
from skyline.store.series import encode
from tests.rediscluster import RedisCluster

N = 400


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    c = RedisCluster(tmp_path_factory.mktemp("cluster"), masters=3, replicas=False)
    yield c
    c.close()


@pytest.fixture
def connected(cluster: RedisCluster) -> Iterator[tuple[object, ClusterStore]]:
    client, store = connect_url(f"redis://127.0.0.1:{cluster.ports[0]}/0", 5)
    assert store is not None
    client.flushall()  # type: ignore[attr-defined]  # every master (RedisCluster fans out)
    yield client, store
    store.close()
    client.close()  # type: ignore[attr-defined]


def _names(prefix: str) -> list[str]:
    return [f"{prefix}.host{i % 13}.m{i}" for i in range(N)]


def test_writes_index_new_metrics_on_their_master_and_delete_removes_them(connected) -> None:
    client, store = connected
    hot = HotStore(client, cluster=store)  # type: ignore[arg-type]
    names = _names("w")
    t = 1.7e9 + 60.0 * np.arange(5)
    stats = hot.append_payloads(names, [encode(t, np.full(5, float(i)))
                                        for i in range(N)])
    assert (stats.points, stats.new_metrics, stats.errors) == (5 * N, N, [])
    again = hot.append_payloads(names[:10], [encode(t + 300, np.ones(5))] * 10)
    assert (again.points, again.new_metrics) == (50, 0)  # not new: not counted again
    assert hot.names() == sorted(names) and hot.count() == N
    assert hot.names("w.host3.*") == sorted(n for n in names if ".host3." in n)
    # the index is split: no master holds all of it
    per_master = [sum(1 for k in range(keys.INDEX_SHARDS)
                      if store.topology.owner[_slot(keys.metric_index_shard(16 * k))] == m)
                  for m in range(3)]
    assert min(per_master) > 0
    lt, lv = hot.last_points(names[:3] + ["never.written"])
    assert lv[:3].tolist() == [1.0, 1.0, 1.0] and np.isnan(lv[3]) and np.isnan(lt[3])
    assert hot.append_beside(keys.scores, names[:4], [encode(t, np.zeros(5))] * 4) == 0
    assert store.read(names[:4], key_of=keys.scores).counts.tolist() == [5] * 4
    assert hot.delete(names[:4]) == 4
    assert hot.count() == N - 4 and names[0] not in hot.names()
    assert store.read(names[:4], key_of=keys.scores).counts.tolist() == [0] * 4


def _slot(key: str) -> int:
    from redis.crc import key_slot

    return int(key_slot(key.encode()))


def test_analysis_states_are_stored_beside_their_metrics(connected) -> None:
    client, store = connected
    names = _names("s")
    states = StateStore(client, cluster=store)  # type: ignore[arg-type]
    blobs = [bytes([i % 251]) * (10 + i % 7) for i in range(N)]
    states.write(names, blobs)
    assert states.read(names) == blobs
    # read with the series, in the same round trips, as the analyzer does
    assert store.read(names, keys.analysis_state).beside == blobs


def test_the_roomba_trims_and_moves_history_over_every_index_shard(connected) -> None:
    client, store = connected
    hot = HotStore(client, cluster=store)  # type: ignore[arg-type]
    names = _names("r")
    now = 1.8e9
    t = now - 60.0 * np.arange(2000)[::-1]  # about 33 h: the oldest 9 h beyond a day
    hot.append_payloads(names, [encode(t, np.ones(len(t)))] * N)
    client.delete(keys.series(names[7]))  # type: ignore[attr-defined]  # an orphan
    roomba = Roomba(client, retention=86400, batch_size=64,  # type: ignore[arg-type]
                    history=HistoryPolicy(resolution=600, span=30 * 86400, batch=3600),
                    cluster=store)
    first = roomba.run_pass(now, 150)  # bounded: stops part way, the cursor remembers
    assert 150 <= first.examined < N and not first.wrapped
    rest = roomba.run_pass(now, 10 * N)
    assert rest.wrapped and first.examined + rest.examined == N
    assert first.history_written + rest.history_written == N - 1
    kept = store.read([n for n in names if n != names[7]])
    assert (kept.counts == int((t >= now - 86400).sum())).all()
    assert all(client.exists(keys.history(n)) for n in names[:3])  # type: ignore[attr-defined]
    assert hot.count() == N - 1 and names[7] not in hot.names()


def test_analyzers_share_the_shards_and_take_over_a_member_that_left_or_expired(
        connected) -> None:
    client, _store = connected
    assert [len(share(i, 3)) for i in range(3)] == [341, 341, 342]
    assert [x for i in range(3) for x in share(i, 3)] == list(range(keys.INDEX_SHARDS))
    a = Leases(client, ttl=60, member="a")  # type: ignore[arg-type]
    b = Leases(client, ttl=1, member="b")  # type: ignore[arg-type]
    assert a.renew() == range(0, keys.INDEX_SHARDS)  # alone: everything
    assert b.renew() == range(512, 1024)
    assert a.renew() == range(0, 512) and a.members == ["a", "b"]
    b.leave()
    assert a.renew() == range(0, keys.INDEX_SHARDS)
    b.renew()
    assert a.renew() == range(0, 512)
    time.sleep(1.2)  # b stops renewing: its lease runs out on Redis's clock
    assert a.renew() == range(0, keys.INDEX_SHARDS) and a.members == ["a"]


def test_only_wrongtype_makes_the_roomba_delete_a_key() -> None:
    """A cluster failing over answers CLUSTERDOWN to every GET: the roomba must raise it, not
    take the series for a key of another type and delete it."""
    from redis.exceptions import ClusterDownError, ResponseError

    from skyline.store.roomba import _wrong_type

    assert _wrong_type(ResponseError("WRONGTYPE Operation against a key holding the wrong "
                                     "kind of value"))
    assert not _wrong_type(ClusterDownError("CLUSTERDOWN The cluster is down"))
    assert not _wrong_type(ResponseError("TRYAGAIN Multiple keys request during rehashing"))
    assert not _wrong_type(b"\x00" * 16)


def test_an_append_during_clusterdown_is_retried_never_reported_refused(
        cluster: RedisCluster) -> None:
    """While a master's slots are served by no one the nodes answer CLUSTERDOWN: the append
    is retried and, when the slots never come back, fails as unavailable (the write buffer
    keeps the points) instead of reporting them refused and dropping them."""
    from skyline.store.cluster import ClusterUnavailable

    store = ClusterStore(cluster.seeds, timeout=5, attempts=3, retry_wait=0.1)
    names = _names("down")
    try:
        store.refresh()
        owner = cluster.client(0)
        mine = [s for s in range(16384) if store.topology.owner[s] == 0]
        owner.execute_command("CLUSTER", "DELSLOTS", *mine)
        try:
            with pytest.raises(ClusterUnavailable):
                store.append_replies(names, [encode(np.array([1.0]), np.array([1.0]))] * N)
        finally:
            owner.execute_command("CLUSTER", "ADDSLOTS", *mine)
            owner.close()
        store.attempts = 40  # the nodes agree on the returned slots within a few tries
        replies, _resent = store.append_replies(
            names, [encode(np.array([2.0]), np.array([1.0]))] * N)
        assert (replies > 0).all()  # every name stored once the slots are back
    finally:
        store.close()
