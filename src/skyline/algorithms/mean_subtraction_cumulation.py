"""mean_subtraction_cumulation: after subtracting the mean of all but the last point, the last
point is more than 3 sigma (of the earlier points) from zero.

Upstream replaced missing values by 0 first; batches carry no missing values (preparation drops
non-finite points), so that step has nothing to do. Upstream's numba variant used ddof=0, its
pandas variant ddof=1; we use ddof=1 like every other spread here (earthgecko's stated choice of
the sample standard deviation).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from skyline.algorithms import kernels as K
from skyline.algorithms.base import BaseAlgorithm, Opinions, fmt
from skyline.algorithms.batch import Batch
from skyline.algorithms.sigma import sigma_test


@dataclass(frozen=True)
class MeanSubtractionCumulation(BaseAlgorithm):
    sigma: float = 3.0

    name = "mean_subtraction_cumulation"
    context_keys = ("last", "mean", "std")

    def run(self, batch: Batch) -> Opinions:
        n = K.counts_f(batch)
        head = K.work0(batch)[:, :-1]
        with np.errstate(invalid="ignore", divide="ignore"):
            head_mean = head.sum(axis=1) / (n - 1)
            # the whole row constant implies the head is: keep its mean exact too
            head_mean = np.where(K.constant(batch), K.vmin(batch), head_mean)
            c = head - head_mean[:, None]
            if not batch.full:
                c = np.where(batch.valid[:, :-1], c, 0.0)
            head_m2 = np.where(K.constant(batch), 0.0, np.einsum("ij,ij->i", c, c))
            std = np.where(n > 2, np.sqrt(head_m2 / (n - 2)), np.nan)
        last = K.last(batch)
        distance = np.abs(last - head_mean)
        ctx = {"last": K.unscale(batch, last), "mean": K.unscale(batch, head_mean),
               "std": K.unscale(batch, std)}
        return sigma_test(distance, std, self.sigma, batch.counts >= 3, ctx)

    def abstain_reason(self, opinions: Opinions, i: int) -> str:
        return "fewer than 3 points"

    def explain(self, opinions: Opinions, i: int) -> str:
        return (f"last value {fmt(self.ctx(opinions, 'last', i))} is "
                f"{fmt(float(opinions.statistic[i]))} sigma from mean "
                f"{fmt(self.ctx(opinions, 'mean', i))} of the earlier points "
                f"(sigma {fmt(self.ctx(opinions, 'std', i))}); limit {fmt(self.sigma)}")
