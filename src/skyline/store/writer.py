"""The buffered write path into the hot store.

Points accepted by a producer (ingest, self-metrics) are held here, grouped per metric, until
Redis has them: one flush sends one APPEND per metric with all of its new points. A flush that
fails (Redis down) keeps every point for the next attempt; nothing accepted is dropped. When
Redis stays down long enough to fill the buffer, new points are refused (the caller counts and
reports them) rather than growing memory without bound.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

import numpy as np

from skyline.store.hotstore import HotStore
from skyline.store.redis_client import CONNECTION_ERRORS
from skyline.store.series import POINT_SIZE, encode

log = logging.getLogger(__name__)


class PointBuffer:
    def __init__(self, store: HotStore, max_points: int):
        self.store = store
        self.max_points = max_points
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._groups: dict[str, bytearray] = {}
        self._count = 0
        self._retry_index = False  # the last flush failed: it may have partly landed
        self.refused = 0
        #: points accepted since start, and how many of the first of them are surely in
        #: Redis: a producer that must not drop its source before its points are stored (the
        #: Kafka consumer commits offsets) notes `accepted` after adding and waits for
        #: `stored` to reach it
        self.accepted = 0
        self.stored = 0
        self.written = 0
        self.failed_flushes = 0
        self.write_errors = 0

    def __len__(self) -> int:
        return self._count

    def add(self, name: str, timestamp: float, value: float) -> bool:
        """Accept one point; False when the buffer is full (the point is refused)."""
        return self.add_many([name], [timestamp], [value]) == 1

    def add_many(self, names: Sequence[str], timestamps: Sequence[float] | np.ndarray,
                 values: Sequence[float] | np.ndarray) -> int:
        """Accept as many points as fit, in order; returns how many were accepted."""
        with self._lock:
            n = min(max(0, self.max_points - self._count), len(names))
            self.refused += len(names) - n
            if n == 0:
                return 0
            packed = encode(np.asarray(timestamps[:n], dtype=np.float64),
                            np.asarray(values[:n], dtype=np.float64))
            groups = self._groups
            o = 0
            for name in names[:n]:
                g = groups.get(name)
                if g is None:
                    groups[name] = bytearray(packed[o : o + POINT_SIZE])
                else:
                    g += packed[o : o + POINT_SIZE]
                o += POINT_SIZE
            self._count += n
            self.accepted += n
            return n

    def flush(self) -> int:
        """Write every buffered point; returns how many were written. Raises the connection
        error after putting the points back, so the caller can back off."""
        with self._flush_lock:
            with self._lock:
                groups, count = self._groups, self._count
                self._groups, self._count = {}, 0
                index_all = self._retry_index
                through = self.accepted
            if not groups:
                self.stored = through
                return 0
            names = list(groups)
            try:
                stats = self.store.append_payloads(
                    names, [bytes(groups[n]) for n in names], index_all=index_all)
            except CONNECTION_ERRORS:
                # Put them back in front of anything that arrived meanwhile. Part of this
                # flush may have landed: the retry writes it again (readers and the roomba
                # collapse the duplicate timestamps, same values) and indexes every name.
                with self._lock:
                    for name, pending in self._groups.items():
                        groups[name] = groups[name] + pending if name in groups else pending
                    self._groups = groups
                    self._count += count
                    self._retry_index = True
                self.failed_flushes += 1
                raise
            with self._lock:
                self._retry_index = False
                self.stored = through
            if stats.errors:
                self.write_errors += len(stats.errors)
                log.error("%d series refused their points (not strings?): %s",
                          len(stats.errors), "; ".join(stats.errors[:3]))
            self.written += stats.points
            return stats.points
