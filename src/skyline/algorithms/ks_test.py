"""ks_test: the distribution of the latest points differs from the one just before them
(two-sample Kolmogorov-Smirnov: p < 0.05 and D > 0.5), and the earlier stretch is stationary
(augmented Dickey-Fuller, maxlag 10, p < 0.05), which guards against trends.

Windows fixed: upstream took the last 10 minutes as the probe and the 50 minutes before as the
reference, by the wall clock, and required 20 points in each, so it could never fire on data
coarser than 30 s. Both windows are now anchored on the series' own last point and sized in
points: the last 20 points (probe) against the 100 before them (reference), i.e. 20 and 100
minutes at the 60 s analysis resolution; the 1:5 ratio is upstream's 10:50 minutes.

Vectorised: D for every row from one sort of the two windows side by side. Only rows with
D > 0.5 go on: the p-value comes from scipy once per distinct (n1, n2, D) (a Python loop over
those candidate rows, which are few), and the ADF test runs batched over the rows whose KS
test fired (adf.py reproduces statsmodels' adfuller).
A constant reference leaves ADF undefined: no opinion (earthgecko: False). So does an ADF that
raises.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy import stats

from skyline.algorithms import kernels as K
from skyline.algorithms.adf import adf_pvalues
from skyline.algorithms.base import BaseAlgorithm, IntArray, Opinions, fmt, verdicts
from skyline.algorithms.batch import Batch
from skyline.core.types import FloatArray

_P_CACHE: dict[tuple[int, int, float], float] = {}
_P_CACHE_MAX = 4096


def _ks_pvalue(ref: FloatArray, probe: FloatArray, d: float) -> float:
    """scipy's two-sided p-value. It depends only on (n1, n2, D) (exact method, or asymptotic
    for large samples), so it is computed once per distinct triple: candidate rows share few."""
    key = (len(ref), len(probe), d)
    p = _P_CACHE.get(key)
    if p is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                p = float(stats.ks_2samp(ref, probe).pvalue)
            except (ValueError, ArithmeticError):
                p = float("nan")
        if len(_P_CACHE) >= _P_CACHE_MAX:
            _P_CACHE.clear()
        _P_CACHE[key] = p
    return p


def ks_statistic(ref: FloatArray, probe: FloatArray, n_ref: IntArray,
                 n_probe: IntArray) -> FloatArray:
    """Two-sample KS D per row; NaN marks padding in either window. Same arithmetic as
    scipy.stats.ks_2samp: CDFs as count / n, evaluated after each run of tied values."""
    both = np.concatenate([ref, probe], axis=1)
    is_probe = np.zeros(both.shape[1], dtype=bool)
    is_probe[ref.shape[1]:] = True
    order = np.argsort(both, axis=1, kind="stable")  # NaN padding sorts last
    vals = np.take_along_axis(both, order, axis=1)
    lab = is_probe[order]
    valid = ~np.isnan(vals)
    cum_p = np.cumsum(lab & valid, axis=1)
    cum_r = np.cumsum(~lab & valid, axis=1)
    end_of_run = np.ones_like(valid)
    end_of_run[:, :-1] = vals[:, :-1] != vals[:, 1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        diff = cum_r / n_ref[:, None].astype(np.float64) - cum_p / n_probe[:, None].astype(np.float64)
    diff = np.where(valid & end_of_run, np.abs(diff), 0.0)
    return diff.max(axis=1, initial=0.0)


@dataclass(frozen=True)
class KsTest(BaseAlgorithm):
    probe_points: int = 20
    reference_points: int = 100
    min_points: int = 20
    max_p: float = 0.05
    min_d: float = 0.5
    adf_maxlag: int = 10
    adf_max_p: float = 0.05

    name = "ks_test"
    context_keys = ("p", "adf_p", "n_reference", "n_probe", "constant_reference")

    def run(self, batch: Batch) -> Opinions:
        w = batch.width
        x = K.work(batch)
        p_cols = min(self.probe_points, w)
        r_lo = max(0, w - p_cols - self.reference_points)
        probe = x[:, w - p_cols:]
        ref = x[:, r_lo:w - p_cols]
        n_probe = np.minimum(batch.counts, p_cols)
        n_ref = np.clip(batch.counts - p_cols, 0, ref.shape[1])
        has = (n_probe >= self.min_points) & (n_ref >= self.min_points)
        if ref.shape[1]:
            const_ref = np.fmin.reduce(ref, axis=1) == np.fmax.reduce(ref, axis=1)
        else:
            const_ref = np.ones(batch.size, dtype=bool)
        has &= ~const_ref
        d = np.where(has, ks_statistic(ref, probe, n_ref, n_probe), np.nan)
        fired = np.zeros(batch.size, dtype=bool)
        p_val = np.full(batch.size, np.nan)
        adf_p = np.full(batch.size, np.nan)
        candidates = np.flatnonzero(has & (d > self.min_d))
        for i in candidates:
            p_val[i] = _ks_pvalue(ref[i, ref.shape[1] - n_ref[i]:],
                                  probe[i, p_cols - n_probe[i]:], float(d[i]))
        confirm = candidates[p_val[candidates] < self.max_p]
        for length in np.unique(n_ref[confirm]):
            rows = confirm[n_ref[confirm] == length]
            adf_p[rows] = adf_pvalues(ref[rows, ref.shape[1] - length:], self.adf_maxlag)
        has[candidates[~np.isfinite(p_val[candidates])]] = False
        has[confirm[~np.isfinite(adf_p[confirm])]] = False
        fired[confirm] = adf_p[confirm] < self.adf_max_p
        ctx = {"p": p_val, "adf_p": adf_p, "n_reference": n_ref.astype(np.float64),
               "n_probe": n_probe.astype(np.float64), "constant_reference": const_ref * 1.0}
        d = np.where(has, d, np.nan)
        return Opinions(verdicts(fired, has), d, np.where(has, self.min_d, np.nan),
                        d / self.min_d, ctx)

    def abstain_reason(self, opinions: Opinions, i: int) -> str:
        if self.ctx(opinions, "constant_reference", i) and \
                self.ctx(opinions, "n_reference", i) >= self.min_points:
            return "the reference window is constant (stationarity test undefined)"
        n_ref, n_probe = int(self.ctx(opinions, "n_reference", i)), int(self.ctx(opinions, "n_probe", i))
        if n_ref < self.min_points or n_probe < self.min_points:
            return (f"needs {self.min_points} points in each window, has {n_ref} reference "
                    f"and {n_probe} probe")
        return "the KS or ADF test could not be computed"

    def explain(self, opinions: Opinions, i: int) -> str:
        text = (f"last {int(self.ctx(opinions, 'n_probe', i))} points against the "
                f"{int(self.ctx(opinions, 'n_reference', i))} before: KS D "
                f"{fmt(float(opinions.statistic[i]))}")
        p, adf = self.ctx(opinions, "p", i), self.ctx(opinions, "adf_p", i)
        if not np.isnan(p):
            text += f" (p {fmt(p)})"
        if not np.isnan(adf):
            text += f", reference ADF p {fmt(adf)}"
        return (text + f"; limit D > {fmt(self.min_d)}, p < {fmt(self.max_p)}, "
                f"ADF p < {fmt(self.adf_max_p)}")
