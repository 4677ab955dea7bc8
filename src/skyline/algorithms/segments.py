"""Many series as one flat array: segment i is the counts[i] points after the first
sum(counts[:i]). Per-segment reductions without a loop over segments."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from skyline.algorithms.base import BoolArray, IntArray
from skyline.core.types import FloatArray


def starts(counts: IntArray) -> IntArray:
    return np.cumsum(counts) - counts


def seg_reduce(ufunc: np.ufunc, x: npt.NDArray, counts: IntArray, empty: float,
               dtype: npt.DTypeLike | None = None) -> npt.NDArray:
    """ufunc.reduce over each segment; `empty` for segments without points."""
    out = np.full(len(counts), empty, dtype=dtype or x.dtype)
    has = counts > 0
    if has.any():
        out[has] = ufunc.reduceat(x, starts(counts)[has], dtype=dtype)
    return out


def seg_count(mask: BoolArray, counts: IntArray) -> IntArray:
    return seg_reduce(np.add, mask, counts, 0, dtype=np.int64)


def pair_count(mask: BoolArray, counts: IntArray) -> IntArray:
    """Per segment, how many of its own pairs (point j, point j + 1) satisfy a condition given
    on all len(points) - 1 pairs. Pairs that straddle two segments are subtracted afterwards
    rather than cleared in a copy."""
    out = np.zeros(len(counts), dtype=np.int64)
    if len(mask) == 0:
        return out
    first = starts(counts)
    has = (counts > 1) & (first < len(mask))
    out[has] = np.add.reduceat(mask.view(np.uint8), first[has], dtype=np.int64)
    # each segment's sum ran up to the next segment's start, over the straddling pair
    straddle = first + counts - 1
    crossing = has & (straddle < len(mask))
    out[crossing] -= mask[straddle[crossing]]
    return out


def pair_min(x: FloatArray, counts: IntArray) -> FloatArray:
    """Per segment, the minimum of a quantity given on all pairs (inf when it has none).
    Overwrites the straddling entries of x."""
    out = np.full(len(counts), np.inf)
    if len(x) == 0:
        return out
    first = starts(counts)
    straddle = first + counts - 1
    x[straddle[(counts > 0) & (straddle < len(x))]] = np.inf
    has = (counts > 1) & (first < len(x))
    out[has] = np.minimum.reduceat(x, first[has])
    return out


def pair_mask(mask: BoolArray, counts: IntArray) -> BoolArray:
    """A condition on pairs (point j, point j + 1), len(points) - 1 of them, as a point-length
    mask on the first point of each pair, with the pairs that straddle two segments cleared:
    seg_count of it counts each segment's own pairs."""
    out = np.zeros(len(mask) + 1, dtype=bool)
    out[:-1] = mask
    ends = np.cumsum(counts)
    out[ends[counts > 0] - 1] = False
    return out


def segment_ids(counts: IntArray) -> IntArray:
    return np.repeat(np.arange(len(counts), dtype=np.int64), counts)


def first_of_segment(counts: IntArray, total: int) -> BoolArray:
    first = np.zeros(total, dtype=bool)
    first[starts(counts)[counts > 0]] = True
    return first
