"""Luminosity's correlations: which other metrics moved with an anomaly. Pure and vectorised:
every candidate metric is one row of a matrix, every anomaly one column of another, and each
lag is one matrix product; no loop over metrics or points.

1. `resample`: the candidates' points (flat, as the hot store's FlatReader gives them) onto one
   grid of the anomalous metric's resolution: the mean of the points nearest each grid time,
   gaps carried forward (and leading gaps back), coverage per row.
2. `derive_counters`: rows that are monotonic counters become their non-negative derivative
   (a counter's level never moves *with* anything; its rate does).
3. `correlate`: for each anomaly at grid column c, the window [c - before, c + after] of the
   anomalous metric against every row's window shifted by each lag in [-max_lag, max_lag]:
   Pearson's coefficient per lag from one matrix product and prefix sums of the rows. Lag > 0:
   the candidate moved that many steps *after* the anomalous metric.
4. Ranking. Shape alone is noisy (upstream's own docs say so): a metric that barely moved,
   or whose noise happens to follow a step, correlates as well as one that broke. So each row
   also gets a `change`: how far its values around the anomaly went from its own baseline
   before it, in robust standard deviations (median and MAD of the baseline). A candidate is
   related when |shifted coefficient| >= threshold and change >= min_change; related ones are
   ranked by |shifted coefficient| x min(1, change / (2 min_change)), best first.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from skyline.core.errors import InvalidInput
from skyline.core.luminosity import RelatedMetric
from skyline.core.types import FloatArray

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

# MAD of a normal sample is 0.6745 standard deviations
_MAD_TO_SIGMA = 1.4826


@dataclass(frozen=True)
class CorrelationParams:
    before: int = 60  # grid steps of history before the anomaly in the window
    after: int = 5  # grid steps after it (lagged consequences need points after it)
    max_lag: int = 5  # steps either way a candidate may lead or follow
    threshold: float = 0.9  # LUMINOL_CROSS_CORRELATION_THRESHOLD on |shifted coefficient|
    min_change: float = 4.0  # robust z a candidate must reach around the anomaly
    top: int = 10  # related metrics kept per anomaly
    min_coverage: float = 0.5  # share of the grid a row must have points in
    change_baseline: int = 60  # steps before the anomaly a change is measured against

    def __post_init__(self) -> None:
        if self.before < 4 or self.after < 0 or self.max_lag < 0:
            raise InvalidInput("luminosity window: before must be >= 4, after and max_lag "
                               ">= 0")
        if not 0 < self.threshold <= 1:
            raise InvalidInput("LUMINOL_CROSS_CORRELATION_THRESHOLD must be in (0, 1]")
        if self.min_change < 0 or self.top < 1 or not 0 <= self.min_coverage <= 1:
            raise InvalidInput("luminosity: min_change >= 0, top >= 1, min_coverage in [0, 1]")

    @property
    def width(self) -> int:
        """Points in one anomaly's window."""
        return self.before + self.after + 1

    @property
    def margin_before(self) -> int:
        """Grid columns needed before an anomaly's column."""
        return self.before + self.max_lag

    @property
    def margin_after(self) -> int:
        return self.after + self.max_lag


@dataclass
class Grid:
    """Rows resampled onto start + k * step, k < columns."""

    start: float
    step: float
    values: FloatArray  # rows x columns, gaps filled
    coverage: FloatArray  # per row, share of columns that had points
    # per row, the last column that had a point (-1: none); None: every column had one.
    # Columns after it are carried forward: the newest anomaly's points after it may not
    # have arrived yet
    last: IntArray | None = None

    @property
    def columns(self) -> int:
        return int(self.values.shape[1])

    def column(self, t: float) -> int:
        return int(np.floor((t - self.start) / self.step + 0.5))


# points per block of rows resampled at once: temporaries stay under glibc's largest mmap
# threshold (32 MiB), so their memory is reused from block to block instead of being
# mapped (and page-faulted) afresh: a third of the time at 100k series, measured
_BLOCK_POINTS = 1 << 20


