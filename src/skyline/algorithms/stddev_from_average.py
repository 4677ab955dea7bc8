"""stddev_from_average: the tail is more than 3 sigma from the mean of the whole window."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from skyline.algorithms import kernels as K
from skyline.algorithms.base import BaseAlgorithm, Opinions, fmt
from skyline.algorithms.batch import Batch
from skyline.algorithms.sigma import sigma_test


@dataclass(frozen=True)
class StddevFromAverage(BaseAlgorithm):
    sigma: float = 3.0

    name = "stddev_from_average"
    context_keys = ("tail", "mean", "std")

    def run(self, batch: Batch) -> Opinions:
        tail, mean, std = K.tail(batch), K.mean(batch), K.std1(batch)
        distance = np.abs(tail - mean)
        ctx = {"tail": K.unscale(batch, tail), "mean": K.unscale(batch, mean),
               "std": K.unscale(batch, std)}
        return sigma_test(distance, std, self.sigma, batch.counts >= 2, ctx)

    def abstain_reason(self, opinions: Opinions, i: int) -> str:
        return "fewer than 2 points"

    def explain(self, opinions: Opinions, i: int) -> str:
        return (f"tail {fmt(self.ctx(opinions, 'tail', i))} is "
                f"{fmt(float(opinions.statistic[i]))} sigma from mean "
                f"{fmt(self.ctx(opinions, 'mean', i))} (sigma {fmt(self.ctx(opinions, 'std', i))}); "
                f"limit {fmt(self.sigma)}")
