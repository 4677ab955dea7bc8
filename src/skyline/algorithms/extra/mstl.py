"""mstl: the last value is far from what the seasonal pattern and trend of its history expect.

earthgecko's custom algorithm of that name fitted statsforecast's MSTL; this built-in uses
statsmodels' MSTL (Bandara, Hyndman and Bergmeir 2021: STL once per season, longest last).
Per row:

1. Grid. The series' resolution is the median spacing of its timestamps. Points are placed on
   steps counted back from the last point (so the last step always ends on it) and averaged
   per step; steps with no point are filled by linear interpolation. When the longest period
   would span more than `max_period_points` (288) resolution steps, steps are merged so it does
   not (60 s data with a daily period: 5-minute steps), by a factor that divides every period
   when one exists, so each season is a whole number of steps. STL's cost grows with the
   period: a daily period at 60 s costs seconds per series.
2. Decompose the history (every step but the last) with MSTL over `periods` (seconds, default
   one day), seasonal smoother of degree 0: with two or three seasons a local line through each
   phase's two or three points fits them exactly and leaves no residual to compare against.
3. Expect the last step at trend[-1] + each seasonal component one period earlier. The spread
   is the standard deviation of the history's residuals, widened by sqrt((k + 1) / (k - 1)),
   k = whole seasons of the longest period in the history: a seasonal value estimated from k
   seasons is itself uncertain, and in-sample residuals understate a new point's error by
   about that factor (with 2 seasons, 1.7x).
4. Anomalous when |last - expected| > `sigma` (3) x spread.

Holding the last step out is deliberate: fitted with the history, a spike at the end is half
absorbed by the seasonal and trend smoothers and its residual shrinks.

Costly and opt-in: one decomposition per row (~0.1-0.6 s for 2-7 days at 5-minute steps). A row
abstains when its history holds two seasons of the longest period or fewer (statsmodels needs
more than two), when a period is shorter than two steps, or when more than half of the steps
have no point (interpolation would invent the pattern). A history whose residuals are exactly
0 (a perfect pattern) uses a floor of 1e-9 of the series' range as its spread, so rounding
noise cannot fire.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from skyline.algorithms import kernels as K
from skyline.algorithms.base import BaseAlgorithm, Opinions, fmt, verdicts
from skyline.algorithms.batch import Batch
from skyline.core.errors import InvalidInput
from skyline.core.types import FloatArray

_MIN_COVERAGE = 0.5  # share of steps that must hold a point
_FLOOR = 1e-9  # spread floor, relative to the range: below it residuals are rounding noise

# why a row abstains, kept as a code in the opinions' context
_SHORT, _SHORT_PERIOD, _GAPS = 1.0, 2.0, 3.0


def merge_factor(resolution: float, periods: tuple[float, ...], max_period_points: int) -> int:
    """How many resolution steps make one analysis step: 1 unless the longest period would span
    more than max_period_points steps; then the smallest factor that brings it down to that,
    preferring one up to twice as large that divides every period's step count (whole-step
    seasons)."""
    counts = [max(1, round(p / resolution)) for p in periods]
    need = math.ceil(max(counts) / max_period_points)
    if need <= 1:
        return 1
    common = math.gcd(*counts)
    return next((f for f in range(need, 2 * need + 1) if common % f == 0), need)


def on_grid(t: FloatArray, x: FloatArray, resolution: float, factor: int
            ) -> tuple[FloatArray, float]:
    """(values per step, oldest first; share of steps that held a point). Steps are counted back
    from the last point; each is the mean of its points, empty ones linearly interpolated."""
    k = np.rint((t[-1] - t) / resolution).astype(np.int64) // factor
    steps = int(k[0]) + 1
    count = np.bincount(k, minlength=steps).astype(np.float64)
    total = np.bincount(k, weights=x, minlength=steps)
    filled = count > 0
    y = np.empty(steps)
    y[filled] = total[filled] / count[filled]
    idx = np.arange(steps)
    if not filled.all():
        y[~filled] = np.interp(idx[~filled], idx[filled], y[filled])
    return y[::-1].copy(), float(filled.mean())


@dataclass(frozen=True)
class Mstl(BaseAlgorithm):
    periods: tuple[float, ...] = (86400.0,)
    sigma: float = 3.0
    max_period_points: int = 288

    name = "mstl"
    context_keys = ("last", "expected", "spread", "step", "seasons", "why")

    def __post_init__(self) -> None:
        periods: Any = self.periods
        if isinstance(periods, int | float):
            periods = (periods,)
        periods = tuple(sorted(float(p) for p in periods))
        if not periods or periods[0] <= 0:
            raise InvalidInput("mstl: periods must be one or more positive durations (seconds)")
        if self.max_period_points < 4:
            raise InvalidInput("mstl: max_period_points must be at least 4")
        # settings arrive as lists; a tuple keeps the frozen instance hashable
        object.__setattr__(self, "periods", periods)

    def run(self, batch: Batch) -> Opinions:
        size = batch.size
        out = {k: np.full(size, np.nan) for k in self.context_keys}
        stat = np.full(size, np.nan)
        x = K.work(batch)
        out["why"][:] = _SHORT
        for i in np.flatnonzero(batch.counts >= 4):
            lo = batch.width - int(batch.counts[i])
            self._row(batch.timestamps[i, lo:], x[i, lo:], int(i), out, stat)
        has = np.isfinite(stat)
        for key in ("last", "expected", "spread"):
            out[key] = K.unscale(batch, out[key])
        return Opinions(verdicts(stat > self.sigma, has), stat,
                        np.where(has, self.sigma, np.nan), stat / self.sigma, out)

    def _row(self, t: FloatArray, x: FloatArray, i: int, out: dict[str, FloatArray],
             stat: FloatArray) -> None:
        resolution = float(np.median(np.diff(t)))
        factor = merge_factor(resolution, self.periods, self.max_period_points)
        step = resolution * factor
        lags = sorted({round(p / step) for p in self.periods})
        out["step"][i] = step
        if lags[0] < 2:
            out["why"][i] = _SHORT_PERIOD
            return
        y, coverage = on_grid(t, x, resolution, factor)
        history, last = y[:-1], float(y[-1])
        if len(history) <= 2 * lags[-1]:
            return
        if coverage < _MIN_COVERAGE:
            out["why"][i] = _GAPS
            return
        out["seasons"][i] = seasons = len(history) // lags[-1]
        if history.min() == history.max():
            expected, resid_std = float(history[0]), 0.0
        else:
            expected, resid_std = _expect(history, lags)
        spread = resid_std * math.sqrt((seasons + 1) / (seasons - 1))
        spread = max(spread, _FLOOR * float(y.max() - y.min()))
        distance = abs(last - expected)
        out["last"][i], out["expected"][i], out["spread"][i] = last, expected, spread
        stat[i] = 0.0 if distance == 0 else (distance / spread if spread else math.inf)

    def abstain_reason(self, opinions: Opinions, i: int) -> str:
        why = self.ctx(opinions, "why", i)
        step = fmt(self.ctx(opinions, "step", i))
        if why == _SHORT_PERIOD:
            return f"the shortest period is under two {step} s steps"
        if why == _GAPS:
            return f"more than half of the {step} s steps have no point"
        return (f"the history holds two seasons of {fmt(self.periods[-1])} s or fewer "
                "(MSTL needs more)")

    def explain(self, opinions: Opinions, i: int) -> str:
        return (f"last {fmt(self.ctx(opinions, 'step', i))} s step "
                f"{fmt(self.ctx(opinions, 'last', i))} against "
                f"{fmt(self.ctx(opinions, 'expected', i))} expected from "
                f"{fmt(self.ctx(opinions, 'seasons', i))} seasons of trend and seasonality: "
                f"{fmt(float(opinions.statistic[i]))} sigma "
                f"(sigma {fmt(self.ctx(opinions, 'spread', i))}); limit {fmt(self.sigma)}")


def _expect(history: FloatArray, lags: list[int]) -> tuple[float, float]:
    """(expected next value, residual standard deviation) from an MSTL fit of history."""
    # imported here: only this opt-in algorithm needs statsmodels' STL machinery
    from statsmodels.tsa.seasonal import MSTL

    res = MSTL(history, periods=lags, stl_kwargs={"seasonal_deg": 0}).fit()
    seasonal = np.asarray(res.seasonal).reshape(len(history), -1)
    n = len(history)
    expected = float(res.trend[-1]) + sum(float(seasonal[n - lag, j])
                                          for j, lag in enumerate(lags))
    return expected, float(np.std(res.resid, ddof=1))
