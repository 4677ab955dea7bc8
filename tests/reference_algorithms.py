"""Plain per-series reference versions of the nine algorithms, written the way upstream wrote
them (pandas ewm and std, numpy lstsq/histogram/median, scipy ks_2samp and t.isf, statsmodels
adfuller), with our documented rule decisions applied (abstentions, two-sided grubbs, the
histogram edge fix, point-based ks windows, earthgecko's first-hour baseline on the series' own
time). The vectorised library must agree with these. The vectorised optional built-ins
(abs_stddev_from_median, spectral_residual) have references at the end.

Each function takes one cleaned series (sorted, unique, finite) and returns
(verdict, statistic, limit) with verdict True / False / None (abstain).

Shared conventions, mirrored from the library on purpose:
- a series whose magnitude is beyond 2**+-400 is first scaled by a power of two (exact), so
  1e300 values do not overflow when squared; least_squares' rounding test uses original units;
- a constant series (or first-hour baseline) has mean equal to its value and std exactly 0.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.tsa.stattools import adfuller

Result = tuple[bool | None, float, float]
NONE: Result = (None, math.nan, math.nan)


def scaled(x: np.ndarray) -> tuple[np.ndarray, int]:
    big = float(np.max(np.abs(x))) if len(x) else 0.0
    if big > 2.0**400 or 0 < big < 2.0**-400:
        e = math.frexp(big)[1]
        return np.ldexp(x, -e), e
    return x, 0


def tail_avg(x: np.ndarray) -> float:
    if len(x) >= 3 and not x[-1] == x[-2] == x[-3]:
        return float((x[-1] + x[-2] + x[-3]) / 3)
    return float(x[-1])


def mean_std(x: np.ndarray) -> tuple[float, float]:
    if len(x) and x.min() == x.max():
        return float(x[0]), (0.0 if len(x) > 1 else math.nan)
    s = pd.Series(x)
    return float(s.mean()), float(s.std())


def _sigma(distance: float, spread: float, sigma: float = 3.0) -> Result:
    if not (math.isfinite(spread) and math.isfinite(distance)):
        return NONE
    stat = 0.0 if distance == 0 else (distance / spread if spread else math.inf)
    return distance > sigma * spread, stat, sigma


def first_hour_average(t: np.ndarray, x: np.ndarray, full_duration: float) -> Result:
    x, _ = scaled(x)
    if len(x) == 0:
        return NONE
    lo = t[-1] - full_duration
    base = x[(t > lo) & (t < lo + 3600)]
    if len(base) < 2:
        return NONE
    mean, std = mean_std(base)
    return _sigma(abs(tail_avg(x) - mean), std)


def mean_subtraction_cumulation(t: np.ndarray, x: np.ndarray, full_duration: float) -> Result:
    x, _ = scaled(x)
    if len(x) < 3:
        return NONE
    if x.min() == x.max():
        return False, 0.0, 3.0
    series = pd.Series(x)
    series = series - series[0:len(series) - 1].mean()
    std = float(series[0:len(series) - 1].std())
    return _sigma(abs(float(series.iat[-1])), std)


def stddev_from_average(t: np.ndarray, x: np.ndarray, full_duration: float) -> Result:
    x, _ = scaled(x)
    if len(x) < 2:
        return NONE
    mean, std = mean_std(x)
    return _sigma(abs(tail_avg(x) - mean), std)


def stddev_from_moving_average(t: np.ndarray, x: np.ndarray, full_duration: float) -> Result:
    x, _ = scaled(x)
    if len(x) < 2:
        return NONE
    if x.min() == x.max():
        return False, 0.0, 3.0
    s = pd.Series(x)
    ewm = s.ewm(ignore_na=False, min_periods=0, adjust=True, com=50)
    mean = float(ewm.mean().iat[-1])
    std = float(ewm.std(bias=False).iat[-1])
    return _sigma(abs(float(s.iat[-1]) - mean), std)


def _rounds_nonzero(v: float) -> bool:
    """upstream's round(v) != 0, without round()'s OverflowError on inf"""
    return not math.isfinite(v) or round(v) != 0


def least_squares(t: np.ndarray, x: np.ndarray, full_duration: float) -> Result:
    x, e = scaled(x)
    if len(x) < 3:
        return NONE
    if x.min() == x.max():
        return False, 0.0, 3.0
    # upstream ran lstsq on raw Unix timestamps, which is so ill-conditioned that the fitted
    # slope comes out near 0 whatever the data; the documented fix fits on t - t[0]
    tt = t - t[0]
    a = np.vstack([tt, np.ones(len(tt))]).T
    m, c = np.linalg.lstsq(a, x, rcond=-1)[0]
    errors = x - (m * tt + c)
    std = float(pd.Series(errors).std())
    tail = float((errors[-1] + errors[-2] + errors[-3]) / 3)
    std_raw, tail_raw = math.ldexp(std, e), math.ldexp(tail, e)
    stat = 0.0 if tail == 0 else abs(tail) / std
    fired = abs(tail) > std * 3 and _rounds_nonzero(std_raw) and _rounds_nonzero(tail_raw)
    return fired, stat, 3.0


def grubbs(t: np.ndarray, x: np.ndarray, full_duration: float) -> Result:
    x, _ = scaled(x)
    n = len(x)
    if n < 3:
        return NONE
    mean, std = mean_std(x)
    if std == 0:
        return NONE
    z = abs((tail_avg(x) - mean) / std)
    threshold = stats.t.isf(0.05 / (2 * n), n - 2)
    t2 = threshold * threshold
    g = ((n - 1) / np.sqrt(n)) * np.sqrt(t2 / (n - 2 + t2))
    return bool(z > g), z, float(g)


def histogram_bins(t: np.ndarray, x: np.ndarray, full_duration: float) -> Result:
    x, _ = scaled(x)
    if len(x) <= 20:
        return NONE
    counts, edges = np.histogram(x, bins=15)
    b = int(np.clip(np.searchsorted(edges, tail_avg(x), side="right") - 1, 0, 14))
    return bool(counts[b] <= 20), float(counts[b]), 20.0


def median_absolute_deviation(t: np.ndarray, x: np.ndarray, full_duration: float) -> Result:
    x, _ = scaled(x)
    if len(x) == 0:
        return NONE
    series = pd.Series(x)
    median = series.median()
    demedianed = np.abs(series - median)
    mad = float(demedianed.median())
    if mad == 0:
        return NONE
    stat = float(demedianed.iat[-1] / mad)
    return stat > 6, stat, 6.0


def ks_test(t: np.ndarray, x: np.ndarray, full_duration: float) -> Result:
    x, _ = scaled(x)
    probe = x[-20:]
    reference = x[max(0, len(x) - 120):max(0, len(x) - 20)]
    if len(reference) < 20 or len(probe) < 20 or reference.min() == reference.max():
        return NONE
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        d, p = stats.ks_2samp(reference, probe)
        if p < 0.05 and d > 0.5:
            try:
                adf = adfuller(reference, 10, regresults=True)
            except ValueError:
                return NONE
            ols = adf[-1].resols
            y = ols.model.endog
            noise = len(y) * (1e-9 * float(np.abs(y).max())) ** 2
            if ols.ssr <= 1e-12 * ols.centered_tss or ols.ssr <= noise:
                return NONE  # an exact fit (a straight line): ADF undefined, abstain
            return bool(adf[1] < 0.05), float(d), 0.5
    return False, float(d), 0.5


def abs_stddev_from_median(t: np.ndarray, x: np.ndarray, full_duration: float) -> Result:
    """earthgecko's sample custom algorithm: last value outside median +- 3 * pandas std"""
    x, _ = scaled(x)
    if len(x) < 2:
        return NONE
    median = float(pd.Series(x).median())
    _, std = mean_std(x)
    return _sigma(abs(float(x[-1]) - median), std)


