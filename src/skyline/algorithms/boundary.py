"""Boundary's algorithms (upstream's boundary_algorithms): less_than, greater_than and
detect_drop_off_cliff, and the TooShort / Stale / Boring pre-checks, vectorised over every
checked metric at once. Pure: no settings, no I/O, time comes in as data.

Input is the tail of each series: `Tails`, two (metrics x width) arrays of timestamps and
values, right-aligned (the newest point in the last column) and NaN-padded on the left, plus
each series' full length. Only the tail is touched, so a run costs metrics x width however
long the stored series are; `tails_covering` picks a width that holds every time window the
checks look at (exact: it widens until the oldest column predates every window).

detect_drop_off_cliff follows upstream's rules (docs/boundary.md) with one latent bug fixed:
upstream counted the points at or below the window's minimum with `len(np.where(...))`, which
is the length of a 1-tuple, always 1, so its two "frequent cliff" guards (more than 2 such
points in the last 10 or 20 points: a metric that often falls this low is not falling off a
cliff) never fired. Here they count the points.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from skyline.core.types import FloatArray

BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]

CLIFF_MIN_POINTS = 30  # upstream: detect_drop_off_cliff needs 30 points
CLIFF_GUARD = 2  # more points than this at or below the window's minimum: frequent cliffs


@dataclass
class Tails:
    t: FloatArray  # (n, width), right-aligned, NaN-padded
    v: FloatArray
    counts: IntArray  # each series' full length (>= 1)

    @property
    def width(self) -> int:
        return int(self.t.shape[1])

    @property
    def last_t(self) -> FloatArray:
        return self.t[:, -1]

    @property
    def last_v(self) -> FloatArray:
        return self.v[:, -1]


def tails(t: FloatArray, v: FloatArray, counts: IntArray, width: int,
          rows: IntArray | None = None) -> Tails:
    """The last `width` points of each series of the flat layout (series i is the counts[i]
    points after the first sum(counts[:i]) of t and v), as one gather; only series `rows`
    when given."""
    counts = np.asarray(counts, dtype=np.int64)
    ends = np.cumsum(counts)
    if rows is not None:
        ends, counts = ends[rows], counts[rows]
    width = max(1, int(width))
    if not len(t):
        empty = np.full((len(counts), width), np.nan)
        return Tails(empty, empty.copy(), counts)
    idx = ends[:, None] - width + np.arange(width)[None, :]
    if (counts >= width).all():  # the common case: no padding
        return Tails(t[idx], v[idx], counts)
    valid = idx >= (ends - counts)[:, None]
    np.maximum(idx, 0, out=idx)
    tt = t[idx]
    vv = v[idx]
    tt[~valid] = np.nan
    vv[~valid] = np.nan
    return Tails(tt, vv, counts)


def tails_covering(t: FloatArray, v: FloatArray, counts: IntArray, points: int,
                   seconds: FloatArray | float = 0.0, *, res_points: int = 0,
                   rows: IntArray | None = None) -> Tails:
    """Tails at least `points` wide that hold, for every series, each point newer than its
    last point minus seconds[i], and minus res_points times its resolution (or all its
    points): widened, doubling, until the oldest column predates every window."""
    counts = np.asarray(counts, dtype=np.int64)
    sel = counts if rows is None else counts[rows]
    longest = int(sel.max()) if len(sel) else 1
    width = max(1, min(points, longest))
    while True:
        tl = tails(t, v, counts, width, rows)
        if width >= longest:
            return tl
        span = np.asarray(seconds, dtype=np.float64)
        if res_points:
            span = np.fmax(span, res_points * resolution(tl))
        short = (tl.counts > width) & (tl.t[:, 0] > tl.last_t - span)
        if not short.any():
            return tl
        width = min(longest, width * 2)


def resolution(tl: Tails) -> FloatArray:
    """Upstream's resolution: the step between the last two points (NaN with one point)."""
    if tl.width < 2:
        return np.full(len(tl.counts), np.nan)
    return tl.last_t - tl.t[:, -2]


def window_seconds(tl: Tails, points: int) -> FloatArray:
    """Upstream's "last N points" window in seconds: N times the resolution."""
    return points * resolution(tl)


# -- pre-checks (upstream's exceptions) --------------------------------------------------

def too_short(tl: Tails, min_length: int) -> BoolArray:
    return tl.counts < max(min_length, 1)


def stale(tl: Tails, now: float, stale_period: FloatArray | float) -> BoolArray:
    """No point for longer than the stale period (0: never stale)."""
    period = np.asarray(stale_period, dtype=np.float64)
    return (period > 0) & (now - tl.last_t > period)


