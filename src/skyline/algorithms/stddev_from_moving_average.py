"""stddev_from_moving_average: the last value is more than 3 exponentially weighted standard
deviations from the exponentially weighted moving average (com 50, pandas adjust=True,
bias=False). Upstream compares the last value, not the tail, despite its docstring; kept.

Only the last EWMA value is needed, and with adjust=True that is a plain weighted mean with
weights (1 - alpha)**age. Rows are right-aligned, so one weight vector serves every row: the
whole batch is two weighted row sums, not a recursive filter stepped point by point. Rows where
E[x^2] - E[x]^2 would cancel (spread tiny next to the level) are redone two-pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from skyline.algorithms import kernels as K
from skyline.algorithms.base import BaseAlgorithm, Opinions, fmt
from skyline.algorithms.batch import Batch
from skyline.algorithms.sigma import sigma_test


@dataclass(frozen=True)
class StddevFromMovingAverage(BaseAlgorithm):
    sigma: float = 3.0
    com: float = 50.0

    name = "stddev_from_moving_average"
    context_keys = ("last", "ewma", "ewmstd")

    def run(self, batch: Batch) -> Opinions:
        w_count = batch.width
        beta = self.com / (1.0 + self.com)
        ages = np.arange(w_count - 1, -1, -1, dtype=np.float64)
        w = beta**ages
        # sums of the weights of the last n points, for every n
        sum_w = np.concatenate(([0.0], np.cumsum(w[::-1])))[batch.counts]
        sum_w2 = np.concatenate(([0.0], np.cumsum((w * w)[::-1])))[batch.counts]
        c = K.centered0(batch)
        with np.errstate(invalid="ignore", divide="ignore"):
            ewma_c = np.einsum("ij,j->i", c, w) / sum_w
            second = np.einsum("ij,ij,j->i", c, c, w) / sum_w
            biased = second - ewma_c * ewma_c
            risky = np.flatnonzero(~(biased > 1e-6 * second))
            if len(risky):
                # the one-pass form cancels when the spread is tiny next to the level: two-pass
                d = c[risky] - ewma_c[risky, None]
                if not batch.full:
                    d = np.where(batch.valid[risky], d, 0.0)
                biased[risky] = np.einsum("ij,ij,j->i", d, d, w) / sum_w[risky]
            denom = sum_w * sum_w - sum_w2
            var = np.where(denom > 0, biased * (sum_w * sum_w) / denom, np.nan)
            std = np.sqrt(np.maximum(var, 0.0))
        std = np.where(K.constant(batch), 0.0, std)
        last_c = c[:, -1] if w_count else np.full(batch.size, np.nan)
        distance = np.abs(last_c - ewma_c)
        mean = K.mean(batch)
        ctx = {"last": K.unscale(batch, K.last(batch)), "ewma": K.unscale(batch, ewma_c + mean),
               "ewmstd": K.unscale(batch, std)}
        return sigma_test(distance, std, self.sigma, batch.counts >= 2, ctx)

    def abstain_reason(self, opinions: Opinions, i: int) -> str:
        return "fewer than 2 points"

    def explain(self, opinions: Opinions, i: int) -> str:
        return (f"last value {fmt(self.ctx(opinions, 'last', i))} is "
                f"{fmt(float(opinions.statistic[i]))} EW sigma from EWMA "
                f"{fmt(self.ctx(opinions, 'ewma', i))} (EW sigma "
                f"{fmt(self.ctx(opinions, 'ewmstd', i))}, com {fmt(self.com)}); "
                f"limit {fmt(self.sigma)}")
