"""From a list of raw (timestamps, values) series to length-bucketed batches.

Everything happens on the concatenation of a group of series ("flat" form: series i is the
counts[i] points after the first sum(counts[:i]); see segments.py), so the cost is a handful
of array passes per group and no Python loop per point:

1. drop non-finite points; sort by time and keep the last of duplicate timestamps, only for
   groups that need it (the store already sorts and de-duplicates; checking is one pass);
2. keep the window: points newer than last timestamp - full_duration;
3. counters (auto-detected, or flagged by the caller) become their non-negative derivative;
4. series denser than the analysis resolution are averaged into resolution-sized steps (step
   start as timestamp); sparser ones keep their own points (a series whose points are never
   closer than the resolution costs nothing here);
5. the latest max_points are kept;
6. the analysis exceptions are decided per series (see status codes in params.Status);
7. analysable series are bucketed by length, so that no row of a batch is padded by more than
   bucket_padding of its width: one high-resolution series cannot widen every other row.
   Full rows lying back to back become a reshaped view, not a copy.

Series are processed in groups of about GROUP_POINTS points so the temporaries stay near the
CPU cache (2**20 measured best against 2**18-2**21 on 100k x 1440).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from skyline.algorithms.base import BoolArray, IntArray
from skyline.algorithms.batch import Batch
from skyline.algorithms.counters import non_negative_derivative, strictly_increasing
from skyline.algorithms.params import AnalysisParams, Status
from skyline.algorithms.segments import pair_mask, pair_min, seg_count, segment_ids
from skyline.core.errors import InvalidInput
from skyline.core.types import FloatArray

GROUP_POINTS = 1 << 20
SeriesInput = tuple[npt.ArrayLike, npt.ArrayLike]
Now = float | FloatArray | None


def _now(now: Now, lo: int, hi: int) -> Now:
    """A group's part of a per-series `now`."""
    if now is None or np.ndim(now) == 0:
        return now
    return np.asarray(now, dtype=np.float64)[lo:hi]


@dataclass
class Prepared:
    """Per input series (index i): its status, how it was shaped, and its raw last point;
    plus the batches holding the analysable ones (Batch.rows are input indices)."""

    status: npt.NDArray[np.int8]
    derivative: BoolArray
    resampled: BoolArray
    length: IntArray
    last_timestamp: FloatArray
    last_value: FloatArray
    batches: list[Batch] = field(default_factory=list)
    min_length: IntArray | None = None  # points each series needs (TooShort below)

    def __len__(self) -> int:
        return int(self.status.shape[0])


class _Flat:
    """A group of series as concatenated points; segment i is counts[i] points long."""

    def __init__(self, t: FloatArray, v: FloatArray, counts: IntArray) -> None:
        self.t, self.v, self.counts = t, v, counts

    @property
    def n_seg(self) -> int:
        return len(self.counts)

    def compress(self, keep: BoolArray) -> None:
        if not keep.all():
            self.counts = seg_count(keep, self.counts)
            self.t, self.v = self.t[keep], self.v[keep]

    def ends(self) -> IntArray:
        """Index one past each segment's last point."""
        return np.cumsum(self.counts)

    def per_point(self, x: npt.NDArray) -> npt.NDArray:
        return np.repeat(x, self.counts)


def _empty_result(k: int) -> Prepared:
    return Prepared(status=np.zeros(k, dtype=np.int8), derivative=np.zeros(k, dtype=bool),
                    resampled=np.zeros(k, dtype=bool), length=np.zeros(k, dtype=np.int64),
                    last_timestamp=np.full(k, np.nan), last_value=np.full(k, np.nan),
                    min_length=np.zeros(k, dtype=np.int64))


def chunk_ranges(lengths: IntArray, points: int = GROUP_POINTS) -> list[tuple[int, int]]:
    """Consecutive series ranges holding about `points` points (at least one series each)."""
    bounds = np.cumsum(lengths)
    out = []
    lo, k = 0, len(lengths)
    while lo < k:
        base = int(bounds[lo - 1]) if lo else 0
        hi = max(lo + 1, int(np.searchsorted(bounds, base + points, side="right")))
        out.append((lo, hi))
        lo = hi
    return out


