"""grubbs: the tail's z-score exceeds the Grubbs critical value for N points at alpha 0.05.

    T = t.isf(alpha / (2N), N - 2);  G = (N - 1) / sqrt(N) * sqrt(T^2 / (N - 2 + T^2))

Two-sided by default: upstream compared the signed z-score (high values only) against the
critical value of the two-sided test, so a drop could never fire; every other algorithm here
is two-sided. `two_sided=False` restores upstream's behaviour. Spread ddof=1 (earthgecko).
A zero spread leaves z undefined: no opinion (earthgecko: False).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from skyline.algorithms import kernels as K
from skyline.algorithms.base import BaseAlgorithm, IntArray, Opinions, fmt, verdicts
from skyline.algorithms.batch import Batch
from skyline.core.types import FloatArray


def grubbs_critical(n: IntArray, alpha: float = 0.05) -> FloatArray:
    """G for each N (NaN where N < 3); scipy is called once per distinct N."""
    out = np.full(n.shape, np.nan)
    ok = n >= 3
    if not ok.any():
        return out
    uniq, inverse = np.unique(n[ok], return_inverse=True)
    nf = uniq.astype(np.float64)
    tcrit = stats.t.isf(alpha / (2 * nf), nf - 2)
    t2 = tcrit * tcrit
    g = ((nf - 1) / np.sqrt(nf)) * np.sqrt(t2 / (nf - 2 + t2))
    out[ok] = g[inverse]
    return out


@dataclass(frozen=True)
class Grubbs(BaseAlgorithm):
    alpha: float = 0.05
    two_sided: bool = True

    name = "grubbs"
    context_keys = ("tail", "mean", "std")

    def run(self, batch: Batch) -> Opinions:
        tail, mean, std = K.tail(batch), K.mean(batch), K.std1(batch)
        g = grubbs_critical(batch.counts, self.alpha)
        with np.errstate(invalid="ignore", divide="ignore"):
            z = (tail - mean) / std
        has = (batch.counts >= 3) & (std > 0) & np.isfinite(z) & np.isfinite(g)
        stat = np.abs(z) if self.two_sided else z
        fired = stat > g
        stat = np.where(has, stat, np.nan)
        g = np.where(has, g, np.nan)
        ctx = {"tail": K.unscale(batch, tail), "mean": K.unscale(batch, mean),
               "std": K.unscale(batch, std)}
        with np.errstate(invalid="ignore", divide="ignore"):
            return Opinions(verdicts(fired, has), stat, g, stat / g, ctx)

    def abstain_reason(self, opinions: Opinions, i: int) -> str:
        return "fewer than 3 points or zero spread (z-score undefined)"

    def explain(self, opinions: Opinions, i: int) -> str:
        side = "two-sided" if self.two_sided else "high side only"
        return (f"tail {fmt(self.ctx(opinions, 'tail', i))} has z-score "
                f"{fmt(float(opinions.statistic[i]))} ({side}) against mean "
                f"{fmt(self.ctx(opinions, 'mean', i))}, sigma {fmt(self.ctx(opinions, 'std', i))}; "
                f"limit: Grubbs critical value {fmt(float(opinions.limit[i]))} at alpha "
                f"{fmt(self.alpha)}")
