"""Shared, memoised per-batch statistics and row-wise helpers.

Working units: a row whose magnitude is extreme (beyond 2**±400) is scaled by a power of two
before any arithmetic. Powers of two scale floats exactly, so every comparison an algorithm
makes (histogram edges, medians, sigma tests) is unchanged, while squares and sums of 1e300
values no longer overflow. Statistics quoted to people are scaled back with `unscale`.

A constant row has mean equal to its value and spread exactly 0: summation residue (the mean
of 1440 copies of 0.1 is not 0.1 in floating point) must not invent a deviation.
"""

from __future__ import annotations

import numpy as np

from skyline.algorithms.base import BoolArray, IntArray
from skyline.algorithms.batch import Batch
from skyline.core.types import FloatArray

_BIG = 2.0**400
_SMALL = 2.0**-400


def _min_max(batch: Batch) -> tuple[FloatArray, FloatArray]:
    if batch.width == 0:
        nan = np.full(batch.size, np.nan)
        return nan, nan.copy()
    # fmin/fmax skip the NaN padding without a masked copy
    return np.fmin.reduce(batch.values, axis=1), np.fmax.reduce(batch.values, axis=1)


def exponent(batch: Batch) -> IntArray:
    """Power of two each row was divided by (0 for ordinary magnitudes)."""
    return batch.memo("exponent", lambda: _scaling(batch)[0])


def _scaling(batch: Batch) -> tuple[IntArray, FloatArray]:
    def compute() -> tuple[IntArray, FloatArray]:
        lo, hi = _min_max(batch)
        big = np.fmax(np.abs(lo), np.abs(hi))
        odd = (big > _BIG) | ((big > 0) & (big < _SMALL))
        exp = np.zeros(batch.size, dtype=np.int64)
        if not odd.any():
            return exp, batch.values
        exp[odd] = np.frexp(big[odd])[1]
        work = batch.values.copy()
        work[odd] = np.ldexp(work[odd], -exp[odd, None])
        return exp, work
    return batch.memo("scaling", compute)


def work(batch: Batch) -> FloatArray:
    """Values in working units, NaN padding kept."""
    return _scaling(batch)[1]


def unscale(batch: Batch, x: FloatArray) -> FloatArray:
    """Working units back to the metric's units (exact; may overflow to inf, as the metric's
    own statistic would)."""
    exp = exponent(batch)
    if not exp.any():
        return x
    with np.errstate(over="ignore"):
        return np.ldexp(x, exp)


def work0(batch: Batch) -> FloatArray:
    """Working values with 0 in the padding, for sums and dot products."""
    def compute() -> FloatArray:
        w = work(batch)
        return w if batch.full else np.where(batch.valid, w, 0.0)
    return batch.memo("work0", compute)


def vmin(batch: Batch) -> FloatArray:
    return batch.memo("vmin", lambda: _scaled_extreme(batch, 0))


def vmax(batch: Batch) -> FloatArray:
    return batch.memo("vmax", lambda: _scaled_extreme(batch, 1))


def _scaled_extreme(batch: Batch, which: int) -> FloatArray:
    raw = batch.memo("raw_min_max", lambda: _min_max(batch))[which]
    exp = exponent(batch)
    return np.ldexp(raw, -exp) if exp.any() else raw


def constant(batch: Batch) -> BoolArray:
    return batch.memo("constant", lambda: (vmin(batch) == vmax(batch)) & (batch.counts > 0))


def counts_f(batch: Batch) -> FloatArray:
    return batch.memo("counts_f", lambda: batch.counts.astype(np.float64))


def mean(batch: Batch) -> FloatArray:
    def compute() -> FloatArray:
        n = counts_f(batch)
        with np.errstate(invalid="ignore", divide="ignore"):
            m = work0(batch).sum(axis=1) / n
        return np.where(constant(batch), vmin(batch), m)
    return batch.memo("mean", compute)


def centered0(batch: Batch) -> FloatArray:
    """x - mean with 0 in the padding."""
    def compute() -> FloatArray:
        c = work(batch) - mean(batch)[:, None]
        return c if batch.full else np.where(batch.valid, c, 0.0)
    return batch.memo("centered0", compute)


def m2(batch: Batch) -> FloatArray:
    """Sum of squared deviations from the mean (two-pass, as pandas computes it)."""
    def compute() -> FloatArray:
        c = centered0(batch)
        s = np.einsum("ij,ij->i", c, c)
        return np.where(constant(batch), 0.0, s)
    return batch.memo("m2", compute)


def std1(batch: Batch) -> FloatArray:
    """Sample standard deviation (ddof=1, pandas' default and earthgecko's choice)."""
    def compute() -> FloatArray:
        n = counts_f(batch)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(n > 1, np.sqrt(m2(batch) / (n - 1)), np.nan)
    return batch.memo("std1", compute)


def tail(batch: Batch) -> FloatArray:
    """Upstream's tail_avg: the mean of the last three points, or the last point when there are
    fewer than three (or the three are equal). Summed in upstream's order so ties round the
    same way."""
    def compute() -> FloatArray:
        w = work(batch)
        if batch.width == 0:
            return np.full(batch.size, np.nan)
        last = w[:, -1]
        if batch.width < 3:
            return last.copy()
        t3 = (w[:, -1] + w[:, -2] + w[:, -3]) / 3
        # three equal values average to themselves, not to a rounding of 3a / 3
        same = (w[:, -1] == w[:, -2]) & (w[:, -2] == w[:, -3])
        return np.where((batch.counts >= 3) & ~same, t3, last)
    return batch.memo("tail", compute)


def last(batch: Batch) -> FloatArray:
    return batch.memo("last", lambda: work(batch)[:, -1] if batch.width
                      else np.full(batch.size, np.nan))


def row_searchsorted(a: FloatArray, v: FloatArray, lo: IntArray, hi: IntArray,
                     side: str = "left") -> IntArray:
    """Per row, numpy.searchsorted of v[i] within the sorted slice a[i, lo[i]:hi[i]], returned
    as a column index. A bisection over all rows at once: log2(width) vectorised steps."""
    lo = lo.astype(np.int64)
    hi = hi.astype(np.int64)
    if a.shape[1] == 0:
        return lo
    rows = np.arange(a.shape[0])
    last_col = a.shape[1] - 1
    while True:
        active = lo < hi
        if not active.any():
            return lo
        mid = (lo + hi) // 2
        am = a[rows, np.minimum(mid, last_col)]
        right = (am <= v) if side == "right" else (am < v)
        right &= active
        lo = np.where(right, mid + 1, lo)
        hi = np.where(active & ~right, mid, hi)


def row_median(x: FloatArray, counts: IntArray) -> FloatArray:
    """Median of each right-aligned, NaN-padded row, computed as numpy.median does (the mean of
    the two middle order statistics for an even count)."""
    m, w = x.shape
    out = np.full(m, np.nan)
    if w == 0 or m == 0:
        return out
    has = counts > 0
    if bool(np.all(counts == w)):
        k_lo, k_hi = (w - 1) // 2, w // 2
        part = np.partition(x, [k_lo, k_hi] if k_lo != k_hi else k_lo, axis=1)
        return (part[:, k_lo] + part[:, k_hi]) / 2
    s = np.sort(x, axis=1)  # NaN padding sorts last
    n = np.maximum(counts, 1)
    rows = np.arange(m)
    lo = s[rows, (n - 1) // 2]
    hi = s[rows, n // 2]
    out[has] = ((lo + hi) / 2)[has]
    return out

