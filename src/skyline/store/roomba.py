"""Trimming the hot store (upstream's roomba).

Each pass walks the metric index from where the last one stopped, at most `max_keys` series.
A series (and its anomaly-score series beside it) is rewritten sorted, de-duplicated (last
write wins) and cut to the retention window; one with no point left is deleted with its index
entry and the metric's other keys (analysis state, scores). Points appended while a series is
being trimmed are kept: the rewrite runs as a script that only replaces the bytes it read and
keeps anything appended since.

With a long history (store/history.py), points leave the raw series only as whole
MIRAGE_ANALYSIS_RESOLUTION buckets and only when `history_batch` seconds of them lie beyond
the retention; the same script writes them into the history, so no bucket is lost or counted
twice whatever stops when.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import redis

from skyline.store import history as hist
from skyline.store import keys
from skyline.store.cluster import ClusterStore
from skyline.store.series import decode, encode, normalise

log = logging.getLogger(__name__)

# Replace the first ARGV[1] bytes of the series with ARGV[2], keeping any bytes appended since
# they were read. Returns -1 when the series shrank meanwhile (someone else rewrote it: leave it
# to the next pass), 0 when the result is empty and the key was deleted, 1 when rewritten.
_REWRITE = """
local cur = redis.call('STRLEN', KEYS[1])
local expected = tonumber(ARGV[1])
if cur < expected then return -1 end
local v = ARGV[2]
if cur > expected then v = v .. redis.call('GETRANGE', KEYS[1], expected, -1) end
if string.len(v) == 0 then redis.call('DEL', KEYS[1]) return 0 end
redis.call('SET', KEYS[1], v)
return 1
"""

# The same, also replacing the history (KEYS[2]) with ARGV[3] when it still is what was read
# (ARGV[4]: its SHA1, "" when there was none); -1 and nothing written otherwise.
_MOVE = """
local cur = redis.call('STRLEN', KEYS[1])
local expected = tonumber(ARGV[1])
if cur < expected then return -1 end
local h = redis.call('GET', KEYS[2])
local hs = ''
if h then hs = redis.sha1hex(h) end
if hs ~= ARGV[4] then return -1 end
redis.call('SET', KEYS[2], ARGV[3])
local v = ARGV[2]
if cur > expected then v = v .. redis.call('GETRANGE', KEYS[1], expected, -1) end
if string.len(v) == 0 then redis.call('DEL', KEYS[1]) return 0 end
redis.call('SET', KEYS[1], v)
return 1
"""


@dataclass(frozen=True)
class HistoryPolicy:
    """How the roomba builds the long history: bucket width (MIRAGE_ANALYSIS_RESOLUTION),
    span kept (seconds) and the age beyond the retention at which points move (seconds)."""

    resolution: int
    span: float
    batch: float


@dataclass
class TrimStats:
    examined: int = 0
    rewritten: int = 0
    deleted: int = 0
    points_removed: int = 0
    corrupt_repaired: int = 0
    wrong_type_removed: int = 0
    conflicts: int = 0
    history_written: int = 0  # histories that received buckets
    buckets_moved: int = 0
    history_corrupt: int = 0  # unreadable histories replaced
    wrapped: bool = False  # this pass reached the end of the index

    def add(self, other: TrimStats) -> None:
        for f in ("examined", "rewritten", "deleted", "points_removed", "corrupt_repaired",
                  "wrong_type_removed", "conflicts", "history_written", "buckets_moved",
                  "history_corrupt"):
            setattr(self, f, getattr(self, f) + getattr(other, f))
        self.wrapped = self.wrapped or other.wrapped


def _wrong_type(reply: object) -> bool:
    """A WRONGTYPE reply: the key holds another type (nothing Skyline wrote), which the
    roomba removes. Any other error reply (a cluster down or failing over) is raised by the
    caller instead: a series is never deleted for an error that is not about it."""
    return isinstance(reply, redis.ResponseError) and str(reply).startswith("WRONGTYPE")


class Roomba:
    def __init__(self, client: redis.Redis, *, retention: float, batch_size: int = 500,
                 history: HistoryPolicy | None = None, cluster: ClusterStore | None = None):
        self.client = client
        self.cluster = cluster  # on a Redis Cluster: the index is split over the masters
        self.retention = retention
        self.batch_size = batch_size
        self.history = history
        self._rewrite = client.register_script(_REWRITE)
        self._move = client.register_script(_MOVE)

    def trim_names(self, names: list[str], now: float) -> TrimStats:
        stats = self._trim(names, now, keys.series)
        # the score series beside them keep the same window (their stats are not counted:
        # a metric's scores are part of it)
        self._trim(names, now, keys.scores)
        return stats

    def _trim(self, names: list[str], now: float, key_of: Callable[[str], str]) -> TrimStats:
        stats = TrimStats(examined=len(names))
        if not names:
            return stats
        series = key_of is keys.series
        oldest = now - self.retention
        pipe = self.client.pipeline(transaction=False)
        for name in names:
            pipe.get(key_of(name))
        raws = pipe.execute(raise_on_error=False)

        writes: list[tuple[str, int, bytes]] = []
        moving: list[tuple[str, int, np.ndarray, np.ndarray, hist.Buckets]] = []
        orphans: list[str] = []
        for name, raw in zip(names, raws, strict=True):
            if _wrong_type(raw):
                # not a string: nothing Skyline wrote; drop it so readers never trip on it
                stats.wrong_type_removed += 1
                self.client.delete(key_of(name))
                orphans.append(name)
                continue
            if isinstance(raw, Exception):
                raise raw
            if raw is None:
                orphans.append(name)
                continue
            t, v, extra = decode(raw)
            if extra:
                stats.corrupt_repaired += 1
            if series and self.history is not None:
                t2, v2, gone = self._cut_for_history(t, v, now)
                if gone is not None:
                    stats.points_removed += t.shape[0] - t2.shape[0]
                    moving.append((name, len(raw), t2, v2, gone))
                    continue
            else:
                t2, v2 = normalise(t, v, oldest)
            removed = t.shape[0] - t2.shape[0]
            if removed == 0 and not extra and np.array_equal(t, t2):
                continue  # already sorted, unique and inside the window
            stats.points_removed += removed
            writes.append((name, len(raw), encode(t2, v2)))

        done = [name for name, _, _ in writes] + [m[0] for m in moving]
        pipes, pipe_of = self._script_pipes(done, key_of)
        for name, expected, data in writes:
            self._rewrite(keys=[key_of(name)], args=[expected, data], client=pipe_of[name])
        if moving:
            self._queue_moves(moving, now, pipe_of, stats)
        results = self._execute(pipes, [pipe_of[name] for name in done]) if done else []
        for k, (name, result) in enumerate(zip(done, results, strict=True)):
            if result == -1:
                stats.conflicts += 1
                continue
            if k >= len(writes):
                stats.history_written += 1
            if result == 0:
                stats.deleted += 1
                orphans.append(name)
            else:
                stats.rewritten += 1
        if orphans and series:
            self._unindex(orphans)
        return stats

    def _script_pipes(self, names: list[str], key_of: Callable[[str], str]
                      ) -> tuple[list[redis.client.Pipeline], dict[str, redis.client.Pipeline]]:
        """Pipelines for the scripts of `names`: one on a single Redis; on a cluster one per
        master (its cluster client refuses pipelined scripts; each script's keys share one
        metric's hash tag, so one master runs it)."""
        if self.cluster is None or not names:
            pipe = self.client.pipeline(transaction=False)
            return [pipe], dict.fromkeys(names, pipe)
        topo = self.cluster.refresh() if self.cluster.topology is None else \
            self.cluster.topology
        owner = topo.masters_of(names, key_of).tolist()
        by_master: dict[int, redis.client.Pipeline] = {}
        for m in dict.fromkeys(owner):
            by_master[m] = self.cluster.client(topo.masters[m]).pipeline(transaction=False)
        return list(by_master.values()), {n: by_master[m] for n, m in zip(names, owner,
                                                                         strict=True)}

    @staticmethod
    def _execute(pipes: list[redis.client.Pipeline], order: list[redis.client.Pipeline]
                 ) -> list[object]:
        """Every pipeline's replies, back in the order the commands were queued over them."""
        replies = {id(p): iter(p.execute()) for p in pipes}
        return [next(replies[id(p)]) for p in order]

    def _cut_for_history(self, t: np.ndarray, v: np.ndarray, now: float
                         ) -> tuple[np.ndarray, np.ndarray, hist.Buckets | None]:
        """(points kept, their values, buckets that leave for the history or None). Points
        leave only as whole buckets beyond the retention, once `batch` seconds of them are
        there; until then the series is only sorted and de-duplicated."""
        assert self.history is not None
        r = self.history.resolution
        t, v = normalise(t, v)
        if not t.shape[0]:
            return t, v, None
        cut = np.floor((now - self.retention) / r) * r
        if not t[0] < cut - self.history.batch:
            return t, v, None
        k = int(np.searchsorted(t, cut, side="left"))  # t[:k] < cut
        return t[k:], v[k:], hist.bucketise(t[:k], v[:k], r)

    def _queue_moves(self, moving: list[tuple[str, int, np.ndarray, np.ndarray, hist.Buckets]],
                     now: float, pipe_of: dict[str, redis.client.Pipeline],
                     stats: TrimStats) -> None:
        """Read the histories of the series that move buckets, merge and queue the scripts
        that write both."""
        assert self.history is not None
        r = self.history.resolution
        first = int(np.floor((now - self.history.span) / r))
        reader = self.client.pipeline(transaction=False)
        for name, *_ in moving:
            reader.get(keys.history(name))
        olds = reader.execute(raise_on_error=False)
        for (name, expected, t2, v2, gone), raw in zip(moving, olds, strict=True):
            old = None
            if _wrong_type(raw):  # not a string: nothing Skyline wrote
                stats.history_corrupt += 1
                self.client.delete(keys.history(name))
                raw = None
            elif isinstance(raw, Exception):
                raise raw
            if raw is not None:
                try:
                    old = hist.decode(raw)
                except hist.CorruptHistory as e:
                    stats.history_corrupt += 1
                    log.warning("history of %s is unreadable (%s); it starts again", name, e)
            merged = hist.merge(old, gone, first)
            stats.buckets_moved += len(gone)
            sha = hashlib.sha1(raw).hexdigest() if raw is not None else ""
            self._move(keys=[keys.series(name), keys.history(name)],
                       args=[expected, encode(t2, v2), hist.encode(merged), sha],
                       client=pipe_of[name])

    def _unindex(self, names: list[str]) -> None:
        """Remove names whose series is gone, with the rest of their keys (analysis state,
        scores); re-add any that a writer re-created meanwhile."""
        if self.cluster is not None:
            self.cluster.remove(names)
        else:
            self.client.srem(keys.METRIC_INDEX, *names)
        pipe = self.client.pipeline(transaction=False)
        for name in names:
            pipe.exists(keys.series(name))
        exists = pipe.execute()
        back = [n for n, e in zip(names, exists, strict=True) if e]
        if back:
            if self.cluster is not None:
                self.cluster.index(back)
            else:
                self.client.sadd(keys.METRIC_INDEX, *back)
        gone = [n for n, e in zip(names, exists, strict=True) if not e]
        if gone:
            pipe = self.client.pipeline(transaction=False)
            for name in gone:
                for key in keys.metric_keys(name)[1:]:  # one key a DEL: a cluster pipeline
                    pipe.delete(key)
            pipe.hdel(keys.OPEN_INCIDENTS, *gone)  # an incident of a metric that is gone
            pipe.execute()

    def run_pass(self, now: float, max_keys: int) -> TrimStats:
        """Trim up to `max_keys` series, continuing from the cursor the last pass left."""
        total = TrimStats()
        raw_cursor = self.client.get(keys.roomba_cursor())
        if self.cluster is not None:
            try:
                return self._run_pass_sharded(now, max_keys, raw_cursor)
            except (redis.RedisError, redis.exceptions.RedisClusterException):
                # a failover or a resharding: the next pass sends each master its scripts
                # by the new slot map (the cursor was not moved: the batch is done again)
                self.cluster.topology = None
                raise
        cursor = int(raw_cursor) if raw_cursor else 0
        while total.examined < max_keys:
            cursor, members = self.client.sscan(keys.METRIC_INDEX, cursor, count=self.batch_size)
            names = [m.decode("utf-8", "replace") if isinstance(m, bytes) else m for m in members]
            for start in range(0, len(names), self.batch_size):
                total.add(self.trim_names(names[start : start + self.batch_size], now))
            if cursor == 0:
                total.wrapped = True
                break
        self.client.set(keys.roomba_cursor(), cursor)
        return total

    def _run_pass_sharded(self, now: float, max_keys: int, raw_cursor: bytes | str | None
                          ) -> TrimStats:
        """run_pass on a cluster: the index shards in turn, the cursor "<shard>:<SSCAN
        cursor>" (a shard's set lives on one master; SSCAN goes to it)."""
        total = TrimStats()
        shard, cursor = 0, 0
        if raw_cursor:
            try:
                text = raw_cursor.decode() if isinstance(raw_cursor, bytes) else raw_cursor
                a, _, b = text.partition(":")
                shard, cursor = int(a) % keys.INDEX_SHARDS, int(b or 0)
            except (UnicodeDecodeError, ValueError):
                shard, cursor = 0, 0
        while total.examined < max_keys:
            key = keys.metric_index_shard(shard * (16384 // keys.INDEX_SHARDS))
            cursor, members = self.client.sscan(key, cursor, count=self.batch_size)
            names = [m.decode("utf-8", "replace") if isinstance(m, bytes) else m for m in members]
            for lo in range(0, len(names), self.batch_size):
                total.add(self.trim_names(names[lo:lo + self.batch_size], now))
            if cursor == 0:
                shard = (shard + 1) % keys.INDEX_SHARDS
                if shard == 0:  # the end of the index, as SSCAN's cursor 0 on one node
                    total.wrapped = True
                    break
        self.client.set(keys.roomba_cursor(), f"{shard}:{cursor}")
        return total
