"""The hot store: every metric's last FULL_DURATION of points in Redis.

Writes append packed points (see series.py) and add new names to the metric index; reads are
pipelined GETs decoded with numpy. Trimming lives in roomba.py.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import redis
from redis.connection import AbstractConnection

from skyline.core.patterns import PatternSet
from skyline.core.types import FloatArray, Series
from skyline.store import keys
from skyline.store.flatread import FlatReader
from skyline.store.series import POINT_SIZE, decode, encode, normalise

if TYPE_CHECKING:  # cluster.py builds on this module's raw appends
    from skyline.store.cluster import ClusterStore

try:
    import hiredis

    HAVE_HIREDIS = True
except ImportError:  # redis-py then parses in Python; append falls back to its pipeline
    HAVE_HIREDIS = False

log = logging.getLogger(__name__)


@dataclass
class ReadStats:
    corrupt: int = 0  # series with trailing bytes that are not a whole point
    wrong_type: int = 0  # keys that are not strings
    missing: int = 0  # names in the index without a series


@dataclass
class WriteStats:
    points: int = 0
    new_metrics: int = 0
    errors: list[str] = field(default_factory=list)


def _decode_name(raw: bytes | str) -> str:
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw


# The write path sends APPENDs as RESP it packs itself and parses the replies with hiredis:
# redis-py's pipeline spends ~8 us of Python per command, Redis ~0.5 us (bench/store.py).
_KEY_VALUE_RESP = {
    verb: b"*3\r\n$%d\r\n%b\r\n" % (len(verb), verb) + b"$%d\r\n%b\r\n$%d\r\n%b\r\n"
    for verb in (b"APPEND", b"SET")
}
_READ_SIZE = 65536


def _raw_appends(
    conn: AbstractConnection, batch: Sequence[str], payloads: Sequence[bytes],
    key_of: Callable[[str], str] = keys.series, verb: bytes = b"APPEND",
) -> tuple[list[Any], bool]:
    """Send one APPEND per name (`payloads[i]` to the key `key_of(batch[i])`) in one write and
    read the replies: ints (the new length) or hiredis.ReplyError. Retried on connection errors
    under the connection's Retry policy; returns (replies, whether it was retried). With
    `verb` b"SET" the same as SETs (replies b"OK"), for values that are replaced, not grown."""
    template = _KEY_VALUE_RESP[verb]
    commands = []
    for name, payload in zip(batch, payloads, strict=True):
        key = key_of(name).encode()
        commands.append(template % (len(key), key, len(payload), payload))
    packed = [b"".join(commands)]
    attempts = 0

    def once() -> list[Any]:
        nonlocal attempts
        attempts += 1
        conn.send_packed_command(packed)  # (re)connects and health-checks as redis-py does
        return _read_replies(conn, len(batch))

    replies = conn.retry.call_with_retry(once, lambda _error: conn.disconnect())
    return replies, attempts > 1


def _read_replies(conn: AbstractConnection, count: int) -> list[Any]:
    """Read `count` replies straight off the connection's socket (nothing else is pending on
    it: the caller sent exactly `count` commands after the previous replies were read)."""
    sock = conn._sock
    if sock is None:
        raise redis.ConnectionError("connection closed before the replies were read")
    reader = hiredis.Reader()
    buf = bytearray(_READ_SIZE)
    view = memoryview(buf)
    replies: list[Any] = []
    try:
        while len(replies) < count:
            nread = sock.recv_into(buf)
            if not nread:
                raise redis.ConnectionError("Connection closed by server.")
            reader.feed(view, 0, nread)
            # every complete reply so far (gets() answers False when it needs more bytes;
            # APPEND never answers a RESP3 false)
            got = list(iter(reader.gets, False))
            if list in map(type, got):  # RESP3 push messages are not APPEND replies
                got = [r for r in got if not isinstance(r, list)]
            replies.extend(got)
    except TimeoutError:  # socket.timeout
        raise redis.TimeoutError("Timeout reading from socket") from None
    except OSError as e:
        raise redis.ConnectionError(f"Error while reading from socket: {e}") from None
    return replies


class HotStore:
    """`cluster`: on a Redis Cluster, the store that sends the bulk reads and writes to each
    key's master (store/cluster.py); `client` is then redis-py's cluster client."""

    def __init__(self, client: redis.Redis, *, read_chunk_size: int = 1000,
                 write_batch_size: int = 10_000, cluster: ClusterStore | None = None):
        self.client = client
        self.read_chunk_size = read_chunk_size
        self.write_batch_size = write_batch_size
        self.cluster = cluster

    # writes -------------------------------------------------------------------------------
    def append(
        self, names: Sequence[str], timestamps: FloatArray, values: FloatArray
    ) -> WriteStats:
        """Append one point per entry (names may repeat); see append_payloads."""
        n = len(names)
        if n == 0:
            return WriteStats()
        packed = encode(np.asarray(timestamps, dtype=np.float64),
                        np.asarray(values, dtype=np.float64))
        if len(packed) != n * POINT_SIZE:  # every APPEND below must hold exactly one point
            raise ValueError(f"{n} names but {len(packed) // POINT_SIZE} points")
        payloads = [packed[i : i + POINT_SIZE] for i in range(0, len(packed), POINT_SIZE)]
        return self.append_payloads(names, payloads)

    def append_payloads(
        self, names: Sequence[str], payloads: Sequence[bytes], *, index_all: bool = False
    ) -> WriteStats:
        """Append `payloads[i]` (whole packed points) to the series of `names[i]`, pipelined in
        batches. A series the APPEND created is added to the metric index; with `index_all`
        every name written is (for a retry of writes that may have partly landed before, where
        a series the first attempt created no longer looks new).

        An APPEND that Redis refuses (a key of another type) is recorded in `errors` and not
        counted in `points`; the rest of the batch still lands. Connection errors are retried
        as redis-py retries a pipeline (the client's Retry policy), then raised.
        """
        stats = WriteStats()
        if not names:
            return stats
        if self.cluster is not None:
            self._append_cluster(self.cluster, names, payloads, stats, index_all)
            return stats
        pool = getattr(self.client, "connection_pool", None)
        if not HAVE_HIREDIS or pool is None:
            self._append_pipelined(names, payloads, stats, index_all)
            return stats
        conn = pool.get_connection()
        try:
            if not isinstance(conn, AbstractConnection):  # e.g. a client-side-cache proxy
                self._append_pipelined(names, payloads, stats, index_all)
                return stats
            step = self.write_batch_size
            for start in range(0, len(names), step):
                batch, parts = names[start : start + step], payloads[start : start + step]
                replies, retried = _raw_appends(conn, batch, parts)
                self._count(batch, parts, replies, stats, conn=conn,
                            index_all=index_all or retried)
        except BaseException:
            conn.disconnect()  # replies may be left unread: never reuse this connection
            raise
        finally:
            pool.release(conn)
        return stats

    def append_beside(self, key_of: Callable[[str], str], names: Sequence[str],
                      payloads: Sequence[bytes]) -> int:
        """Append `payloads[i]` to the key `key_of(names[i])` (a series kept beside the
        metric's own, such as its scores: nothing is indexed), on the same fast path as
        append_payloads. Returns how many APPENDs Redis refused."""
        if not names:
            return 0
        if self.cluster is not None:
            return int((self.cluster.append_replies(names, payloads, key_of)[0] < 0).sum())
        pool = getattr(self.client, "connection_pool", None)
        refused = 0
        if not HAVE_HIREDIS or pool is None:
            pipe = self.client.pipeline(transaction=False)
            for name, payload in zip(names, payloads, strict=True):
                pipe.append(key_of(name), payload)
            return sum(not isinstance(r, int) for r in pipe.execute(raise_on_error=False))
        conn = pool.get_connection()
        try:
            step = self.write_batch_size
            for start in range(0, len(names), step):
                replies, _ = _raw_appends(conn, names[start:start + step],
                                          payloads[start:start + step], key_of)
                refused += sum(not isinstance(r, int) for r in replies)
        except BaseException:
            conn.disconnect()
            raise
        finally:
            pool.release(conn)
        return refused

    def _append_cluster(self, cluster: ClusterStore, names: Sequence[str],
                        payloads: Sequence[bytes], stats: WriteStats, index_all: bool) -> None:
        """The same writes on a cluster: each master's share over its own connection; the
        series the APPENDs created go to the index shard on their own master."""
        replies, resent = cluster.append_replies(names, payloads)
        sizes = np.fromiter((len(p) for p in payloads), dtype=np.int64, count=len(payloads))
        ok = replies >= 0
        stats.points += int(sizes[ok].sum()) // POINT_SIZE
        for i in np.flatnonzero(~ok).tolist():
            stats.errors.append(f"{names[i]}: WRONGTYPE (the key is not a series)")
        # the series an APPEND created, and every one sent twice (its first APPEND may have
        # created it): SADD counts the names truly new
        index = ok if index_all else ok & ((replies == sizes) | resent)
        fresh = list(dict.fromkeys(names[i] for i in np.flatnonzero(index).tolist()))
        if fresh:
            stats.new_metrics += cluster.index(fresh)

    def _append_pipelined(self, names: Sequence[str], payloads: Sequence[bytes],
                          stats: WriteStats, index_all: bool) -> None:
        """The same writes through redis-py's pipeline (clients without a plain connection)."""
        step = self.write_batch_size
        for start in range(0, len(names), step):
            batch, parts = names[start : start + step], payloads[start : start + step]
            pipe = self.client.pipeline(transaction=False)
            for name, payload in zip(batch, parts, strict=True):
                pipe.append(keys.series(name), payload)
            self._count(batch, parts, pipe.execute(raise_on_error=False), stats,
                        index_all=index_all)

    def _count(self, batch: Sequence[str], payloads: Sequence[bytes], replies: list[Any],
               stats: WriteStats, *, conn: AbstractConnection | None = None,
               index_all: bool = False) -> None:
        """Tally one batch's APPEND replies and index its new series."""
        written: set[str] = set()
        new: set[str] = set()
        for name, payload, reply in zip(batch, payloads, replies, strict=True):
            if isinstance(reply, int):
                stats.points += len(payload) // POINT_SIZE
                written.add(name)
                if reply == len(payload):
                    new.add(name)
            else:
                stats.errors.append(f"{name}: {reply}")
        if index_all:
            # SADD answers how many were not there yet: the true count of new series
            if written:
                stats.new_metrics += self._sadd(conn, written)
        elif new:
            self._sadd(conn, new)
            stats.new_metrics += len(new)

    def _sadd(self, conn: AbstractConnection | None, names: set[str]) -> int:
        if conn is None:
            return int(self.client.sadd(keys.METRIC_INDEX, *names))

        def once() -> int:
            conn.send_command("SADD", keys.METRIC_INDEX, *names)
            return int(conn.read_response())

        return int(conn.retry.call_with_retry(once, lambda _error: conn.disconnect()))

    def delete(self, names: Iterable[str]) -> int:
        names = list(names)
        deleted = 0
        for start in range(0, len(names), self.read_chunk_size):
            chunk = names[start : start + self.read_chunk_size]
            pipe = self.client.pipeline(transaction=False)
            others = len(keys.metric_keys("x")) - 1  # its analysis state, scores, history
            for name in chunk:
                pipe.delete(keys.series(name))
                for key in keys.metric_keys(name)[1:]:  # one key a DEL: a cluster pipeline
                    pipe.delete(key)
            pipe.hdel(keys.OPEN_INCIDENTS, *chunk)
            if self.cluster is None:
                pipe.srem(keys.METRIC_INDEX, *chunk)
            replies = pipe.execute()
            deleted += sum(replies[:len(chunk) * (1 + others):1 + others])
            if self.cluster is not None:  # the index is split over the masters
                self.cluster.remove(chunk)
        return deleted

    # index --------------------------------------------------------------------------------
    def names(self, pattern: str | None = None) -> list[str]:
        """Every metric name (sorted), or those matching one pattern."""
        all_names: Iterable[str]
        if self.cluster is not None:
            all_names = self.cluster.names()
        else:
            all_names = (_decode_name(n)
                         for n in self.client.sscan_iter(keys.METRIC_INDEX, count=5000))
        if pattern:
            return sorted(PatternSet([pattern]).filter(all_names))
        return sorted(all_names)

    def count(self) -> int:
        if self.cluster is not None:
            return self.cluster.count()
        return int(self.client.scard(keys.METRIC_INDEX))

    # reads --------------------------------------------------------------------------------
    def read_raw(self, names: Sequence[str]) -> list[bytes | None]:
        """Raw values in the order of `names`; None when missing or not a string."""
        out: list[bytes | None] = []
        for start in range(0, len(names), self.read_chunk_size):
            pipe = self.client.pipeline(transaction=False)
            for name in names[start : start + self.read_chunk_size]:
                pipe.get(keys.series(name))
            for r in pipe.execute(raise_on_error=False):
                out.append(None if isinstance(r, Exception) else r)
        return out

    def read(
        self, names: Sequence[str], *, since: float | None = None,
        until: float | None = None, stats: ReadStats | None = None,
    ) -> list[Series]:
        """Series for `names` (sorted, de-duplicated, last write wins), in the same order;
        a missing name gives an empty series."""
        stats = stats if stats is not None else ReadStats()
        result = []
        for start in range(0, len(names), self.read_chunk_size):
            chunk = names[start : start + self.read_chunk_size]
            pipe = self.client.pipeline(transaction=False)
            for name in chunk:
                pipe.get(keys.series(name))
            for name, raw in zip(chunk, pipe.execute(raise_on_error=False), strict=True):
                if isinstance(raw, redis.ResponseError):
                    stats.wrong_type += 1
                    raw = None
                elif isinstance(raw, Exception):
                    raise raw
                if raw is None:
                    stats.missing += 1
                t, v, extra = decode(raw)
                if extra:
                    stats.corrupt += 1
                t, v = normalise(t, v, since)
                if until is not None and t.size and t[-1] > until:
                    cut = int(np.searchsorted(t, until, side="right"))
                    t, v = t[:cut], v[:cut]
                result.append(Series(name, t, v))
        return result

    def last_points(self, names: Sequence[str]) -> tuple[FloatArray, FloatArray]:
        """The last point written to each series (timestamps, values; NaN for a missing or
        empty one): 16 bytes a metric instead of the whole series, for "no data since"
        listings. Points are appended in arrival order, so this is the newest point
        received, which is what staleness means (a late backfill counts as received).
        Read by the flat reader's GETRANGE of the last point (one packed round trip per
        chunk, no reply objects: 100k metrics in well under a second). The store only ever
        appends whole points; a value written by something else with a partial point at its
        end gives a misread last point here (the analyzer counts such a series as corrupt)."""
        t = np.full(len(names), np.nan)
        v = np.full(len(names), np.nan)
        if not names:
            return t, v
        if self.cluster is not None:
            # a store of its own per call: a read's points are a view into its store's buffer,
            # and web requests call this side by side
            reader = self.cluster.twin()
            try:
                flat = reader.read(names, tail=1)
                has = flat.counts > 0
                t[has] = flat.timestamps
                v[has] = flat.values
            finally:
                reader.close()
            return t, v
        flat = FlatReader(self.client, batch=self.read_chunk_size,
                          initial_bytes=len(names) * POINT_SIZE).read(names, tail=1)
        has = flat.counts > 0
        t[has] = flat.timestamps
        v[has] = flat.values
        return t, v

    def read_one(self, name: str, *, since: float | None = None,
                 until: float | None = None) -> Series:
        return self.read([name], since=since, until=until)[0]
