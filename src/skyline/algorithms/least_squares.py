"""least_squares: fit value = m * t + c by least squares; anomalous when the mean of the last
three residuals is more than 3 residual standard deviations (ddof=1, earthgecko) from zero,
and both that mean and that deviation round to a non-zero number in the metric's units.

Defect fixed: upstream ran numpy.linalg.lstsq on raw Unix timestamps (~1.7e9) next to a column
of ones. That system is so ill-conditioned that the fitted slope comes out near zero whatever
the data (a series rising 0.015 per second was fitted with slope 1.2e-9), so upstream's
"residuals" were mostly the series minus a constant. The fit is now solved in closed form on
row-centred timestamps and values: the actual least-squares line. The residual spread comes
from the fit's sums (four passes over the batch instead of eight); rows where that shortcut
would cancel (a near-perfect linear fit) get their residuals formed explicitly. Fewer than 3 points
gives no opinion (upstream: False).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from skyline.algorithms import kernels as K
from skyline.algorithms.base import BaseAlgorithm, Opinions, fmt, verdicts
from skyline.algorithms.batch import Batch


@dataclass(frozen=True)
class LeastSquares(BaseAlgorithm):
    sigma: float = 3.0

    name = "least_squares"
    context_keys = ("residual", "std", "slope")

    def run(self, batch: Batch) -> Opinions:
        n = K.counts_f(batch)
        has = batch.counts >= 3
        if batch.width < 3:
            return Opinions.abstain(batch.size)
        c = K.centered0(batch)
        with np.errstate(invalid="ignore", divide="ignore"):
            # t - t_last is exact (both within a factor 2 of each other), and small enough
            # that the shortcut sums below lose nothing to cancellation
            ts = batch.timestamps - batch.timestamps[:, -1:]
            if not batch.full:
                ts = np.where(batch.valid, ts, 0.0)
            s_t = ts.sum(axis=1)
            stt = np.einsum("ij,ij->i", ts, ts) - s_t * s_t / n
            stc = np.einsum("ij,ij->i", ts, c) - s_t * c.sum(axis=1) / n
            slope = np.where(stt > 0, stc / stt, 0.0)
            t_mean = s_t / n
            # residual sum of squares without forming the residuals: m2 - slope * stc
            e_m2 = K.m2(batch) - slope * stc
            tail_t = ts[:, -3:] - t_mean[:, None]
            e_tail = c[:, -3:] - slope[:, None] * tail_t
        risky = np.flatnonzero(e_m2 <= 1e-6 * K.m2(batch))
        if len(risky):
            # a near-perfect fit: the shortcut cancels, form the residuals for those rows
            tc = ts[risky] - t_mean[risky, None]
            if not batch.full:
                tc = np.where(batch.valid[risky], tc, 0.0)
            e = c[risky] - slope[risky, None] * tc
            e_m2[risky] = np.einsum("ij,ij->i", e, e) - e.sum(axis=1) ** 2 / n[risky]
        with np.errstate(invalid="ignore", divide="ignore"):
            std = np.sqrt(np.maximum(e_m2, 0.0) / (n - 1))
            tail = (e_tail[:, 2] + e_tail[:, 1] + e_tail[:, 0]) / 3
            stat = np.where(tail == 0, 0.0, np.abs(tail) / std)
        std = np.where(K.constant(batch), 0.0, std)
        tail = np.where(K.constant(batch), 0.0, tail)
        std_raw = K.unscale(batch, std)
        tail_raw = K.unscale(batch, tail)
        # Python's round(x) != 0 exactly when |x| > 0.5 (round half to even)
        fired = ((np.abs(tail) > self.sigma * std) & (np.abs(std_raw) > 0.5)
                 & (np.abs(tail_raw) > 0.5))
        has = has & np.isfinite(std) & np.isfinite(tail)
        stat = np.where(has, stat, np.nan)
        ctx = {"residual": tail_raw, "std": std_raw,
               "slope": K.unscale(batch, slope)}
        return Opinions(verdicts(fired, has), stat, np.where(has, self.sigma, np.nan),
                        stat / self.sigma, ctx)

    def abstain_reason(self, opinions: Opinions, i: int) -> str:
        return "fewer than 3 points"

    def explain(self, opinions: Opinions, i: int) -> str:
        text = (f"mean of the last 3 residuals {fmt(self.ctx(opinions, 'residual', i))} is "
                f"{fmt(float(opinions.statistic[i]))} sigma of the residuals "
                f"({fmt(self.ctx(opinions, 'std', i))}) from the linear fit; "
                f"limit {fmt(self.sigma)}")
        if abs(self.ctx(opinions, "std", i)) <= 0.5 or abs(self.ctx(opinions, "residual", i)) <= 0.5:
            text += " (not counted: residual or its sigma rounds to 0)"
        return text
