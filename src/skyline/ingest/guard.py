"""Cardinality guards: MAX_METRICS and MAX_NEW_METRICS_PER_MINUTE.

Names already in the hot store always flow. A name not seen before spends one unit of the
current minute's budget and one of the total; when either is spent, points of new names are
refused (and counted) until the next minute, or until the roomba has removed dead metrics.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable


class KnownMetrics:
    def __init__(self, max_metrics: int, max_new_per_minute: int):
        self.max_metrics = max_metrics
        self.max_new_per_minute = max_new_per_minute
        self._names: set[str] = set()
        self._recent: set[str] = set()  # admitted since the last reload: maybe not stored yet
        self._lock = threading.Lock()
        self._minute = 0
        self._new_this_minute = 0
        self.loaded = False
        # bumped by every reload: what callers remember as admitted may have been removed
        self.generation = 0

    def __len__(self) -> int:
        return len(self._names)

    def replace(self, names: Iterable[str]) -> None:
        """Reload from the metric index (the store is the truth; the roomba deletes)."""
        fresh = set(names)
        with self._lock:
            self._names = fresh | self._recent
            self._recent = set()
            self.loaded = True
            self.generation += 1

    def admit(self, name: str, now: float | None = None) -> str | None:
        """None when points of `name` may be stored, else the reason they are refused."""
        if name in self._names:
            return None
        with self._lock:
            if name in self._names:
                return None
            minute = int((time.time() if now is None else now) // 60)
            if minute != self._minute:
                self._minute, self._new_this_minute = minute, 0
            if self.max_metrics and len(self._names) >= self.max_metrics:
                return "max_metrics"
            if self.max_new_per_minute and self._new_this_minute >= self.max_new_per_minute:
                return "max_new_metrics_per_minute"
            self._new_this_minute += 1
            self._names.add(name)
            self._recent.add(name)
            return None