def resample(timestamps: FloatArray, values: FloatArray, counts: IntArray, start: float,
             step: float, columns: int) -> Grid:
    """The flat series (segment i is counts[i] points) on a grid: per row and column, the
    mean of the points whose time is nearest that column's time."""
    if step <= 0 or columns < 1:
        raise InvalidInput("the grid needs a positive step and at least one column")
    rows = len(counts)
    out = np.empty((rows, columns))
    coverage = np.zeros(rows)
    last = np.empty(rows, dtype=np.int64)
    ends = np.cumsum(counts)
    lo = 0
    while lo < rows:
        # rows lo..hi hold at most _BLOCK_POINTS points (at least one row)
        base = int(ends[lo - 1]) if lo else 0
        hi = max(int(np.searchsorted(ends, base + _BLOCK_POINTS, side="right")), lo + 1)
        end = int(ends[hi - 1])
        out[lo:hi], coverage[lo:hi], last[lo:hi] = _resample_block(
            timestamps[base:end], values[base:end], counts[lo:hi], start, step, columns)
        lo = hi
    return Grid(start, step, out, coverage, last)


def _resample_block(timestamps: FloatArray, values: FloatArray, counts: IntArray,
                    start: float, step: float, columns: int
                    ) -> tuple[FloatArray, FloatArray, IntArray]:
    rows = len(counts)
    size = rows * columns
    col = np.floor((timestamps - start) * (1.0 / step) + 0.5)
    aligned = _aligned(col, values, counts, columns)
    if aligned is not None:
        # every row has one finite point in every column, at the same positions: the
        # values as they are (the mean of one point is the point)
        lo = int(aligned[0])
        block = values.reshape(rows, -1)
        out = (block[:, lo:lo + columns] if int(aligned[-1]) - lo == columns - 1
               else block[:, aligned])  # sorted points: one slice
        return out, np.ones(rows), np.full(rows, columns - 1, dtype=np.int64)
    ok = (col >= 0) & (col < columns) & np.isfinite(values)
    # points off the grid go to one spare bucket past the end (no copies of the kept ones)
    flat = np.repeat(np.arange(0, size, columns, dtype=np.int64), counts)
    flat += col.astype(np.int64, copy=False)
    flat[~ok] = size
    sums = np.bincount(flat, weights=np.where(ok, values, 0.0), minlength=size + 1)
    sums = sums[:size].reshape(rows, columns)
    hits = np.bincount(flat, minlength=size + 1)[:size].reshape(rows, columns)
    has = hits > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        filled = sums / hits
    last = np.full(rows, columns - 1, dtype=np.int64)
    gappy = np.flatnonzero(~has.all(axis=1))  # most rows have a point in every column
    if len(gappy):
        # carry the last value forward over gaps, and the first one back over leading gaps
        h = has[gappy]
        idx = np.where(h, np.arange(columns), 0)
        np.maximum.accumulate(idx, axis=1, out=idx)
        m = filled[gappy]
        g = m[np.arange(len(gappy))[:, None], idx]
        first = h.argmax(axis=1)
        lead = np.arange(columns)[None, :] < first[:, None]
        g = np.where(lead, m[np.arange(len(gappy)), first][:, None], g)
        none = ~h.any(axis=1)
        g[none] = 0.0
        filled[gappy] = g
        last[gappy] = np.where(none, -1, idx[:, -1])
    return filled, has.mean(axis=1), last


def _aligned(col: FloatArray, values: FloatArray, counts: IntArray, columns: int
             ) -> IntArray | None:
    """The fast case of a block (metrics of one resolution, no gaps, as most are): every row
    has as many points, falling in the same grid columns, each column exactly once, every
    value finite. Then the positions, within a row, of the points of columns 0, 1, ...;
    else None."""
    rows = len(counts)
    if not rows or not len(col) or (counts != counts[0]).any():
        return None
    m = int(counts[0])
    first = col[:m]
    inside = np.flatnonzero((first >= 0) & (first < columns))
    if len(inside) != columns or not np.array_equal(first[inside], np.arange(columns)):
        return None
    if not (col.reshape(rows, m) == first).all() or not np.isfinite(values).all():
        return None
    return inside


