"""range_excess: how far the newest points break out of what the window had already shown, as
a continuous anomaly score. The analyzer's default detector (AnalysisParams.detector "score").

Each of the last `tail` points (3: a run may find a few new points) is judged against the
points before it, and the most anomalous speaks for the window. Two breakouts, each measured
in standard deviations so that metrics of any scale share one threshold:

- level: the distance of the point beyond the range [min, max] of the earlier points, over
  their standard deviation (0 while it stays inside the range);
- step: the amount by which its step |x[i] - x[i-1]| exceeds the largest earlier step,
  over the standard deviation of the earlier steps (0 unless it is the largest step of the
  window).

The statistic is the larger of the two (sigmas); the anomaly score maps it to [0, 1) as
z / (1 + z), so it ranks exactly like z and never saturates short of an infinite z (a breakout
from a window with no spread at all scores 1). The verdict is score >= threshold.

Why these and not a sigma test around the mean: only a point that is new in the window can be
an anomaly the window did not already contain, so the score is 0 most of the time instead of
hovering near a limit, and a metric whose ordinary day holds spikes of 4 sigma needs a bigger
one to score. A level shift shows as a step, a spike as a level, a slow drift as neither
until it leaves the window's range. Scored on the NAB corpus (docs/benchmarks.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from skyline.algorithms import kernels as K
from skyline.algorithms.base import BaseAlgorithm, BoolArray, IntArray, Opinions, fmt, verdicts
from skyline.algorithms.batch import Batch
from skyline.core.errors import InvalidInput
from skyline.core.types import FloatArray

MIN_EARLIER = 3  # earlier points: two steps to take a spread of
DEFAULT_TAIL = 3  # upstream's tail: the analyzer may see a few new points per run
DEFAULT_THRESHOLD = 0.7063  # NAB standard profile, nab-dev (docs/benchmarks.md)


def to_score(z: FloatArray) -> FloatArray:
    """Sigmas of breakout -> anomaly score in [0, 1]: z / (1 + z), inf -> 1, NaN -> 0."""
    z = np.nan_to_num(np.asarray(z, dtype=np.float64), nan=0.0)
    with np.errstate(invalid="ignore"):
        s = np.where(np.isinf(z), 1.0, z / (1.0 + z))
    return np.asarray(np.maximum(s, 0.0), dtype=np.float64)


def to_sigmas(score: float) -> float:
    """The inverse of to_score for one threshold (1 -> inf)."""
    return float("inf") if score >= 1 else score / (1.0 - score)


def _excess(beyond: FloatArray, spread: FloatArray) -> FloatArray:
    """beyond / spread for beyond >= 0, with 0/0 = 0 and x/0 = inf (a breakout from a flat
    window is as large as it gets)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        z = beyond / spread
    return np.where(beyond <= 0, 0.0, np.where(spread > 0, z, np.inf))


