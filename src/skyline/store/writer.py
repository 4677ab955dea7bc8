"""The buffered write path into the hot store.

Points accepted by a producer (ingest, self-metrics) are held here until Redis has them. A
flush that fails (Redis down) keeps every point for the next attempt; nothing accepted is
dropped. When Redis stays down long enough to fill the buffer, new points are refused (the
caller counts and reports them) rather than growing memory without bound.
"""

from __future__ import annotations

import threading
from array import array

import numpy as np

from skyline.store.hotstore import HotStore
from skyline.store.redis_client import CONNECTION_ERRORS


class PointBuffer:
    def __init__(self, store: HotStore, max_points: int):
        self.store = store
        self.max_points = max_points
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._names: list[str] = []
        self._ts = array("d")
        self._vs = array("d")
        self.refused = 0
        self.written = 0
        self.failed_flushes = 0

    def __len__(self) -> int:
        return len(self._names)

    def add(self, name: str, timestamp: float, value: float) -> bool:
        """Accept one point; False when the buffer is full (the point is refused)."""
        with self._lock:
            if len(self._names) >= self.max_points:
                self.refused += 1
                return False
            self._names.append(name)
            self._ts.append(timestamp)
            self._vs.append(value)
            return True

    def add_many(self, names: list[str], timestamps: list[float], values: list[float]) -> int:
        """Accept as many points as fit; returns how many were accepted."""
        with self._lock:
            room = max(0, self.max_points - len(self._names))
            n = min(room, len(names))
            self.refused += len(names) - n
            self._names.extend(names[:n])
            self._ts.extend(timestamps[:n])
            self._vs.extend(values[:n])
            return n

    def flush(self) -> int:
        """Write every buffered point; returns how many were written. Raises the connection
        error after putting the points back, so the caller can back off."""
        with self._flush_lock:
            with self._lock:
                names, ts, vs = self._names, self._ts, self._vs
                self._names, self._ts, self._vs = [], array("d"), array("d")
            if not names:
                return 0
            try:
                # copies: a live view would pin the arrays, and they may need to grow again
                self.store.append(names, np.array(ts, dtype=np.float64),
                                  np.array(vs, dtype=np.float64))
            except CONNECTION_ERRORS:
                # put them back in front of anything that arrived meanwhile; a partial write
                # is retried whole, and the duplicate timestamps it leaves are collapsed by
                # readers and the roomba (last write wins, same values)
                with self._lock:
                    self._names = names + self._names
                    ts.extend(self._ts)
                    vs.extend(self._vs)
                    self._ts, self._vs = ts, vs
                self.failed_flushes += 1
                raise
            self.written += len(names)
            return len(names)