def counter_rows(x: FloatArray, min_increases: int = 10) -> BoolArray:
    """Rows that look like monotonic counters: never negative, at least `min_increases`
    increases, and decreases (resets) at most a quarter of the increases."""
    if x.shape[1] < 2:
        return np.zeros(x.shape[0], dtype=bool)
    d = np.diff(x, axis=1)
    inc = (d > 0).sum(axis=1)
    dec = (d < 0).sum(axis=1)
    return (x.min(axis=1) >= 0) & (inc >= min_increases) & (4 * dec <= inc)


def derive_counters(grid: Grid, counters: BoolArray) -> None:
    """Counter rows become their non-negative derivative per step, in place; a reset (a
    decrease) becomes the row's median increase rather than a negative spike. After a row's
    last point (grid.last) the last increase is carried forward, as levels are: a counter
    whose newer points have not arrived yet did not stop counting."""
    if not counters.any() or grid.columns < 2:
        return
    x = grid.values[counters]
    d = np.diff(x, axis=1)
    neg = d < 0
    if neg.any():
        kept = np.where(neg, np.nan, d)
        with np.errstate(all="ignore"):
            med = np.nanmedian(np.where(neg.all(axis=1, keepdims=True), 0.0, kept), axis=1,
                               keepdims=True)
        d = np.where(neg, med, d)
    out = np.empty_like(x)
    out[:, 1:] = d
    out[:, 0] = d[:, 0]
    if grid.last is not None:
        last = grid.last[counters]
        short = np.flatnonzero((last >= 1) & (last < grid.columns - 1))
        if len(short):
            cols = np.minimum(np.arange(grid.columns)[None, :], last[short, None])
            out[short] = np.take_along_axis(out[short], cols, axis=1)
    grid.values[counters] = out


@dataclass
class Correlations:
    """Per anomaly (first axis) and candidate row (second axis)."""

    coefficient: FloatArray  # Pearson at lag 0
    shifted_coefficient: FloatArray  # at the lag of the largest |coefficient|
    lag: IntArray  # steps; > 0: the candidate moved after the anomalous metric
    change: FloatArray  # robust z of the candidate around the anomaly (0: not computed)
    baseline: FloatArray  # co-movement before the anomaly (NaN: a flat baseline, unknown)
    score: FloatArray  # the ranking score (0: not related)
    related: BoolArray


