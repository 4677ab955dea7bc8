"""Batch: many metrics' windows as two 2-D arrays, the unit every algorithm works on.

Canonical form (every algorithm relies on it): row i holds counts[i] points, right-aligned in
columns [W - counts[i], W), with finite values and strictly increasing timestamps; the columns
to the left are padding, NaN in both arrays. Right alignment puts every row's latest points in
the same columns, so "the tail" or "the last 20 points" is a plain column slice for the whole
batch, and rows of one length bucket carry no padding at all.

`Batch.from_arrays` turns arbitrary 2-D input (NaN or inf anywhere, unsorted or duplicate
timestamps) into that form without a Python loop per point; `prepare.prepare` builds
length-bucketed batches from a list of raw series.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar, cast

import numpy as np
import numpy.typing as npt

from skyline.algorithms.base import BoolArray, IntArray
from skyline.core.errors import InvalidInput
from skyline.core.types import FloatArray

DEFAULT_FULL_DURATION = 86400.0
T = TypeVar("T")


class Batch:
    """A canonical batch plus a per-instance memo of shared statistics (means, spreads, the
    scaled working copy...), so nine algorithms compute each of them once per batch."""

    def __init__(self, timestamps: FloatArray, values: FloatArray, counts: IntArray, *,
                 rows: IntArray | None = None,
                 full_duration: float = DEFAULT_FULL_DURATION) -> None:
        if timestamps.shape != values.shape or timestamps.ndim != 2:
            raise InvalidInput(f"timestamps {timestamps.shape} and values {values.shape} must "
                               "be 2-D arrays of one shape")
        m = timestamps.shape[0]
        if counts.shape != (m,):
            raise InvalidInput(f"counts must have one entry per row ({m})")
        self.timestamps = timestamps
        self.values = values
        self.counts = counts
        self.rows = np.arange(m, dtype=np.int64) if rows is None else rows
        self.full_duration = float(full_duration)
        self._memo: dict[str, Any] = {}

    # -- construction ------------------------------------------------------------------------

    @classmethod
    def from_arrays(cls, timestamps: npt.ArrayLike, values: npt.ArrayLike, *,
                    rows: IntArray | None = None,
                    full_duration: float = DEFAULT_FULL_DURATION) -> Batch:
        """Canonicalise 2-D input. timestamps may be 1-D (one grid shared by every row).
        Non-finite points are dropped, rows sorted by time, duplicate timestamps resolved to
        the last point written (as the store does), and rows right-aligned."""
        v = np.array(values, dtype=np.float64, ndmin=2)
        t = np.asarray(timestamps, dtype=np.float64)
        if t.ndim == 1:
            t = np.broadcast_to(t, v.shape)
        t = np.array(t, dtype=np.float64, ndmin=2)
        if t.shape != v.shape:
            raise InvalidInput(f"timestamps {t.shape} and values {v.shape} differ in shape")
        valid = np.isfinite(t) & np.isfinite(v)
        key = np.where(valid, t, -np.inf)
        if t.shape[1] > 1 and not bool(np.all(key[:, 1:] >= key[:, :-1])):
            order = np.argsort(key, axis=1, kind="stable")
            t = np.take_along_axis(t, order, axis=1)
            v = np.take_along_axis(v, order, axis=1)
            valid = np.take_along_axis(valid, order, axis=1)
        if t.shape[1] > 1:
            # after a stable sort the later of two equal timestamps was written later
            dup = valid[:, :-1] & valid[:, 1:] & (t[:, :-1] == t[:, 1:])
            valid[:, :-1] &= ~dup
        if t.shape[1] > 1 and not bool(np.all(valid[:, 1:] >= valid[:, :-1])):
            order = np.argsort(valid, axis=1, kind="stable")
            t = np.take_along_axis(t, order, axis=1)
            v = np.take_along_axis(v, order, axis=1)
            valid = np.take_along_axis(valid, order, axis=1)
        t = np.where(valid, t, np.nan)
        v = np.where(valid, v, np.nan)
        counts = valid.sum(axis=1).astype(np.int64)
        return cls(np.ascontiguousarray(t), np.ascontiguousarray(v), counts, rows=rows,
                   full_duration=full_duration)

    @classmethod
    def from_series(cls, series: Sequence[tuple[npt.ArrayLike, npt.ArrayLike]], *,
                    full_duration: float = DEFAULT_FULL_DURATION) -> Batch:
        """One batch from a few series of any lengths (crucible, tests). The analyzer's hot
        path uses prepare(), which buckets by length instead of padding to the longest."""
        pairs = [(np.asarray(t, dtype=np.float64).ravel(), np.asarray(v, dtype=np.float64).ravel())
                 for t, v in series]
        for t, v in pairs:
            if t.shape != v.shape:
                raise InvalidInput("each series needs as many timestamps as values")
        width = max((len(t) for t, _ in pairs), default=0)
        tt = np.full((len(pairs), width), np.nan)
        vv = np.full((len(pairs), width), np.nan)
        for i, (t, v) in enumerate(pairs):
            if len(t):
                tt[i, width - len(t):] = t
                vv[i, width - len(t):] = v
        return cls.from_arrays(tt, vv, full_duration=full_duration)

    # -- shape -------------------------------------------------------------------------------

    @property
    def size(self) -> int:
        return int(self.values.shape[0])

    @property
    def width(self) -> int:
        return int(self.values.shape[1])

    def __len__(self) -> int:
        return self.size

    @property
    def start(self) -> IntArray:
        """First valid column of each row."""
        return self.memo("start", lambda: self.width - self.counts)

    @property
    def full(self) -> bool:
        """True when no row has padding: masks can be skipped."""
        return self.memo("full", lambda: bool(self.size == 0 or self.counts.min() == self.width))

    @property
    def valid(self) -> BoolArray:
        return self.memo("valid", lambda: np.arange(self.width)[None, :] >= self.start[:, None])

    def series(self, i: int) -> tuple[FloatArray, FloatArray]:
        """Row i's points without padding."""
        s = self.width - int(self.counts[i])
        return self.timestamps[i, s:], self.values[i, s:]

    def take(self, rows: IntArray) -> Batch:
        """A batch of a subset of rows; padding shrinks when the subset's longest row is
        shorter, and the memo starts empty."""
        counts = self.counts[rows]
        keep = int(counts.max()) if len(rows) else 0
        lo = self.width - keep
        return Batch(np.ascontiguousarray(self.timestamps[rows, lo:]),
                     np.ascontiguousarray(self.values[rows, lo:]), counts,
                     rows=self.rows[rows], full_duration=self.full_duration)

    def slice(self, lo: int, hi: int) -> Batch:
        """Rows lo:hi as views (no copy); padding columns no row of the slice uses are cut."""
        counts = self.counts[lo:hi]
        keep = int(counts.max()) if hi > lo else 0
        first = self.width - keep
        return Batch(self.timestamps[lo:hi, first:], self.values[lo:hi, first:], counts,
                     rows=self.rows[lo:hi], full_duration=self.full_duration)

    # -- memo --------------------------------------------------------------------------------

    def memo(self, key: str, compute: Callable[[], T]) -> T:
        try:
            return cast(T, self._memo[key])
        except KeyError:
            value = self._memo[key] = compute()
            return value

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_memo"] = {}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def __repr__(self) -> str:
        return f"Batch(rows={self.size}, width={self.width})"
