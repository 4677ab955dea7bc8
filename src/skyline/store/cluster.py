"""Reading and appending series on a Redis Cluster, grouped by owning master (issue 21, first
slice: the store's fast paths; the product still refuses a cluster at start, see
redis_client.refuse_cluster).

Every metric's keys share a hash tag (store/keys.py), so a metric lives on one master. A
`ClusterStore` learns which master serves which slot (CLUSTER SLOTS, from any node it can
reach), splits each read or append of many metrics by master, and sends each master's share
over one plain connection with the single-node fast paths: the flat reader (one pipelined
GET or GETRANGE per metric, copied straight into one buffer) and the raw pipelined APPENDs.
The shares come back in the caller's order, as one Flat, exactly as a single node gives it.

A master that answers MOVED or ASK (slots moved), or that cannot be reached (killed, failing
over), makes the store re-learn the slot map and do the work again, up to `attempts` times
with `retry_wait` between: after a failover the promoted replica is found and used. A read
is never partial: it succeeds whole or raises.

The metric index is split the same way (`index`, `names`): 1,024 sets
(keys.metric_index_shard), each hash-tagged into its own range of 16 slots, so each lists the
metrics of the master that holds it and no node holds the whole index. Appends are at least once: a share whose
replies were lost with its connection is sent again (the hot store keeps one point per
timestamp when it reads, so a repeated point is harmless).
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import redis
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.retry import Retry

from skyline.core.errors import ClusterUnsupported, StoreUnavailable
from skyline.store import keys
from skyline.store.flatread import Flat, FlatReader, FlatStats
from skyline.store.hotstore import _raw_appends
from skyline.store.series import POINT_DTYPE, POINT_SIZE

log = logging.getLogger(__name__)

SLOTS = 16384
_RETRYABLE = (ClusterUnsupported, redis.ConnectionError, redis.TimeoutError, OSError)


@dataclass(frozen=True)
class Node:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


class Topology:
    """Which master serves each of the 16,384 slots."""

    def __init__(self, masters: list[Node], owner: np.ndarray,
                 replicas: Sequence[Node] = ()):
        self.masters = masters
        self.owner = owner  # int16 per slot: index into masters, -1 when unserved
        self.replicas = list(replicas)

    @classmethod
    def from_slots(cls, reply: Sequence[Any]) -> Topology:
        masters: list[Node] = []
        replicas: list[Node] = []
        owner = np.full(SLOTS, -1, dtype=np.int16)

        def node_of(entry: Sequence[Any]) -> Node:
            host = entry[0].decode() if isinstance(entry[0], bytes) else str(entry[0])
            return Node(host or "127.0.0.1", int(entry[1]))

        for entry in reply:
            lo, hi, node = int(entry[0]), int(entry[1]), node_of(entry[2])
            if node not in masters:
                masters.append(node)
            owner[lo:hi + 1] = masters.index(node)
            replicas += [r for r in map(node_of, entry[3:]) if r not in replicas]
        return cls(masters, owner, replicas)

    def slots_of(self, names: Sequence[str], key_of: Callable[[str], str]) -> np.ndarray:
        return np.fromiter((key_slot(key_of(n).encode()) for n in names), dtype=np.int32,
                           count=len(names))

    def masters_of(self, names: Sequence[str], key_of: Callable[[str], str] = keys.series
                   ) -> np.ndarray:
        """The index of the master that owns each name's key (its hash tag's slot)."""
        return self.owner[self.slots_of(names, key_of)]


class ClusterUnavailable(StoreUnavailable, redis.ConnectionError):
    """The cluster could not serve a read or write after every retry: a connection error to
    callers (the write buffer keeps its points and backs off, an analyzer run is retried)."""


def _slot(key: str) -> int:
    return int(key_slot(key.encode()))


@functools.cache
def _index_keys() -> tuple[str, ...]:
    return tuple(keys.metric_index_shard(s) for s in range(0, SLOTS, SLOTS // keys.INDEX_SHARDS))


#: error replies that mean "not here, or not now" (slots moved or moving, the cluster down
#: or failing over, a node still loading): the store re-learns the slot map and tries again
_TRANSIENT_REPLIES = ("MOVED", "ASK", "CLUSTERDOWN", "TRYAGAIN", "MASTERDOWN", "LOADING")


def _as_retryable(err: Exception, node: Node) -> Exception:
    """A transient error reply (MOVED, CLUSTERDOWN, ...) as the error the store retries on;
    any other error as it is."""
    text = str(err)
    if text.startswith(_TRANSIENT_REPLIES):
        return ClusterUnsupported(str(node), text[:60])
    return err


def is_cluster(client: redis.Redis) -> bool:
    try:
        info = client.info("cluster")
    except redis.ResponseError:
        return False
    return bool(int(info.get("cluster_enabled", 0) or 0))


class ClusterStore:
    """The hot store's bulk reads and appends over a cluster; `seeds` are any nodes' (host,
    port). `connect(node)` makes a plain client for one node (default: redis.Redis with
    `timeout`)."""

    def __init__(self, seeds: Sequence[tuple[str, int]], *, timeout: float = 10.0,
                 batch: int = 1000, attempts: int = 20, retry_wait: float = 0.5,
                 connect: Callable[[Node], redis.Redis] | None = None):
        self.seeds = [Node(h, int(p)) for h, p in seeds]
        self.batch = batch
        self.attempts = attempts
        self.retry_wait = retry_wait
        self._connect = connect or (lambda n: redis.Redis(
            host=n.host, port=n.port, socket_timeout=timeout, socket_connect_timeout=timeout))
        self._clients: dict[Node, redis.Redis] = {}
        self._readers: dict[Node, FlatReader] = {}
        self.topology: Topology | None = None
        self.refreshes = 0
        self.retries = 0
        self._out = np.empty(0, dtype=np.uint8)
        self._pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="skyline-cluster")
        self._read_lock = threading.Lock()

    @property
    def nodes(self) -> list[tuple[str, int]]:
        """Every node this store knows of (its seeds and every node the cluster reported)."""
        return [(n.host, n.port) for n in self.seeds]

    @classmethod
    def from_url(cls, url: str, timeout: float,
                 seeds: Sequence[tuple[str, int]] = ()) -> ClusterStore:
        """A store seeded with the node REDIS_URL names (and `seeds`, nodes learnt before);
        its credentials and TLS (rediss://) are used for every node the cluster reports."""
        from redis.connection import parse_url

        kw = parse_url(url)
        seed = (str(kw.pop("host", "127.0.0.1")), int(kw.pop("port", 6379)))
        kw.pop("db", None)  # a cluster has database 0 only
        kw.pop("connection_class", None)
        extra = {k: v for k, v in kw.items() if k in ("username", "password")}
        if url.startswith("rediss://"):
            extra["ssl"] = True

        def connect(node: Node) -> redis.Redis:
            # one quick retry of a blip; the store's own loop (re-learning the map) does the rest
            return redis.Redis(host=node.host, port=node.port, socket_timeout=timeout,
                               socket_connect_timeout=min(timeout, 5.0),
                               retry=Retry(NoBackoff(), 1), **extra)

        return cls([seed, *[n for n in seeds if n != seed]], timeout=timeout, connect=connect)

    def twin(self) -> ClusterStore:
        """Another store on the same cluster with connections and a read buffer of its own
        (a read's points stay valid until its own store's next read)."""
        twin = ClusterStore([(n.host, n.port) for n in self.seeds], batch=self.batch, attempts=self.attempts,
                            retry_wait=self.retry_wait, connect=self._connect)
        twin.topology = self.topology
        return twin

    # topology --------------------------------------------------------------------------------
    def client(self, node: Node) -> redis.Redis:
        c = self._clients.get(node)
        if c is None:
            c = self._clients[node] = self._connect(node)
        return c

    def refresh(self) -> Topology:
        """Learn the slot map from the first node that answers (known masters first, then the
        seeds)."""
        known = self.topology.masters if self.topology is not None else []
        last: Exception | None = None
        # the seeds grow with every node the cluster reported: when the node REDIS_URL
        # names is the one that died, the others still answer
        for node in [*known, *[s for s in self.seeds if s not in known]]:
            try:
                reply = self.client(node).execute_command("CLUSTER", "SLOTS")
            except (redis.ConnectionError, redis.TimeoutError, OSError) as e:
                last = e
                self._drop(node)
                continue
            topo = Topology.from_slots(reply)
            self.seeds += [n for n in (*topo.masters, *topo.replicas) if n not in self.seeds]
            for gone in set(self._clients) - set(topo.masters) - set(self.seeds):
                self._drop(gone)
            self.topology = topo
            self.refreshes += 1
            return topo
        raise ClusterUnavailable("Redis Cluster", ", ".join(map(str, self.seeds)),
                                 f"no node answers CLUSTER SLOTS: {last}")

    def _drop(self, node: Node) -> None:
        c = self._clients.pop(node, None)
        self._readers.pop(node, None)
        if c is not None:
            c.close()

    def _topology(self) -> Topology:
        return self.topology if self.topology is not None else self.refresh()

    def _retrying(self, what: str, work: Callable[[Topology], Any]) -> Any:
        last: Exception | None = None
        for attempt in range(self.attempts):
            try:
                topo = self._topology() if attempt == 0 else self.refresh()
                if (topo.owner < 0).any():
                    raise ClusterUnsupported(", ".join(map(str, topo.masters)),
                                             "some slots are served by no master")
                return work(topo)
            except _RETRYABLE as e:
                last = e
                self.retries += 1
                if attempt == 0:
                    log.warning("redis cluster: %s: %s; re-learning the slot map and retrying",
                                what, e)
                time.sleep(self.retry_wait)
        raise ClusterUnavailable("Redis Cluster", ", ".join(map(str, self.seeds)),
                                 f"{what} failed {self.attempts} times: {last}")

    # reads -----------------------------------------------------------------------------------
    def read(self, names: Sequence[str], beside: Callable[[str], str] | None = None, *,
             tail: int | None = None, key_of: Callable[[str], str] = keys.series) -> Flat:
        """Every named series in order, as FlatReader.read gives it from one node (with
        `beside`, also each name's value beside it: the key shares the metric's hash tag, so
        the same master holds it); each master's share read over its own connection. The
        points are a view into this store's buffer: valid until its next read."""
        with self._read_lock:  # the readers' buffers are this store's: one read at a time
            return self._retrying("read", lambda topo: self._read(topo, names, tail, key_of,
                                                                  beside))

    def _read(self, topo: Topology, names: Sequence[str], tail: int | None,
              key_of: Callable[[str], str],
              beside: Callable[[str], str] | None = None) -> Flat:
        owner = topo.masters_of(names, key_of)
        counts = np.zeros(len(names), dtype=np.int64)
        stats = FlatStats()
        jobs = []
        for m, node in enumerate(topo.masters):
            mine = np.flatnonzero(owner == m)
            if not len(mine):
                continue
            reader = self._readers.get(node)
            if reader is None:
                reader = self._readers[node] = FlatReader(self.client(node), batch=self.batch,
                                                          initial_bytes=16 << 20)
            jobs.append((mine, reader, [names[i] for i in mine.tolist()]))
        # the masters answer at once, each share on its own connection and thread (the
        # waits overlap; each result is a view into its node's reader, valid until its next
        # read)
        futures = [self._pool.submit(r.read, share, beside, tail=tail, key_of=key_of)
                   for _mine, r, share in jobs]
        values: list[bytes | None] = [None] * len(names) if beside is not None else []
        shares: list[tuple[np.ndarray, Flat]] = []
        error: BaseException | None = None
        for (mine, _r, _share), fut in zip(jobs, futures, strict=True):
            try:
                flat = fut.result()
            except BaseException as e:  # noqa: BLE001 - every share is waited for first
                error = error or e
                continue
            counts[mine] = flat.counts
            shares.append((mine, flat))
            if beside is not None:
                for i, value in zip(mine.tolist(), flat.beside, strict=True):
                    values[i] = value
            stats.missing += flat.stats.missing
            stats.wrong_type += flat.stats.wrong_type
            stats.corrupt += flat.stats.corrupt
        if error is not None:
            raise error
        # each share's series copied to where the caller's order puts them: one memcpy per
        # series (no index per point), into a buffer kept from one read to the next
        total = int(counts.sum()) * POINT_SIZE
        if len(self._out) < total:
            self._out = np.empty(max(total, 2 * len(self._out)), dtype=np.uint8)
        out = self._out.data  # a memoryview of the buffer
        out_start = (np.r_[0, np.cumsum(counts)[:-1]] * POINT_SIZE).tolist()
        for mine, flat in shares:
            src = flat.points.view(np.uint8).data
            sizes = (flat.counts * POINT_SIZE).tolist()
            pos = 0
            for i, size in zip(mine.tolist(), sizes, strict=True):
                if size:
                    o = out_start[i]
                    out[o:o + size] = src[pos:pos + size]
                    pos += size
        return Flat(self._out[:total].view(POINT_DTYPE), counts, stats, values)

    # appends ---------------------------------------------------------------------------------
    def append(self, names: Sequence[str], payloads: Sequence[bytes],
               key_of: Callable[[str], str] = keys.series) -> int:
        """APPEND payloads[i] to key_of(names[i]) for every i, each master's share in pipelined
        batches over its own connection; returns how many were stored. A share that met a
        transient error (MOVED, CLUSTERDOWN, a lost connection) is sent again once the slot
        map is re-learnt; after every attempt failed, ClusterUnavailable (nothing reported
        stored that was not)."""
        return int((self.append_replies(names, payloads, key_of)[0] >= 0).sum())

    def set(self, names: Sequence[str], payloads: Sequence[bytes],
            key_of: Callable[[str], str]) -> int:
        """SET key_of(names[i]) to payloads[i] (the analysis states), as `append` sends its
        APPENDs; returns how many were stored."""
        return int((self.append_replies(names, payloads, key_of, verb=b"SET")[0] >= 0).sum())

    def append_replies(self, names: Sequence[str], payloads: Sequence[bytes],
                       key_of: Callable[[str], str] = keys.series, *,
                       verb: bytes = b"APPEND") -> tuple[np.ndarray, np.ndarray]:
        """As `append`, with each command's reply: the key's new length (0 for a SET), or -1
        where Redis refused it (WRONGTYPE: a key of another type); and which names were sent
        more than once (a batch whose replies were lost may have landed: its lengths no longer
        tell a new key from an old one)."""
        todo = np.arange(len(names))
        stored = 0
        replied = np.full(len(names), -1, dtype=np.int64)
        resent = np.zeros(len(names), dtype=bool)

        def work(topo: Topology) -> int:
            nonlocal todo, stored
            owner = topo.masters_of([names[i] for i in todo.tolist()], key_of)
            failed: list[np.ndarray] = []
            error: Exception | None = None
            for m, node in enumerate(topo.masters):
                mine = todo[owner == m]
                for lo in range(0, len(mine), self.batch):
                    chunk = mine[lo:lo + self.batch]
                    try:
                        replies, retried = self._append_chunk(node, chunk, names, payloads,
                                                              key_of, verb)
                    except _RETRYABLE as e:
                        failed.append(mine[lo:])
                        resent[chunk] = True  # sent, replies lost: it may have landed
                        error = e
                        break
                    if retried:
                        resent[chunk] = True
                    errors = [isinstance(r, Exception) for r in replies]
                    # only WRONGTYPE is a refusal; any other error reply is sent again
                    again = np.array([e and not str(r).startswith("WRONGTYPE")
                                      for e, r in zip(errors, replies, strict=True)], dtype=bool)
                    if again.any():
                        failed.append(chunk[again])
                        error = ClusterUnsupported(
                            str(node), str(replies[int(np.argmax(again))])[:60])
                        errors = [e and not a for e, a in zip(errors, again, strict=True)]
                    ok = ~np.array(errors, dtype=bool) & ~again
                    replied[chunk[ok]] = [r if isinstance(r, int) else 0
                                          for r, good in zip(replies, ok, strict=True) if good]
                    stored += int(ok.sum())
            todo = np.concatenate(failed) if failed else np.empty(0, dtype=np.int64)
            if error is not None:
                raise error
            return stored

        self._retrying(verb.decode().lower(), work)
        return replied, resent

    # the index ----------------------------------------------------------------------------
    def index(self, names: Sequence[str]) -> int:
        """Add names to the cluster's metric index (keys.metric_index_shard of each name's
        slot: the set lives on the master of the metric's own keys); returns how many were
        new."""
        def work(topo: Topology) -> int:
            slots = topo.slots_of(names, keys.series)
            shards: dict[str, list[str]] = {}
            for name, slot in zip(names, slots.tolist(), strict=True):
                shards.setdefault(keys.metric_index_shard(slot), []).append(name)
            by_master: dict[int, list[str]] = {}
            for key in shards:
                by_master.setdefault(int(topo.owner[_slot(key)]), []).append(key)
            added = 0
            for m, shard_keys in by_master.items():
                pipe = self.client(topo.masters[m]).pipeline(transaction=False)
                for key in shard_keys:
                    pipe.sadd(key, *shards[key])
                for reply in pipe.execute(raise_on_error=False):
                    if isinstance(reply, Exception):
                        raise _as_retryable(reply, topo.masters[m])
                    added += int(reply)
            return added

        return int(self._retrying("index", work))

    def names(self, shards: Collection[int] | None = None) -> list[str]:
        """Every metric in the cluster's index, sorted (each master scans its own shards);
        with `shards`, only the metrics of those index shards (slot // 16)."""
        wanted = set(range(keys.INDEX_SHARDS)) if shards is None else set(shards)

        def work(topo: Topology) -> list[str]:
            out: set[str] = set()
            for m, node in enumerate(topo.masters):
                mine = [key for k, key in enumerate(_index_keys())
                        if k in wanted and topo.owner[_slot(key)] == m]
                client = self.client(node)
                try:
                    for key in mine:
                        out.update(n.decode() if isinstance(n, bytes) else str(n)
                                   for n in client.sscan_iter(key, count=5000))
                except redis.ResponseError as e:
                    raise _as_retryable(e, node) from None
            return sorted(out)

        return list(self._retrying("names", work))

    def count(self) -> int:
        """How many metrics the index lists."""
        def work(topo: Topology) -> int:
            total = 0
            for m, node in enumerate(topo.masters):
                pipe = self.client(node).pipeline(transaction=False)
                for key in _index_keys():
                    if topo.owner[_slot(key)] == m:
                        pipe.scard(key)
                try:
                    total += sum(int(n) for n in pipe.execute())
                except redis.ResponseError as e:
                    raise _as_retryable(e, node) from None
            return total

        return int(self._retrying("count", work))

    def remove(self, names: Sequence[str]) -> None:
        """Take names out of the index (their shards)."""
        def work(topo: Topology) -> None:
            shards: dict[str, list[str]] = {}
            for name, slot in zip(names, topo.slots_of(names, keys.series).tolist(),
                                  strict=True):
                shards.setdefault(keys.metric_index_shard(slot), []).append(name)
            for key, members in shards.items():
                node = topo.masters[int(topo.owner[_slot(key)])]
                try:
                    self.client(node).srem(key, *members)
                except redis.ResponseError as e:
                    raise _as_retryable(e, node) from None

        self._retrying("remove", work)

    def _append_chunk(self, node: Node, chunk: np.ndarray, names: Sequence[str],
                      payloads: Sequence[bytes], key_of: Callable[[str], str],
                      verb: bytes = b"APPEND") -> tuple[list[Any], bool]:
        pool = self.client(node).connection_pool
        conn = pool.get_connection()
        try:
            replies, retried = _raw_appends(conn, [names[i] for i in chunk.tolist()],
                                            [payloads[i] for i in chunk.tolist()], key_of,
                                            verb)
        except BaseException:
            conn.disconnect()
            raise
        finally:
            pool.release(conn)
        return replies, retried

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        for node in list(self._clients):
            self._drop(node)
