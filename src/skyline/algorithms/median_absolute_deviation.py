"""median_absolute_deviation: the last value's distance from the median is more than 6 times
the median absolute deviation (MAD).

A zero MAD makes the statistic undefined (upstream: "we play it safe and skip"): no opinion.
Etsy returned an implicit None when not anomalous, which its consensus rule then counted
towards an anomaly (etsy/skyline#101); here not anomalous is plainly False.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from skyline.algorithms import kernels as K
from skyline.algorithms.base import BaseAlgorithm, Opinions, fmt, verdicts
from skyline.algorithms.batch import Batch
from skyline.algorithms.mad_kernel import mad_decision


@dataclass(frozen=True)
class MedianAbsoluteDeviation(BaseAlgorithm):
    threshold: float = 6.0

    name = "median_absolute_deviation"
    context_keys = ("last", "median", "mad")

    def run(self, batch: Batch) -> Opinions:
        med, mad, stat = mad_decision(batch, self.threshold)
        has = (batch.counts > 0) & (mad > 0) & np.isfinite(stat)
        fired = stat > self.threshold
        stat = np.where(has, stat, np.nan)
        ctx = {"last": K.unscale(batch, K.last(batch)), "median": K.unscale(batch, med),
               "mad": K.unscale(batch, mad)}
        return Opinions(verdicts(fired, has), stat, np.where(has, self.threshold, np.nan),
                        stat / self.threshold, ctx)

    def abstain_reason(self, opinions: Opinions, i: int) -> str:
        return "the median absolute deviation is 0 (at least half the points equal the median)"

    def explain(self, opinions: Opinions, i: int) -> str:
        return (f"last value {fmt(self.ctx(opinions, 'last', i))} deviates "
                f"{fmt(float(opinions.statistic[i]))} MADs from median "
                f"{fmt(self.ctx(opinions, 'median', i))} (MAD {fmt(self.ctx(opinions, 'mad', i))}); "
                f"limit {fmt(self.threshold)}")
