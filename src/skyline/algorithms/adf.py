"""Augmented Dickey-Fuller p-values for many series at once, as statsmodels'
adfuller(x, maxlag, regression="c", autolag="AIC") computes them (3 ms a call there; a batch
of rows here costs a few QR factorisations).

For each row: regress diff(x) on [constant, lagged level, lag 1..maxlag of diff(x)] over the
common sample, keep the lag count with the smallest AIC (ties to fewer lags), refit that model
on its own full sample, and turn the t-value of the level into MacKinnon's approximate p-value.
Nested models share one QR: the residual sum of squares with the first k columns is the norm of
the residual with all of them plus the squares of Q'y beyond k.
"""

from __future__ import annotations

import numpy as np

from skyline.algorithms.base import IntArray
from skyline.core.types import FloatArray


def _lag_design(x: FloatArray, lags: int) -> tuple[FloatArray, FloatArray]:
    """(y, X) with X columns [constant, level, diff lags 1..lags] for every row of x (R, L)."""
    r, length = x.shape
    dx = np.diff(x, axis=1)
    nobs = length - 1 - lags
    y = dx[:, lags:]
    cols = [np.ones((r, nobs)), x[:, lags:length - 1]]
    cols += [dx[:, lags - j:length - 1 - j] for j in range(1, lags + 1)]
    return y, np.stack(cols, axis=2)


def _best_lags(x: FloatArray, maxlag: int) -> IntArray:
    y, design = _lag_design(x, maxlag)
    nobs = y.shape[1]
    q, _ = np.linalg.qr(design)
    qty = np.einsum("rnk,rn->rk", q, y)
    resid = y - np.einsum("rnk,rk->rn", q, qty)
    floor = np.einsum("rn,rn->r", resid, resid)
    # ssr with the first k columns = floor + sum of qty^2 over columns k.. (k = 2 + lags)
    tail_sq = np.cumsum((qty * qty)[:, ::-1], axis=1)[:, ::-1]
    k = np.arange(2, maxlag + 3)
    ssr = floor[:, None] + np.concatenate([tail_sq[:, 2:], np.zeros((len(x), 1))], axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        aic = nobs * (np.log(2 * np.pi) + np.log(ssr / nobs) + 1) + 2 * k[None, :]
    aic = np.where(np.isnan(aic), np.inf, aic)
    return np.argmin(aic, axis=1).astype(np.int64)  # first minimum: fewest lags on a tie


def _level_tvalue(x: FloatArray, lags: int) -> FloatArray:
    y, design = _lag_design(x, lags)
    nobs, k = y.shape[1], design.shape[2]
    q, rr = np.linalg.qr(design)
    qty = np.einsum("rnk,rn->rk", q, y)
    beta = np.linalg.solve(rr, qty[:, :, None])[:, :, 0]
    resid = y - np.einsum("rnk,rk->rn", design, beta)
    ssr = np.einsum("rn,rn->r", resid, resid)
    yc = y - y.mean(axis=1, keepdims=True)
    # a model that explains the differences exactly (a straight line, a constant step) or has
    # collinear columns has no error to test against: statsmodels still returns a p-value (0
    # for a straight line, and upstream fired); we abstain
    noise = nobs * (1e-9 * np.abs(y).max(axis=1)) ** 2  # residuals at rounding level
    diag = np.abs(np.diagonal(rr, axis1=1, axis2=2))
    collinear = diag.min(axis=1) <= 1e-10 * diag.max(axis=1)
    degenerate = (ssr <= 1e-12 * np.einsum("rn,rn->r", yc, yc)) | (ssr <= noise) | collinear
    sigma2 = ssr / (nobs - k)
    rinv = np.linalg.inv(rr)
    var_level = sigma2 * np.einsum("rk,rk->r", rinv[:, 1, :], rinv[:, 1, :])
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(degenerate, np.nan, beta[:, 1] / np.sqrt(var_level))


def _tvalues(x: FloatArray, maxlag: int) -> FloatArray:
    best = _best_lags(x, maxlag)
    tvals = np.full(len(x), np.nan)
    for lags in np.unique(best):
        rows = np.flatnonzero(best == lags)
        tvals[rows] = _level_tvalue(x[rows], int(lags))
    return tvals


def adf_pvalues(x: FloatArray, maxlag: int = 10) -> FloatArray:
    """p-value per row of x (R, L), no NaN inside; NaN where statsmodels would raise (too few
    points for maxlag) or the regression is singular or fits exactly."""
    from statsmodels.tsa.adfvalues import mackinnonp  # light module, scalar formula

    r, length = x.shape
    out = np.full(r, np.nan)
    if r == 0 or maxlag > length // 2 - 2:
        return out
    try:
        tvals = _tvalues(x, maxlag)
    except np.linalg.LinAlgError:
        # one singular row fails the whole stack: retry row by row, the bad ones stay NaN
        tvals = np.full(r, np.nan)
        for i in range(r):
            try:
                tvals[i] = _tvalues(x[i:i + 1], maxlag)[0]
            except np.linalg.LinAlgError:
                continue
    for row in np.flatnonzero(np.isfinite(tvals)):
        out[row] = mackinnonp(float(tvals[row]), regression="c", N=1)
    return out
