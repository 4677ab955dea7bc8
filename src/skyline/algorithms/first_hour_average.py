"""first_hour_average: the tail is more than 3 sigma from the mean of the window's first hour.

The baseline is earthgecko's: points with  t_last - FULL_DURATION < t < t_last - FULL_DURATION
+ 3600, anchored on the series' own last timestamp (Etsy used the wall clock, which made the
result depend on when the analyzer happened to run). A baseline of fewer than two points (a
series younger than FULL_DURATION) gives no opinion instead of upstream's NaN-driven False.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from skyline.algorithms import kernels as K
from skyline.algorithms.base import BaseAlgorithm, Opinions, fmt
from skyline.algorithms.batch import Batch
from skyline.algorithms.sigma import sigma_test


@dataclass(frozen=True)
class FirstHourAverage(BaseAlgorithm):
    sigma: float = 3.0
    baseline_seconds: float = 3600.0

    name = "first_hour_average"
    context_keys = ("tail", "mean", "std", "points")

    def run(self, batch: Batch) -> Opinions:
        size = batch.size
        ts = batch.timestamps
        start = batch.start
        end = np.full(size, batch.width, dtype=np.int64)
        with np.errstate(invalid="ignore"):
            t_last = ts[:, -1] if batch.width else np.full(size, np.nan)
            lo_t = t_last - batch.full_duration
            lo = K.row_searchsorted(ts, lo_t, start, end, side="right")
            hi = K.row_searchsorted(ts, lo_t + self.baseline_seconds, start, end, side="left")
        hi = np.maximum(hi, lo)
        points = (hi - lo).astype(np.float64)
        span = int(hi.max()) if size else 0
        cols = np.arange(span)[None, :]
        inside = (cols >= lo[:, None]) & (cols < hi[:, None])
        x = K.work(batch)[:, :span]
        with np.errstate(invalid="ignore", divide="ignore"):
            base_mean = np.where(inside, x, 0.0).sum(axis=1) / points
            c = np.where(inside, x - base_mean[:, None], 0.0)
            base_std = np.sqrt(np.einsum("ij,ij->i", c, c) / (points - 1))
        # a constant baseline: exact mean and zero spread (see kernels on summation residue)
        bmin = np.where(inside, x, np.inf).min(axis=1, initial=np.inf)
        bmax = np.where(inside, x, -np.inf).max(axis=1, initial=-np.inf)
        const = (bmin == bmax) & (points > 0)
        base_mean = np.where(const, bmin, base_mean)
        base_std = np.where(const & (points > 1), 0.0, base_std)
        tail = K.tail(batch)
        distance = np.abs(tail - base_mean)
        ctx = {"tail": K.unscale(batch, tail), "mean": K.unscale(batch, base_mean),
               "std": K.unscale(batch, base_std), "points": points}
        return sigma_test(distance, base_std, self.sigma, points >= 2, ctx)

    def abstain_reason(self, opinions: Opinions, i: int) -> str:
        n = int(self.ctx(opinions, "points", i))
        return (f"the first hour of the window holds {n} point{'s' if n != 1 else ''} "
                "(the series is younger than FULL_DURATION or has a gap there)")

    def explain(self, opinions: Opinions, i: int) -> str:
        return (f"tail {fmt(self.ctx(opinions, 'tail', i))} is "
                f"{fmt(float(opinions.statistic[i]))} sigma from first-hour mean "
                f"{fmt(self.ctx(opinions, 'mean', i))} (sigma {fmt(self.ctx(opinions, 'std', i))}, "
                f"{int(self.ctx(opinions, 'points', i))} points); limit {fmt(self.sigma)}")
