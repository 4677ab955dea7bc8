"""The hot store's bulk reads and appends on a real Redis Cluster (3 masters, 3 replicas:
tests/rediscluster.py): grouped by owning master, every series read whole and in order, no
wrong_type; a master killed mid-load is replaced by its replica and the store follows it
without losing a point."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from redis.crc import key_slot

from skyline.core.errors import StoreUnavailable
from skyline.store import keys
from skyline.store.cluster import ClusterStore, Topology
from skyline.store.series import encode, normalise
from tests.rediscluster import RedisCluster

N = 3000
K = 5


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[RedisCluster]:
    c = RedisCluster(tmp_path)
    yield c
    c.close()


def _names() -> list[str]:
    return [f"web.host{i % 97}.metric{i}" for i in range(N)] + [
        'node_load1{instance="a:9100",job="node"}']


def _payloads(names: list[str], t0: float) -> list[bytes]:
    return [encode(t0 + 60.0 * np.arange(K), i + np.arange(K) / 10) for i in range(len(names))]


def test_reads_and_appends_are_grouped_by_master_and_come_back_whole(cluster):
    names = _names()
    store = ClusterStore(cluster.seeds[:1], timeout=5)
    try:
        assert store.append(names, _payloads(names, 1e9)) == len(names)
        topo = store.topology
        assert topo is not None and len(topo.masters) == 3
        # each master holds its share of the series, and only it
        sizes = [cluster.client(i).dbsize() for i in range(3)]
        assert sum(sizes) == len(names) and min(sizes) > len(names) / 5
        owners = topo.masters_of(names)
        assert np.bincount(owners, minlength=3).tolist() == [
            cluster.client(cluster.ports.index(m.port)).dbsize() for m in topo.masters]
        flat = store.read(names)
        assert flat.counts.tolist() == [K] * len(names)
        assert (flat.stats.missing, flat.stats.wrong_type, flat.stats.corrupt) == (0, 0, 0)
        want_v = np.concatenate([i + np.arange(K) / 10 for i in range(len(names))])
        assert np.array_equal(flat.values, want_v)  # in the caller's order
        tail = store.read(names, tail=2)
        assert tail.counts.tolist() == [2] * len(names)
        assert np.array_equal(tail.values, want_v.reshape(-1, K)[:, -2:].ravel())
        # a name with no series is missing, not an error, and keeps its place
        mixed = store.read(["never.written", names[7]])
        assert mixed.counts.tolist() == [0, K] and mixed.stats.missing == 1
    finally:
        store.close()


def test_a_master_killed_mid_load_is_replaced_and_no_point_is_lost(cluster):
    names = _names()
    store = ClusterStore(cluster.seeds, timeout=2, retry_wait=0.3)
    try:
        assert store.append(names, _payloads(names, 1e9)) == len(names)
        for i in range(3):  # the first batch is on the replicas before the master dies
            assert cluster.client(i).execute_command("WAIT", 1, 5000) == 1
        victim = store.topology.masters[1]  # type: ignore[union-attr]
        cluster.kill_master(cluster.ports.index(victim.port))
        # the store's slot map is stale: it meets a dead master, re-learns, and goes on
        assert store.append(names, _payloads(names, 1e9 + 60 * K)) == len(names)
        assert store.retries >= 1 and store.refreshes >= 2
        assert victim not in store.topology.masters  # type: ignore[union-attr]
        flat = store.read(names)
        assert flat.stats.wrong_type == 0 and flat.stats.missing == 0
        starts = np.r_[0, np.cumsum(flat.counts)[:-1]]
        for i in (0, 1, 2, len(names) // 2, len(names) - 1):
            t, v = normalise(flat.timestamps[starts[i]:starts[i] + flat.counts[i]],
                             flat.values[starts[i]:starts[i] + flat.counts[i]])
            assert t.tolist() == (1e9 + 60.0 * np.arange(2 * K)).tolist()
        assert all(int(c) >= 2 * K for c in flat.counts)
    finally:
        store.close()


def test_the_slot_map_follows_cluster_slots(cluster):
    c = cluster.client(0)
    topo = Topology.from_slots(c.execute_command("CLUSTER", "SLOTS"))
    assert (topo.owner >= 0).all() and len(topo.masters) == 3
    names = _names()[:200]
    for name, m in zip(names, topo.masters_of(names).tolist(), strict=True):
        assert c.execute_command("CLUSTER", "KEYSLOT", keys.series(name)) in np.flatnonzero(
            topo.owner == m)
    c.close()


def test_an_unreachable_cluster_is_unavailable_not_partial():
    store = ClusterStore([("127.0.0.1", 1)], timeout=0.5, attempts=2, retry_wait=0.01)
    with pytest.raises(StoreUnavailable):
        store.read(["a.b"])


def test_the_metric_index_is_split_over_the_masters(cluster):
    names = _names()
    store = ClusterStore(cluster.seeds, timeout=2, retry_wait=0.3)
    try:
        assert store.index(names) == len(names)
        assert store.index(names[:10]) == 0  # already there
        assert store.names() == sorted(names)
        topo = store.topology
        assert topo is not None
        # every master holds index sets; each set lists the metrics of its own 16 slots
        for node in topo.masters:
            c = cluster.client(cluster.ports.index(node.port))
            shard_keys = [k.decode() for k in c.scan_iter("skyline.unique_metrics.*")]
            assert len(shard_keys) > keys.INDEX_SHARDS / 5
            for key in shard_keys:
                members = [x.decode() for x in c.smembers(key)]
                ranges = set((topo.slots_of(members, keys.series) // 16).tolist())
                assert ranges == {key_slot(key.encode()) // 16}
            c.close()
        # after a failover the index is whole, served by the promoted replica
        for i in range(3):
            assert cluster.client(i).execute_command("WAIT", 1, 5000) == 1
        cluster.kill_master(cluster.ports.index(topo.masters[0].port))
        assert store.names() == sorted(names)
    finally:
        store.close()