def _check_monotonic(monotonic: Sequence[bool | None] | None, k: int, now: Now = None) -> None:
    if monotonic is not None and len(monotonic) != k:
        raise InvalidInput("monotonic needs one entry per series")
    if now is not None and np.ndim(now) and np.shape(now) != (k,):
        raise InvalidInput("now must be one time, or one per series")


def prepare(series: Sequence[SeriesInput], params: AnalysisParams | None = None, *,
            now: Now = None, monotonic: Sequence[bool | None] | None = None,
            analyse_all: bool = False) -> Prepared:
    """Shape raw series for analysis. `now` (Unix seconds, passed as data; one for all, or
    one per series, as replay judges each window at its own time) enables the Stale
    check; monotonic[i] forces (True) or forbids (False) the derivative for series i, None
    leaves it to detection. analyse_all puts every non-empty series into the batches whatever
    its status (crucible); otherwise only Status.OK ones are."""
    params = params or AnalysisParams()
    k = len(series)
    _check_monotonic(monotonic, k, now)
    out = _empty_result(k)
    lengths = np.fromiter((np.shape(v)[0] if np.ndim(v) else 0 for _, v in series),
                          dtype=np.int64, count=k)
    for lo, hi in chunk_ranges(lengths):
        mono = None if monotonic is None else monotonic[lo:hi]
        _prepare_group(_to_flat(series[lo:hi]), lo, params, _now(now, lo, hi), mono,
                       analyse_all, out)
    return out


def prepare_flat(timestamps: FloatArray, values: FloatArray, counts: IntArray,
                 params: AnalysisParams | None = None, *, now: Now = None,
                 monotonic: Sequence[bool | None] | None = None,
                 analyse_all: bool = False) -> Prepared:
    """prepare() for series already laid end to end: series i is the counts[i] points after
    the first sum(counts[:i]). The hot path's form: the store's packed points of many metrics
    joined into one buffer and viewed with one numpy.frombuffer (timestamps and values may be
    strided views of it), with no Python work per metric here."""
    params = params or AnalysisParams()
    counts = np.asarray(counts, dtype=np.int64)
    if timestamps.shape != values.shape or int(counts.sum()) != len(values):
        raise InvalidInput("timestamps and values must be equally long and hold sum(counts) "
                           "points")
    k = len(counts)
    _check_monotonic(monotonic, k, now)
    out = _empty_result(k)
    first = np.cumsum(counts) - counts
    for lo, hi in chunk_ranges(counts):
        a = int(first[lo])
        b = a + int(counts[lo:hi].sum())
        flat = _Flat(np.array(timestamps[a:b], dtype=np.float64),
                     np.array(values[a:b], dtype=np.float64), counts[lo:hi].copy())
        mono = None if monotonic is None else monotonic[lo:hi]
        _prepare_group(flat, lo, params, _now(now, lo, hi), mono, analyse_all, out)
    return out


def _to_flat(series: Sequence[SeriesInput]) -> _Flat:
    if not series:
        return _Flat(np.empty(0), np.empty(0), np.zeros(0, dtype=np.int64))
    ts = [np.ravel(t) for t, _ in series]
    vs = [np.ravel(v) for _, v in series]
    n = np.fromiter(map(len, ts), dtype=np.int64, count=len(ts))
    if not np.array_equal(n, np.fromiter(map(len, vs), dtype=np.int64, count=len(vs))):
        raise InvalidInput("each series needs as many timestamps as values")
    return _Flat(np.concatenate(ts, dtype=np.float64), np.concatenate(vs, dtype=np.float64), n)


def _clean(f: _Flat) -> FloatArray:
    """Finite points only, sorted by time within each series, last write wins on duplicates.
    Returns each series' smallest spacing between points."""
    if not (np.isfinite(f.t).all() and np.isfinite(f.v).all()):
        f.compress(np.isfinite(f.t) & np.isfinite(f.v))
    if len(f.t) < 2:
        return np.full(f.n_seg, np.inf)
    dt = f.t[1:] - f.t[:-1]
    spacing = pair_min(dt, f.counts)  # straddling pairs become inf in dt
    if bool(np.all(spacing > 0)):
        return spacing  # every series strictly increases: sorted and unique
    seg = segment_ids(f.counts)
    order = np.lexsort((f.t, seg))  # stable: equal timestamps keep their write order
    f.t, f.v, seg = f.t[order], f.v[order], seg[order]
    keep = np.ones(len(f.t), dtype=bool)
    keep[:-1] = ~((seg[1:] == seg[:-1]) & (f.t[1:] == f.t[:-1]))
    f.compress(keep)
    return pair_min(f.t[1:] - f.t[:-1], f.counts)