def boring(tl: Tails, max_boredom: int, set_size: int) -> BoolArray:
    """The last max_boredom points hold at most set_size distinct values."""
    w = min(max_boredom, tl.width)
    v = tl.v[:, -w:]
    finite = np.isfinite(v)
    if set_size <= 1:
        same = (v == tl.last_v[:, None]) | ~finite
        return same.all(axis=1)
    s = np.sort(np.where(finite, v, np.inf), axis=1)
    change = (np.diff(s, axis=1) != 0) & np.isfinite(s[:, 1:])
    distinct = change.sum(axis=1) + finite.any(axis=1)
    return distinct <= set_size


# -- what is checked ----------------------------------------------------------------------

def smoothed_last(tl: Tails, kind: str, points: int) -> FloatArray:
    """The last value, or the mean / median of the last `points` points (fewer when the
    series is shorter)."""
    if not kind or points <= 1:
        return tl.last_v.copy()
    w = tl.v[:, -min(points, tl.width):]
    with np.errstate(all="ignore"):
        if kind == "mean":
            return np.asarray(np.nanmean(w, axis=1), dtype=np.float64)
        if kind == "median":
            return np.asarray(np.nanmedian(w, axis=1), dtype=np.float64)
    raise ValueError(f"unknown smoothing {kind!r}")


def less_than(value: FloatArray, trigger: FloatArray) -> BoolArray:
    """Anomalous iff the (smoothed) last value is below TRIGGER_VALUE."""
    with np.errstate(invalid="ignore"):
        return np.asarray(value < trigger)


def greater_than(value: FloatArray, trigger: FloatArray) -> BoolArray:
    """Anomalous iff the (smoothed) last value is above TRIGGER_VALUE."""
    with np.errstate(invalid="ignore"):
        return np.asarray(value > trigger)


@dataclass
class Cliff:
    anomalous: BoolArray
    ratio: FloatArray  # mean of the ten-point window / last value (NaN: not evaluated)
    trigger: FloatArray  # the ratio it had to exceed
    average: FloatArray  # mean of the ten-point window: the level before the cliff


def detect_drop_off_cliff(tl: Tails, min_average: FloatArray,
                          min_average_seconds: FloatArray, *, fix_guards: bool = True) -> Cliff:
    """Anomalous iff the mean of the last 10 points' window is more than `trigger` times the
    last value (upstream's triggers, docs/boundary.md), the window holds more than 3 points,
    only non-negative values and some variation, the metric does not often fall this low (the
    guards), and, when min_average and min_average_seconds are set, its mean over the last
    min_average_seconds reaches min_average. fix_guards=False reproduces upstream's guards that
    never fire (for the tests that show the difference)."""
    n = len(tl.counts)
    t, v = tl.t, tl.v
    end = tl.last_t
    res = resolution(tl)
    with np.errstate(invalid="ignore", divide="ignore"):
        in10 = (t <= end[:, None]) & (t > (end - 10 * res)[:, None])
        in20 = (t <= end[:, None]) & (t > (end - 20 * res)[:, None])
        n10 = in10.sum(axis=1)
        lo = np.where(in10, v, np.inf).min(axis=1)
        hi = np.where(in10, v, -np.inf).max(axis=1)
        total = np.where(in10, v, 0.0).sum(axis=1)
        avg = total / n10
        ok = (tl.counts >= CLIFF_MIN_POINTS) & (n10 > 3) & (lo >= 0) & (hi != 0) & (lo != hi)
        if fix_guards:
            low10 = (in10 & (v <= lo[:, None])).sum(axis=1)
            low20 = (in20 & (v <= lo[:, None])).sum(axis=1)
            ok &= (low10 <= CLIFF_GUARD) & (low20 <= CLIFF_GUARD)
        mas = np.asarray(min_average_seconds, dtype=np.float64) * np.ones(n)
        ma = np.asarray(min_average, dtype=np.float64) * np.ones(n)
        need = (ma > 0) & (mas > 0)
        if need.any():
            inm = (t <= end[:, None]) & (t > (end - mas)[:, None])
            mean = np.where(inm, v, 0.0).sum(axis=1) / inm.sum(axis=1)
            ok &= ~need | (mean >= ma)
        # upstream's triggers, in its order (later rules win)
        trig = np.where(hi < 101, 15.0, np.nan)
        trig = np.where(hi < 20, avg / 2, trig)
        trig = np.where(hi > 100, 100.0, trig)
        last = np.trunc(tl.last_v)  # upstream: int(last value)
        last = np.where(last == 0, 0.1, last)
        trig = np.where(last == 1, 1.0, trig)
        trig = np.where((last == 1) & (hi < 10), 0.1, trig)
        trig = np.where((last == 0.1) & (avg < 1) & (total < 7), 7.0, trig)
        ratio = avg / last
        anomalous = ok & (np.trunc(ratio) > trig)
    return Cliff(anomalous=np.asarray(anomalous, dtype=bool),
                 ratio=np.where(ok, ratio, np.nan), trigger=np.where(ok, trig, np.nan),
                 average=np.where(ok, avg, np.nan))
