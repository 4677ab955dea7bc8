"""Points parsed from one read of a socket or one Kafka message, on their way to the shared
write path."""

from __future__ import annotations

from collections import Counter

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
_EMPTY: FloatArray = np.empty(0, dtype=np.float64)


class Batch:
    """Parsed points plus the input that could not become points, by reason.

    Parsers append whole arrays (the fast paths) or single points (the per-record fallbacks);
    `units` counts what was read (lines, frames or datagrams) for the listener's self-metrics.
    """

    __slots__ = ("names", "_ts", "_vs", "_one_ts", "_one_vs", "rejected", "units")

    def __init__(self) -> None:
        self.names: list[str] = []
        self._ts: list[FloatArray] = []
        self._vs: list[FloatArray] = []
        self._one_ts: list[float] = []
        self._one_vs: list[float] = []
        self.rejected: Counter[str] = Counter()
        self.units = 0

    def __len__(self) -> int:
        return len(self.names)

    def extend(self, names: list[str], timestamps: FloatArray, values: FloatArray) -> None:
        self._settle()
        self.names += names
        self._ts.append(timestamps)
        self._vs.append(values)

    def add(self, name: str, timestamp: float, value: float) -> None:
        self.names.append(name)
        self._one_ts.append(timestamp)
        self._one_vs.append(value)

    def reject(self, reason: str, n: int = 1) -> None:
        self.rejected[reason] += n

    def _settle(self) -> None:
        # single points become one array, so the order of points across both kinds holds
        if self._one_ts:
            self._ts.append(np.array(self._one_ts, dtype=np.float64))
            self._vs.append(np.array(self._one_vs, dtype=np.float64))
            self._one_ts, self._one_vs = [], []

    def arrays(self) -> tuple[FloatArray, FloatArray]:
        self._settle()
        if not self._ts:
            return _EMPTY, _EMPTY
        if len(self._ts) == 1:
            return self._ts[0], self._vs[0]
        return np.concatenate(self._ts), np.concatenate(self._vs)