def _last_points(f: _Flat) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Per segment: last timestamp, last value, first timestamp (NaN when empty)."""
    ends = f.ends()
    has = f.counts > 0
    last_t, last_v, first_t = (np.full(f.n_seg, np.nan) for _ in range(3))
    last_t[has] = f.t[ends[has] - 1]
    last_v[has] = f.v[ends[has] - 1]
    first_t[has] = f.t[(ends - f.counts)[has]]
    return last_t, last_v, first_t


def _resample(f: _Flat, params: AnalysisParams, spacing: FloatArray,
              now: Now) -> BoolArray:
    """Average series denser than the analysis resolution into its steps; returns which were.
    A series whose points are never closer than the resolution has one point per step: the
    common case costs no pass over the points. Given `now`, a dense series' last step is
    dropped while it is still filling (now before its end): its mean would change, and the
    pipeline processes each analysis point once."""
    res = params.resolution
    if res is None or len(f.t) == 0 or bool(np.all(spacing >= res)):
        return np.zeros(f.n_seg, dtype=bool)
    step = np.floor(f.t / res)
    same_step = pair_mask(step[1:] == step[:-1], f.counts)
    shared = seg_count(same_step, f.counts)  # points that share a step with the one before
    occupied = f.counts - shared
    dense = (occupied > 0) & (f.counts >= params.resample_ratio * occupied)
    if not dense.any():
        return dense
    # a group starts at every point except one sharing a step inside a dense series
    merge = np.zeros(len(f.t), dtype=bool)
    merge[1:] = same_step[:-1] & f.per_point(dense)[:-1]
    group_start = np.flatnonzero(~merge)
    sums = np.add.reduceat(f.v, group_start)
    sizes = np.diff(np.append(group_start, len(f.v)))
    is_dense = f.per_point(dense)[group_start]
    f.t = np.where(is_dense, step[group_start] * res, f.t[group_start])
    f.v = sums / sizes
    f.counts = seg_count(~merge, f.counts)
    if now is not None:
        ends = f.ends()
        has = f.counts > 0
        last = ends - 1
        filling = has & dense & (f.t[np.maximum(last, 0)] + res > np.asarray(now))
        if filling.any():
            keep = np.ones(len(f.t), dtype=bool)
            keep[last[filling]] = False
            f.compress(keep)
    return dense


def _min_length(params: AnalysisParams, counts: IntArray, span: FloatArray) -> IntArray:
    """Points each series needs: MIN_TOLERABLE_LENGTH, or, for a series too sparse for its
    window to ever hold that many, short_fraction of what the window holds at the series' own
    average step (at least 2). A 60 s assumption would leave hourly metrics, or irregular ones
    that report every few minutes, never analysed."""
    need = np.full(len(counts), params.min_tolerable_length, dtype=np.int64)
    if params.short_fraction <= 0:
        return need
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        holds = params.full_duration * (counts - 1) / span  # inf/NaN: under 2 points
    holds = np.where(np.isfinite(holds), holds, np.inf)
    sparse = np.maximum(np.ceil(params.short_fraction * np.minimum(holds, 2.0**62)), 2)
    return np.minimum(need, sparse).astype(np.int64)


def _boring(f: _Flat, params: AnalysisParams) -> BoolArray:
    """len(set(last MAX_TOLERABLE_BOREDOM values)) == BOREDOM_SET_SIZE, per segment."""
    width = params.max_tolerable_boredom
    counts, ends = f.counts, f.ends()
    if len(f.v) == 0:
        return np.zeros(f.n_seg, dtype=bool)
    idx = ends[:, None] - width + np.arange(width)[None, :]
    inside = idx >= (ends - counts)[:, None]
    tail = np.where(inside, f.v[np.clip(idx, 0, len(f.v) - 1)], np.nan)
    tail.sort(axis=1)  # NaN last
    changes = (tail[:, 1:] != tail[:, :-1]) & ~np.isnan(tail[:, 1:])
    distinct = np.where(counts > 0, 1 + changes.sum(axis=1), 0)
    return distinct == params.boredom_set_size


def _prepare_group(f: _Flat, offset: int, params: AnalysisParams,
                   now: Now, monotonic: Sequence[bool | None] | None,
                   analyse_all: bool, out: Prepared) -> None:
    ids = slice(offset, offset + f.n_seg)
    spacing = _clean(f)
    last_t, last_v, first_t = _last_points(f)
    out.last_timestamp[ids] = last_t
    out.last_value[ids] = last_v
    if bool(np.any(first_t <= last_t - params.full_duration)):
        f.compress(f.t > f.per_point(last_t - params.full_duration))
        _, _, first_t = _last_points(f)
    span = last_t - first_t

    flags = np.zeros(f.n_seg, dtype=bool)
    if params.detect_counters and len(f.v):
        flags = strictly_increasing(f.v, f.counts)
    if monotonic is not None:
        given = np.array([m is not None for m in monotonic], dtype=bool)
        forced = np.array([bool(m) for m in monotonic], dtype=bool)
        flags = np.where(given, forced, flags)
    f.t, f.v, f.counts = non_negative_derivative(f.t, f.v, f.counts, flags)
    out.derivative[ids] = flags
    out.resampled[ids] = _resample(f, params, spacing, now)

    if len(f.t) and f.counts.max() > params.max_points:
        from_end = f.per_point(f.ends()) - np.arange(len(f.t))
        f.compress(from_end <= params.max_points)
    counts = f.counts
    out.length[ids] = counts

    status = np.full(f.n_seg, Status.OK, dtype=np.int8)
    boring = _boring(f, params)
    stale = (now - last_t > params.stale_period) if now is not None else np.zeros(f.n_seg, bool)
    with np.errstate(invalid="ignore"):
        incomplete = span < params.incomplete_fraction * params.full_duration
    # later assignments win: the most fundamental reason last, in upstream's order
    status[boring] = Status.BORING
    status[stale] = Status.STALE
    status[incomplete & (params.incomplete_fraction > 0)] = Status.INCOMPLETE
    need = _min_length(params, counts, span)
    if out.min_length is not None:
        out.min_length[ids] = need
    status[counts < need] = Status.TOO_SHORT
    status[counts == 0] = Status.EMPTY
    out.status[ids] = status

    chosen = (counts > 0) if analyse_all else (status == Status.OK)
    ends = f.ends()
    for rows in _buckets(np.flatnonzero(chosen), counts, params.bucket_padding):
        out.batches.append(_gather(f, rows, counts, ends, offset, params.full_duration))


def _buckets(rows: IntArray, counts: IntArray, padding: float) -> list[IntArray]:
    """Split rows into groups whose shortest is within `padding` of their longest."""
    if len(rows) == 0:
        return []
    order = rows[np.argsort(counts[rows], kind="stable")[::-1]]
    n_sorted = counts[order]
    groups = []
    i = 0
    while i < len(order):
        floor = n_sorted[i] * (1.0 - padding)
        # n_sorted is descending: find the first row shorter than the floor
        j = i + int(np.searchsorted(-n_sorted[i:], -floor, side="right"))
        j = max(j, i + 1)
        groups.append(np.sort(order[i:j]))
        i = j
    return groups


def _gather(f: _Flat, rows: IntArray, counts: IntArray, ends: IntArray, offset: int,
            full_duration: float) -> Batch:
    """Rows right-aligned into a (rows, width) pair of arrays by one gather each."""
    n = counts[rows]
    width = int(n.max())
    lo, hi = int(ends[rows[0]]) - width, int(ends[rows[-1]])
    if int(n.min()) == width and hi - lo == width * len(rows):
        # full rows lying back to back in the flat arrays (the usual case): a reshaped view
        return Batch(f.t[lo:hi].reshape(len(rows), width), f.v[lo:hi].reshape(len(rows), width),
                     n.astype(np.int64), rows=rows.astype(np.int64) + offset,
                     full_duration=full_duration)
    idx = ends[rows][:, None] + np.arange(-width, 0)[None, :]
    if int(n.min()) == width:
        t, v = f.t[idx], f.v[idx]
    else:
        pad = np.arange(width)[None, :] < (width - n)[:, None]
        np.maximum(idx, 0, out=idx)
        t, v = f.t[idx], f.v[idx]
        t[pad] = np.nan
        v[pad] = np.nan
    return Batch(t, v, n.astype(np.int64), rows=rows.astype(np.int64) + offset,
                 full_duration=full_duration)