def _prefix(xt: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Prefix sums down the columns of a columns x rows matrix (and of its squares), with
    no temporary of the matrix's size (at 100k rows each costs its page faults)."""
    p1 = np.empty((xt.shape[0] + 1, xt.shape[1]))
    p2 = np.empty_like(p1)
    p1[0] = 0.0
    p2[0] = 0.0
    np.cumsum(xt, axis=0, out=p1[1:])
    np.square(xt, out=p2[1:])
    np.cumsum(p2[1:], axis=0, out=p2[1:])
    return p1, p2


def correlate(grid: Grid, anomaly_rows: IntArray, anomaly_columns: IntArray,
              params: CorrelationParams, *, usable: BoolArray | None = None) -> Correlations:
    """Every anomaly (its metric's row in the grid and the grid column of its time) against
    every row. A row is never related to itself; rows not `usable` (out of scope) and rows
    with too little coverage are never related.

    The shape pass runs over every row; change and baseline, the costlier figures, only over
    the rows whose shape passed the threshold (few)."""
    p = params
    rows, cols = grid.values.shape
    n_anom = len(anomaly_rows)
    anomaly_rows = np.asarray(anomaly_rows, dtype=np.int64)
    anomaly_columns = np.asarray(anomaly_columns, dtype=np.int64)
    if n_anom and (anomaly_columns.min() < p.margin_before
                   or anomaly_columns.max() + p.margin_after >= cols):
        raise InvalidInput("the grid does not cover every anomaly's window and lags")
    # centre rows once: prefix sums of large values (a counter at 1e12) keep their precision.
    # Columns x rows: a lag's window is then one contiguous block of whole rows of xt
    xt = np.ascontiguousarray(grid.values.T)
    xt -= grid.values.mean(axis=1)
    p1, p2 = _prefix(xt)
    # products in float32 (twice the speed, half the memory); rows are centred, so the
    # coefficients keep about 6 digits, plenty to rank them. Sums stay in float64.
    xf = xt.astype(np.float32)
    n = p.width
    most = int(np.unique(anomaly_columns, return_counts=True)[1].max()) if n_anom else 0
    # every lag's coefficients in one block, and their absolute values (reused across
    # columns: fresh arrays of this size cost their page faults again each time)
    lags = 2 * p.max_lag + 1
    lag_buf = np.empty((lags, most, rows), dtype=np.float32)
    abs_buf = np.empty((lags, most, rows), dtype=np.float32)
    best_val_buf = np.empty((most, rows), dtype=np.float32)
    best_lag_buf = np.empty((most, rows), dtype=np.int8)
    is_best_buf = np.empty((most, rows), dtype=bool)
    coef = np.zeros((n_anom, rows))
    best = np.zeros((n_anom, rows))
    lag = np.zeros((n_anom, rows), dtype=np.int64)
    change = np.zeros((n_anom, rows))
    baseline = np.full((n_anom, rows), np.nan)
    ok = grid.coverage >= p.min_coverage
    if usable is not None:
        ok = ok & usable
    for c in np.unique(anomaly_columns):
        which = np.flatnonzero(anomaly_columns == c)
        a = xt[c - p.before:c + p.after + 1, anomaly_rows[which]].T  # k x n
        a = a - a.mean(axis=1, keepdims=True)
        sa = np.sqrt((a * a).mean(axis=1, keepdims=True))
        az = np.divide(a, sa, out=np.zeros_like(a), where=sa > 0)  # flat anomaly: all 0
        k = len(which)
        azf = np.ascontiguousarray(az, dtype=np.float32)
        rr, rr_abs = lag_buf[:, :k], abs_buf[:, :k]
        for j, ell in enumerate(range(-p.max_lag, p.max_lag + 1)):
            lo = c - p.before + ell
            hi = lo + n
            s1 = p1[hi] - p1[lo]
            s2 = p2[hi] - p2[lo]
            var = s2 / n - (s1 / n) ** 2
            # a row flat in the window (to rounding) has no shape: an infinite spread makes
            # its coefficient 0
            sx = np.sqrt(np.where(var <= 1e-12 * (s2 / n + 1e-300), np.inf, var)) * n
            np.matmul(azf, xf[lo:hi], out=rr[j])  # k x rows, one product per lag
            np.divide(rr[j], sx.astype(np.float32), out=rr[j])
        np.clip(rr, -1.0, 1.0, out=rr)
        coef[which] = rr[p.max_lag]
        # the best lag: the largest |coefficient| (a reduction down the lags), then the lags
        # holding it, the last written first, so the first of equal ones (the most negative
        # lag) wins, as argmax would (argmax down the first axis copies the block: slower)
        np.abs(rr, out=rr_abs)
        best_abs = rr_abs.max(axis=0)
        best_val, best_lag, is_best = best_val_buf[:k], best_lag_buf[:k], is_best_buf[:k]
        for j in range(lags - 1, -1, -1):
            np.equal(rr_abs[j], best_abs, out=is_best)
            np.copyto(best_val, rr[j], where=is_best)
            np.copyto(best_lag, j - p.max_lag, where=is_best)
        b_val = best_val.astype(np.float64)
        b_lag = best_lag.astype(np.int64)
        b_abs = best_abs.astype(np.float64)
        best[which] = b_val
        lag[which] = b_lag
        cand = np.flatnonzero((b_abs >= p.threshold).any(axis=0) & ok)
        if len(cand):
            moved = _change(grid.values[cand], int(c), p)
            change[np.ix_(which, cand)] = moved[None, :]
            cand = cand[moved >= p.min_change]
        if len(cand):
            baseline[np.ix_(which, cand)] = _baseline(
                grid.values, anomaly_rows[which], cand, b_lag[:, cand], int(c), p)
    # change is 0 wherever it was not computed (the shape failed), so these few pass
    ai, ri = np.nonzero(change >= p.min_change)
    keep = (np.abs(best[ai, ri]) >= p.threshold) & ok[ri] & (ri != anomaly_rows[ai])
    ai, ri = ai[keep], ri[keep]
    related = np.zeros((n_anom, rows), dtype=bool)
    related[ai, ri] = True
    score = np.zeros((n_anom, rows))
    weight = np.minimum(1.0, change[ai, ri] / max(2.0 * p.min_change, 1e-12))
    # moving together before the anomaly too is evidence; unknown (flat) counts half
    b = baseline[ai, ri]
    together = 0.5 + 0.5 * np.where(np.isnan(b), 0.5, np.abs(b))
    score[ai, ri] = np.abs(best[ai, ri]) * weight * together
    return Correlations(coef, best, lag, change, baseline, score, related)


def groupable(corr: Correlations, min_baseline: float) -> BoolArray:
    """Related rows that may join the anomalous metric's incident: they also moved together
    before it (|baseline| >= min_baseline), or one of them was flat (nothing to compare).
    Two metrics that both stepped within a few minutes correlate in shape whether or not
    they are related; in their ordinary wiggles they do not."""
    return corr.related & ~(np.abs(corr.baseline) < min_baseline)


def _baseline(values: FloatArray, anomaly_rows: IntArray, cand: IntArray, lags: IntArray,
              c: int, p: CorrelationParams) -> FloatArray:
    """Per anomaly (axis 0) and candidate (axis 1): Pearson's coefficient of the step-to-step
    changes before the anomaly (the baseline, [c - before, c - max_lag)), the candidate
    shifted by its lag. Changes, not levels: two unrelated trends (or daily cycles) correlate
    in level, rarely in their steps. NaN where either side is flat. One matrix product per
    lag, as the shape pass."""
    nb = p.before - p.max_lag - 1  # changes in the baseline
    lo0 = c - p.before
    a = np.diff(values[anomaly_rows], axis=1)[:, lo0:lo0 + nb]  # k x nb
    a = a - a.mean(axis=1, keepdims=True)
    an = np.sqrt((a * a).sum(axis=1))
    dt = np.ascontiguousarray(np.diff(values[cand], axis=1).T)  # changes x candidates
    out = np.full(lags.shape, np.nan)
    for ell in np.unique(lags):
        lo = lo0 + int(ell)
        x = dt[lo:lo + nb]
        x = x - x.mean(axis=0, keepdims=True)
        xn = np.sqrt((x * x).sum(axis=0))
        den = an[:, None] * xn[None, :]
        with np.errstate(invalid="ignore", divide="ignore"):
            r = np.where(den > 0, (a @ x) / np.where(den > 0, den, 1.0), np.nan)
        np.copyto(out, r, where=lags == ell)
    return out


def _change(values: FloatArray, c: int, p: CorrelationParams) -> FloatArray:
    """Per row: the largest distance of a value around column c (c - max_lag .. c + after +
    max_lag) from the row's median over the change_baseline steps before it (a recent
    baseline: over hours, a daily cycle alone would look like a change), in robust standard deviations (MAD,
    else the standard deviation, else a tiny fraction of the level: a flat metric that moves
    has changed)."""
    base = values[:, c - p.max_lag - min(p.before, p.change_baseline):c - p.max_lag]
    around = values[:, c - p.max_lag:c + p.after + p.max_lag + 1]
    med = np.median(base, axis=1)
    mad = np.median(np.abs(base - med[:, None]), axis=1) * _MAD_TO_SIGMA
    scale = np.where(mad > 0, mad, base.std(axis=1))
    scale = np.maximum(scale, 1e-9 * np.maximum(np.abs(med), 1.0))
    return np.abs(around - med[:, None]).max(axis=1) / scale


@dataclass(frozen=True)
class Related:
    """One related metric of one anomaly."""

    row: int
    coefficient: float
    shifted_coefficient: float
    lag: int  # steps
    change: float
    score: float


def top_related(corr: Correlations, anomaly: int, top: int) -> list[Related]:
    """The `top` best related rows of one anomaly, best first."""
    score = corr.score[anomaly]
    cand = np.flatnonzero(corr.related[anomaly])
    if len(cand) > top:
        cand = cand[np.argpartition(-score[cand], top - 1)[:top]]
    cand = cand[np.lexsort((cand, -score[cand]))]
    return [Related(int(i), float(corr.coefficient[anomaly, i]),
                    float(corr.shifted_coefficient[anomaly, i]), int(corr.lag[anomaly, i]),
                    float(corr.change[anomaly, i]), float(score[i])) for i in cand]


@dataclass(frozen=True)
class Anomaly:
    """An anomaly to correlate: its metric (a row of the candidates) and time."""

    metric: str
    timestamp: float


def window_columns(timestamps: FloatArray, step: float, params: CorrelationParams
                   ) -> tuple[float, int]:
    """The grid (start, columns) that holds every anomaly time's window and lags."""
    t = np.asarray(timestamps, dtype=np.float64)
    lo = float(t.min())
    span = int(np.ceil((float(t.max()) - lo) / step))
    start = lo - params.margin_before * step
    return start, span + params.margin_before + params.margin_after + 1


def correlate_flat(names: list[str], timestamps: FloatArray, values: FloatArray,
                   counts: IntArray, anomalies: list[Anomaly], step: float,
                   params: CorrelationParams, *, usable: BoolArray | None = None,
                   counters: BoolArray | None = None,
                   anomalous_since: dict[str, float] | None = None,
                   related_period: float = 240.0) -> list[list[RelatedMetric]]:
    """The related metrics of every anomaly, best first, from the candidates' points as the
    flat reader gives them (segment i is metric names[i]; every anomaly's metric among them).
    `counters`: rows known to be counters (MONOTONIC_METRIC_NAMESPACES), besides those that
    look like one; `anomalous_since`: metric -> start of its own open incident, to flag
    related metrics anomalous within `related_period` seconds of the anomaly."""
    if not anomalies:
        return []
    wanted = {a.metric for a in anomalies}
    row_of = {name: i for i, name in enumerate(names) if name in wanted}
    missing = [a.metric for a in anomalies if a.metric not in row_of]
    if missing:
        raise InvalidInput(f"anomalous metric not among the candidates: {missing[0]!r}")
    times = np.array([a.timestamp for a in anomalies])
    start, columns = window_columns(times, step, params)
    grid = resample(timestamps, values, counts, start, step, columns)
    is_counter = counter_rows(grid.values)
    if counters is not None:
        is_counter |= counters
    derive_counters(grid, is_counter)
    rows = np.array([row_of[a.metric] for a in anomalies], dtype=np.int64)
    cols = np.floor((times - start) / step + 0.5).astype(np.int64)
    corr = correlate(grid, rows, cols, params, usable=usable)
    since = anomalous_since or {}
    out: list[list[RelatedMetric]] = []
    for k, a in enumerate(anomalies):
        found = []
        for rank, r in enumerate(top_related(corr, k, params.top), start=1):
            name = names[r.row]
            own = since.get(name)
            found.append(RelatedMetric(
                metric=name, rank=rank, coefficient=r.coefficient,
                shifted_coefficient=r.shifted_coefficient, shift_seconds=r.lag * step,
                change=r.change, score=r.score,
                anomalous=own is not None and abs(own - a.timestamp) <= related_period))
        out.append(found)
    return out


def relate_flat(names: list[str], timestamps: FloatArray, values: FloatArray,
                counts: IntArray, anomaly: Anomaly, step: float, params: CorrelationParams,
                min_baseline: float) -> dict[str, tuple[float, float]]:
    """The grouping test (skyline.analysis.grouping): which of the other named metrics the
    anomaly's metric (names[0]) is correlated with in shape and moved together with before
    (`groupable`): name -> (shifted coefficient, shift in seconds)."""
    if not names or names[0] != anomaly.metric:
        raise InvalidInput("relate_flat: the anomaly's metric comes first")
    start, columns = window_columns(np.array([anomaly.timestamp]), step, params)
    grid = resample(timestamps, values, counts, start, step, columns)
    derive_counters(grid, counter_rows(grid.values))
    col = int(np.floor((anomaly.timestamp - start) / step + 0.5))
    corr = correlate(grid, np.array([0]), np.array([col]), params)
    return {names[k]: (float(corr.shifted_coefficient[0, k]), float(corr.lag[0, k]) * step)
            for k in np.flatnonzero(groupable(corr, min_baseline)[0])}


def resolution(timestamps: FloatArray) -> float | None:
    """A series' step: the median gap between its points (None with fewer than two)."""
    if len(timestamps) < 2:
        return None
    gaps = np.diff(np.sort(timestamps))
    gaps = gaps[gaps > 0]
    return float(np.median(gaps)) if len(gaps) else None
