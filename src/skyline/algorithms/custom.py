"""Adapters that put per-series custom algorithms into the batch interface.

Both loop over the batch's rows in Python: custom code is written for one series at a time.
They are pure wrappers: process isolation and time limits belong to the caller (the analyzer
runs them where a hang or a crash cannot take it down). An exception raised for one row makes
that row abstain and is counted in `errors` of the opinions' context, so one bad series does
not silence the algorithm for the others.

Native form:    f(timestamps, values, **params) -> bool | None | (bool | None, float)
Upstream form:  fn(current_skyline_app, parent_pid, timeseries, algorithm_parameters)
                -> (anomalous, anomalyScore[, results])     timeseries = [[ts, value], ...]
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from skyline.algorithms.base import ANOMALOUS, BaseAlgorithm, Opinions, fmt
from skyline.algorithms.batch import Batch
from skyline.core.types import FloatArray

NativeResult = bool | None | tuple[bool | None, float]
NativeFn = Callable[..., NativeResult]


def _coerce(result: Any) -> tuple[bool | None, float]:
    """(verdict, score) from whatever a custom algorithm returned; ValueError when unusable."""
    score = math.nan
    if isinstance(result, tuple | list):
        if not result:
            raise ValueError("empty result")
        verdict = result[0]
        if len(result) > 1 and result[1] is not None:
            score = float(result[1])
    else:
        verdict = result
    if verdict is None:
        return None, score
    if isinstance(verdict, bool | np.bool_) or verdict in (0, 1):
        return bool(verdict), score
    raise ValueError(f"verdict must be True, False or None, not {verdict!r}")


@dataclass(frozen=True, kw_only=True)
class SeriesAlgorithm(BaseAlgorithm):
    """A native per-series function, run row by row. `params` are passed as keywords."""

    name: str
    fn: NativeFn
    params: Mapping[str, Any] = field(default_factory=dict)
    context_keys = ("errors",)

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a custom algorithm needs a name")

    def call(self, timestamps: FloatArray, values: FloatArray) -> NativeResult:
        return self.fn(timestamps, values, **self.params)

    def run(self, batch: Batch) -> Opinions:
        size = batch.size
        verdict = np.full(size, -1, dtype=np.int8)
        score = np.full(size, np.nan)
        errors = np.zeros(size)
        for i in range(size):
            t, v = batch.series(i)
            try:
                got, s = _coerce(self.call(t.copy(), v.copy()))
            except Exception:  # noqa: BLE001 - foreign code may raise anything; the row abstains
                errors[i] = 1.0
                continue
            score[i] = s
            if got is not None:
                verdict[i] = ANOMALOUS if got else 0
        severity = np.where(verdict >= 0, score, np.nan)
        return Opinions(verdict, severity.copy(), np.full(size, np.nan), severity,
                        {"errors": errors})

    def abstain_reason(self, opinions: Opinions, i: int) -> str:
        if self.ctx(opinions, "errors", i):
            return "the algorithm raised an error on this series"
        return "the algorithm returned None"

    def explain(self, opinions: Opinions, i: int) -> str:
        return f"custom algorithm; score {fmt(float(opinions.statistic[i]))}"


@dataclass(frozen=True, kw_only=True)
class UpstreamAlgorithm(SeriesAlgorithm):
    """An upstream (earthgecko) custom algorithm function, called exactly as upstream calls it.
    `params` is its algorithm_parameters dict; upstream injects `metric` and `base_name`, which
    a caller that knows the names can put there."""

    app: str = "analyzer"
    parent_pid: int = 0

    def call(self, timestamps: FloatArray, values: FloatArray) -> NativeResult:
        timeseries = [[float(t), float(v)] for t, v in zip(timestamps, values, strict=True)]
        result = self.fn(self.app, self.parent_pid, timeseries, dict(self.params))
        if not isinstance(result, tuple | list) or len(result) < 2:
            raise ValueError("an upstream custom algorithm returns (anomalous, anomalyScore[, "
                             "results])")
        return result[0], result[1]
