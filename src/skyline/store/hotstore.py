"""The hot store: every metric's last FULL_DURATION of points in Redis.

Writes append packed points (see series.py) and add new names to the metric index; reads are
pipelined GETs decoded with numpy. Trimming lives in roomba.py.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import redis

from skyline.core.patterns import PatternSet
from skyline.core.types import FloatArray, Series
from skyline.store import keys
from skyline.store.series import POINT_SIZE, decode, encode, normalise

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


class HotStore:
    def __init__(self, client: redis.Redis, *, read_chunk_size: int = 1000,
                 write_batch_size: int = 10_000):
        self.client = client
        self.read_chunk_size = read_chunk_size
        self.write_batch_size = write_batch_size

    # writes -------------------------------------------------------------------------------
    def append(
        self, names: Sequence[str], timestamps: FloatArray, values: FloatArray
    ) -> WriteStats:
        """Append one point per entry (names may repeat). Pipelined in batches; a name whose
        series did not exist before this append is added to the metric index."""
        stats = WriteStats()
        n = len(names)
        if n == 0:
            return stats
        packed = encode(np.asarray(timestamps, dtype=np.float64),
                        np.asarray(values, dtype=np.float64))
        step = self.write_batch_size
        for start in range(0, n, step):
            stop = min(n, start + step)
            pipe = self.client.pipeline(transaction=False)
            batch_names = names[start:stop]
            for i, name in enumerate(batch_names, start):
                pipe.append(keys.series(name), packed[i * POINT_SIZE : (i + 1) * POINT_SIZE])
            lengths = pipe.execute()
            new = {name for name, length in zip(batch_names, lengths, strict=True)
                   if length == POINT_SIZE}
            if new:
                self.client.sadd(keys.METRIC_INDEX, *new)
                stats.new_metrics += len(new)
            stats.points += stop - start
        return stats

    def delete(self, names: Iterable[str]) -> int:
        names = list(names)
        deleted = 0
        for start in range(0, len(names), self.read_chunk_size):
            chunk = names[start : start + self.read_chunk_size]
            pipe = self.client.pipeline(transaction=False)
            for name in chunk:
                pipe.delete(keys.series(name))
            pipe.srem(keys.METRIC_INDEX, *chunk)
            deleted += sum(pipe.execute()[:-1])
        return deleted

    # index --------------------------------------------------------------------------------
    def names(self, pattern: str | None = None) -> list[str]:
        """Every metric name (sorted), or those matching one pattern."""
        all_names = (_decode_name(n) for n in self.client.sscan_iter(keys.METRIC_INDEX, count=5000))
        if pattern:
            matcher = PatternSet([pattern])
            return sorted(n for n in all_names if matcher.any(n))
        return sorted(all_names)

    def count(self) -> int:
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

    def read_one(self, name: str, *, since: float | None = None,
                 until: float | None = None) -> Series:
        return self.read([name], since=since, until=until)[0]
