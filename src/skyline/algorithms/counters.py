"""Counters: which series are monotonically increasing counts, and their non-negative
derivative. Works on many series at once in flat form (see segments.py): no loop over series
or points.

Detection follows earthgecko's strictly_increasing_monotonicity:
- at least 90 points, no negative value;
- at least 10 increases (upstream's code only enforced this when nothing decreased and let
  1-9 increases through by a fall-through; the documented rule is applied throughout);
- fewer decreases than increases, and decreases at most 25 % of increases;
- at most 280 increasing runs (10 resets a day for 28 days);
- a series that decreases must have at least one decrease that looks like a reset: it lands at
  or below 1 % (range > 1000: 2 %, range > 10000: 3 %) of the series' range. Upstream accepted
  a mix of resets and other drops the same way.

The derivative is Graphite's nonNegativeDerivative as earthgecko applies it: each point becomes
its increase over the previous point, stamped with its own time; the first point and every
decrease (a reset) are dropped rather than turned into a negative spike.
"""

from __future__ import annotations

import numpy as np

from skyline.algorithms.base import BoolArray, IntArray
from skyline.algorithms.segments import (
    first_of_segment,
    pair_count,
    pair_mask,
    seg_count,
    seg_reduce,
)
from skyline.core.types import FloatArray

MIN_POINTS = 90
MIN_INCREASES = 10
MAX_DECREASE_PERCENT = 25.0
MAX_RUNS = 280


def strictly_increasing(values: FloatArray, counts: IntArray) -> BoolArray:
    """Per segment of the flat `values`: is it a monotonically increasing counter?"""
    if len(values) < 2:
        return np.zeros(len(counts), dtype=bool)
    dv = values[1:] - values[:-1]
    inc = pair_count(dv > 0, counts)
    falls = dv < 0
    dec = pair_count(falls, counts)
    lowest = seg_reduce(np.minimum, values, counts, np.inf)
    with np.errstate(invalid="ignore", divide="ignore"):
        few_decreases = (dec < inc) & (100.0 * dec / np.maximum(inc, 1) <= MAX_DECREASE_PERCENT)
    ok = ((counts >= MIN_POINTS) & (lowest >= 0) & (inc >= MIN_INCREASES) & few_decreases
          & (dec + 1 <= MAX_RUNS))
    need_reset = ok & (dec > 0)
    if need_reset.any():
        span = seg_reduce(np.maximum, values, counts, -np.inf) - lowest
        percent = np.where(span > 10000, 3.0, np.where(span > 1000, 2.0, 1.0))
        min_reset = np.repeat(span / 100.0 * percent, counts)
        landing = np.empty_like(values)
        landing[:-1] = values[1:]
        landing[-1] = np.inf
        resets = seg_count(pair_mask(falls, counts) & (landing <= min_reset), counts)
        ok &= (dec == 0) | (resets > 0)
    return ok


def non_negative_derivative(timestamps: FloatArray, values: FloatArray, counts: IntArray,
                            which: BoolArray) -> tuple[FloatArray, FloatArray, IntArray]:
    """Replace the segments flagged in `which` by their non-negative derivative; others pass
    through unchanged. Returns new flat (timestamps, values, counts)."""
    if not which.any() or len(values) == 0:
        return timestamps, values, counts
    flagged = np.repeat(which, counts)
    dv = np.empty_like(values)
    dv[0] = np.nan
    dv[1:] = values[1:] - values[:-1]
    keep = ~(flagged & (first_of_segment(counts, len(values)) | ~(dv >= 0)))
    out_v = np.where(flagged, dv, values)
    return timestamps[keep], out_v[keep], seg_count(keep, counts)


def is_counter(values: FloatArray) -> bool:
    """The detection rule for one series."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    return bool(strictly_increasing(v, np.array([len(v)], dtype=np.int64))[0])
