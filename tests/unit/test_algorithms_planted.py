"""Planted anomalies: 200 seeded series per class through the full ensemble (CONSENSUS 6).

Classes (tests/algorithm_data.py): normal days (noise, a daily sine, a slow trend, in turn),
and the same kinds of day ending in a spike (last 3 points 5-10 sigma up), a drop (5-10 sigma
down) or a level shift (last 10 points 3-6 sigma). Numbers observed, also in
docs/algorithms.md: spike 200/200, drop 197/200, level shift 136/200, false positives 0/200.
The bounds below leave room for a near-tie to flip on another BLAS or numpy, nothing more.
"""

from __future__ import annotations

import numpy as np
import pytest

from skyline.algorithms import AnalysisParams, analyse
from tests.algorithm_data import grid, normal_day, planted_day

PER_CLASS = 200


def _detected(anomaly: str | None, seed: int, early_stop: bool = True) -> int:
    rng = np.random.default_rng(seed)
    t = grid(1440)
    series = []
    for j in range(PER_CLASS):
        base = normal_day(rng, j % 3)
        series.append((t, base if anomaly is None else planted_day(rng, anomaly, base)))
    res = analyse(series, AnalysisParams(consensus=6, early_stop=early_stop, detector="consensus"), now=t[-1] + 30)
    assert (res.status == 0).all()
    return int(res.anomalous.sum())


@pytest.mark.parametrize("anomaly,seed,expected", [
    ("spike", 101, 200), ("drop", 102, 197), ("shift", 103, 136),
])
def test_planted_anomalies_are_found(anomaly, seed, expected):
    assert abs(_detected(anomaly, seed) - expected) <= 2


def test_normal_series_raise_no_false_positives():
    assert _detected(None, 100) == 0


def test_early_stop_finds_the_same_anomalies():
    assert _detected("shift", 103, early_stop=False) == _detected("shift", 103, early_stop=True)