def spectral_residual(t: np.ndarray, x: np.ndarray, full_duration: float) -> Result:
    """Ren et al. 2019 on the mirrored series, with the full complex spectrum (np.fft.fft) and a
    circular 3-bin average of the log amplitude: the library uses the half spectrum and
    reflects at its ends, which must come to the same thing."""
    x, _ = scaled(x)
    n = len(x)
    if n < 24:
        return NONE
    mean, _ = mean_std(x)
    y = np.concatenate([x - mean, (x - mean)[::-1]])
    spec = np.fft.fft(y)
    amp = np.abs(spec)
    empty = amp <= 1e-12 * amp.max()
    empty[0] = empty[n] = True
    log_amp = np.where(empty, 0.0, np.log(np.where(empty, 1.0, amp)))
    used = (~empty).astype(float)
    total = sum(np.roll(log_amp * used, d) for d in (-1, 0, 1))
    count = sum(np.roll(used, d) for d in (-1, 0, 1))
    avg = total / np.maximum(count, 1.0)
    sal = np.abs(np.fft.ifft(np.where(empty, 0.0, spec * np.exp(-avg))).real)[:n]
    peak, base = float(sal[-3:].max()), float(sal[:-3].mean())
    if base == 0:
        return NONE  # constant: no spectrum
    stat = (peak - base) / base
    return stat > 4.0, stat, 4.0


def range_excess(t: np.ndarray, x: np.ndarray, full_duration: float) -> Result:
    """Each of the last 3 points against the points before it: how far it leaves their
    [min, max], over their std, or how far its step exceeds their largest step, over the
    std of those steps; the largest z over the three, fired when z / (1 + z) >= 0.7063."""
    x, _ = scaled(x)
    if len(x) < 4:
        return NONE

    def breakout(p: np.ndarray) -> float:
        last, earlier = p[-1], p[:-1]
        steps = np.abs(np.diff(p))
        out = 0.0
        for beyond, spread in ((max(last - earlier.max(), earlier.min() - last),
                                float(np.std(earlier, ddof=1))),
                               (steps[-1] - steps[:-1].max(), float(np.std(steps[:-1], ddof=1)))):
            if beyond > 0:
                out = max(out, beyond / spread if spread > 0 else math.inf)
        return out

    z = max(breakout(x[:len(x) - j]) for j in range(3) if len(x) - j >= 4)
    score = 1.0 if math.isinf(z) else z / (1 + z)
    return score >= 0.7063, z, 0.7063 / (1 - 0.7063)


REFERENCES = {
    "histogram_bins": histogram_bins,
    "first_hour_average": first_hour_average,
    "stddev_from_average": stddev_from_average,
    "grubbs": grubbs,
    "ks_test": ks_test,
    "mean_subtraction_cumulation": mean_subtraction_cumulation,
    "median_absolute_deviation": median_absolute_deviation,
    "stddev_from_moving_average": stddev_from_moving_average,
    "least_squares": least_squares,
    # optional built-ins (not in the default ensemble)
    "abs_stddev_from_median": abs_stddev_from_median,
    "spectral_residual": spectral_residual,
    "range_excess": range_excess,
}
