"""abs_stddev_from_median: the last value is more than 3 standard deviations from the median.

earthgecko's sample custom algorithm of that name, made a vectorised built-in: upstream fires
when the last value lies outside median +- 3 * std (pandas: sample std, ddof=1), i.e. when
|x[-1] - median(x)| > 3 std(x). The median resists the outliers the mean would follow; the
spread is still the standard deviation (median_absolute_deviation is the one that uses the MAD).

The median is the memoised one median_absolute_deviation computes, so running both costs one
selection per row, not two. A zero spread follows the sigma rule of the four 3-sigma tests: a
constant series is normal; fewer than 2 points have no spread and abstain.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from skyline.algorithms import kernels as K
from skyline.algorithms.base import BaseAlgorithm, Opinions, fmt
from skyline.algorithms.batch import Batch
from skyline.algorithms.mad_kernel import median
from skyline.algorithms.sigma import sigma_test


@dataclass(frozen=True)
class AbsStddevFromMedian(BaseAlgorithm):
    sigma: float = 3.0

    name = "abs_stddev_from_median"
    context_keys = ("last", "median", "std")

    def run(self, batch: Batch) -> Opinions:
        last, med, std = K.last(batch), median(batch), K.std1(batch)
        distance = np.abs(last - med)
        ctx = {"last": K.unscale(batch, last), "median": K.unscale(batch, med),
               "std": K.unscale(batch, std)}
        return sigma_test(distance, std, self.sigma, batch.counts >= 2, ctx)

    def abstain_reason(self, opinions: Opinions, i: int) -> str:
        return "fewer than 2 points"

    def explain(self, opinions: Opinions, i: int) -> str:
        return (f"last value {fmt(self.ctx(opinions, 'last', i))} is "
                f"{fmt(float(opinions.statistic[i]))} sigma from median "
                f"{fmt(self.ctx(opinions, 'median', i))} (sigma {fmt(self.ctx(opinions, 'std', i))}); "
                f"limit {fmt(self.sigma)}")