class _Stats:
    """Per row: count, max, min, mean and sum of squared deviations of a NaN-padded block of
    columns (two passes), then grown one column at a time (Welford's update), so the tail's
    points are each judged against their own earlier points for the price of one pass."""

    def __init__(self, x: FloatArray, full: bool) -> None:
        """full: no row has padding (the batch's flag: saves the NaN masks)."""
        valid = None if full else ~np.isnan(x)
        self.n = (np.full(x.shape[0], float(x.shape[1])) if valid is None
                  else valid.sum(axis=1) * 1.0)
        self.high = np.fmax.reduce(x, axis=1)
        self.low = np.fmin.reduce(x, axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            self.mean = (x if valid is None else np.where(valid, x, 0.0)).sum(axis=1) / self.n
            c = x - self.mean[:, None]
            if valid is not None:
                c[~valid] = 0.0
            self.m2 = np.einsum("ij,ij->i", c, c)

    def std(self) -> FloatArray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.asarray(np.where(self.n >= 2, np.sqrt(self.m2 / (self.n - 1)), np.nan),
                              dtype=np.float64)

    def add(self, y: FloatArray) -> None:
        ok = ~np.isnan(y)
        n1 = self.n + ok
        with np.errstate(invalid="ignore", divide="ignore"):
            d = np.where(ok, y - self.mean, 0.0)
            mean1 = np.where(ok, self.mean + d / n1, self.mean)
            self.m2 = np.where(ok, self.m2 + d * (y - mean1), self.m2)
        self.mean, self.n = mean1, n1
        self.high = np.fmax(self.high, y)
        self.low = np.fmin(self.low, y)


def _columns(v: FloatArray, counts: IntArray, tail: int,
             full: bool = False) -> list[dict[str, FloatArray]]:
    """The breakouts of each of the last `tail` columns (oldest first), each from the columns
    before it, for rows right-aligned in v holding counts points; z is NaN for a point with
    fewer than MIN_EARLIER points before it."""
    w = v.shape[1]
    k = min(tail, w - MIN_EARLIER)
    steps = np.abs(np.diff(v, axis=1))  # the first valid column is NaN - x = NaN
    level = _Stats(v[:, :w - k], full)
    jumps = _Stats(steps[:, :w - k - 1], full)
    out: list[dict[str, FloatArray]] = []
    for c in range(w - k, w):
        last, step = v[:, c], steps[:, c - 1]
        std, step_std = level.std(), jumps.std()
        level_z = _excess(np.maximum(last - level.high, level.low - last), std)
        step_z = _excess(step - jumps.high, step_std)
        has = counts - (w - 1 - c) >= 1 + MIN_EARLIER
        out.append({"z": np.where(has, np.maximum(level_z, step_z), np.nan), "last": last,
                    "low": level.low, "high": level.high, "std": std, "step": step,
                    "max_step": jumps.high, "level_z": level_z, "step_z": step_z})
        level.add(last)
        jumps.add(step)
    return out


def _breakouts(v: FloatArray, counts: IntArray, tail: int,
               full: bool = False) -> dict[str, FloatArray]:
    """The most anomalous of the last `tail` columns' breakouts."""
    best: dict[str, FloatArray] = {}
    for part in _columns(v, counts, tail, full):
        if not best:
            best = part
        else:
            better = part["z"] > best["z"]
            best = {key: np.where(better, part[key], best[key]) for key in best}
    return best


@dataclass(frozen=True)
class RangeExcess(BaseAlgorithm):
    threshold: float = DEFAULT_THRESHOLD  # on the anomaly score, in (0, 1]
    tail: int = DEFAULT_TAIL  # the newest points judged against the ones before them

    name = "range_excess"
    context_keys = ("last", "low", "high", "std", "step", "max_step", "level_z", "step_z",
                    "score")

    def __post_init__(self) -> None:
        if not 0 < self.threshold <= 1:
            raise InvalidInput(f"range_excess threshold {self.threshold} must be in (0, 1]")
        if self.tail < 1:
            raise InvalidInput(f"range_excess tail {self.tail} must be at least 1")

    def run(self, batch: Batch) -> Opinions:
        if batch.width < 1 + MIN_EARLIER:
            return self._none(batch)
        best = _breakouts(K.work(batch), batch.counts, self.tail, batch.full)
        return self._opinions(batch, best, batch.counts >= 1 + MIN_EARLIER)

    def run_columns(self, batch: Batch, tail: int) -> list[Opinions]:
        """Each of the last `tail` points judged against the points before it (oldest
        first; fewer when the batch is narrower): one Opinions per point, where run() keeps
        only the most anomalous. The pipeline judges every new point this way."""
        if batch.width < 1 + MIN_EARLIER:
            return [self._none(batch)]
        cols = _columns(K.work(batch), batch.counts, tail, batch.full)
        k = len(cols)
        # column j is k - 1 - j points before the newest: it needs as many more points
        return [self._opinions(batch, part, batch.counts - (k - 1 - j) >= 1 + MIN_EARLIER)
                for j, part in enumerate(cols)]

    def _none(self, batch: Batch) -> Opinions:
        m = batch.size
        nan = np.full(m, np.nan)
        ctx = {key: nan.copy() for key in self.context_keys}
        return Opinions(verdicts(np.zeros(m, dtype=bool), np.zeros(m, dtype=bool)), nan,
                        nan.copy(), nan.copy(), ctx)

    def _opinions(self, batch: Batch, best: dict[str, FloatArray], has: BoolArray
                  ) -> Opinions:
        z = np.where(has, best["z"], np.nan)
        score = np.where(has, to_score(z), np.nan)
        fired = score >= self.threshold
        limit = to_sigmas(self.threshold)
        with np.errstate(invalid="ignore", divide="ignore"):
            severity = z / limit if np.isfinite(limit) else np.where(np.isinf(z), 1.0, 0.0)
        ctx = {key: K.unscale(batch, best[key]) for key in
               ("last", "low", "high", "std", "step", "max_step")}
        ctx.update(level_z=best["level_z"], step_z=best["step_z"], score=score)
        return Opinions(verdicts(fired, has), z, np.where(has, limit, np.nan),
                        np.where(has, severity, np.nan), ctx)

    def abstain_reason(self, opinions: Opinions, i: int) -> str:
        return f"fewer than {1 + MIN_EARLIER} points"

    def explain(self, opinions: Opinions, i: int) -> str:
        # the statistic and limit columns are sigmas, so the text leads with sigmas too; a
        # flat earlier range has no sigma to count in, and says so instead of "inf sigma"
        c = lambda key: self.ctx(opinions, key, i)  # noqa: E731
        earlier = f"[{fmt(c('low'))}, {fmt(c('high'))}]"
        if math.isfinite(c("level_z")):
            level = (f"value {fmt(c('last'))} is {fmt(c('level_z'))} sigma beyond the earlier "
                     f"range {earlier} (limit {fmt(to_sigmas(self.threshold))} sigma; "
                     f"sigma {fmt(c('std'))})")
        else:
            level = (f"value {fmt(c('last'))} left the earlier range {earlier}, which never "
                     "moved (a flat series: any change is beyond it)")
        if math.isfinite(c("step_z")):
            step = (f"its step {fmt(c('step'))} is {fmt(c('step_z'))} step-sigma beyond the "
                    f"largest earlier step {fmt(c('max_step'))}")
        else:
            step = (f"its step {fmt(c('step'))} is larger than any earlier step "
                    f"(largest {fmt(c('max_step'))})")
        return f"{level}; {step}; anomaly score {fmt(c('score'))} (limit {fmt(self.threshold)})"
