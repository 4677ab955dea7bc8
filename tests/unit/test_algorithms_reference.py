"""The vectorised algorithms agree with the plain per-series references (tests/
reference_algorithms.py) on thousands of random and adversarial series, padded and unpadded
batches alike. A disagreement is tolerated only at a numerical tie: the reference's statistic
within 1e-6 (relative) of its limit, where rounding order decides."""

from __future__ import annotations

import math

import numpy as np
import pytest

from skyline.algorithms import BUILTINS, Batch
from skyline.algorithms.base import ABSTAIN, ANOMALOUS, NORMAL, Opinions, as_verdict
from tests.algorithm_data import (
    FULL_DURATION,
    adversarial_series,
    clean,
    grid,
    random_series,
    with_nan_gaps,
)
from tests.reference_algorithms import REFERENCES

NAMES = sorted(BUILTINS)


def _series_set() -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(20240601)
    out = [random_series(rng, int(n)) for n in rng.integers(0, 400, 1800)]
    return out + adversarial_series(rng)


SERIES = _series_set()


def _near(a: float, b: float, rel: float = 1e-6) -> bool:
    return math.isfinite(a) and math.isfinite(b) and abs(a - b) <= rel * max(1.0, abs(b))


def _tie(name: str, ref: tuple, op: Opinions, i: int) -> bool:
    _, stat, limit = ref
    if _near(stat, limit):
        return True
    if name == "least_squares":
        return any(_near(abs(float(op.context[k][i])), 0.5) for k in ("std", "residual"))
    if name == "ks_test":
        return _near(float(op.context["adf_p"][i]), 0.05, 1e-4)
    return False


def _noise_only(name: str, op: Opinions, i: int, v: np.ndarray) -> bool:
    """least_squares on an exact line: residuals are rounding noise and so is their ratio"""
    if name != "least_squares" or not len(v):
        return False
    return abs(float(op.context["std"][i])) <= 1e-8 * float(np.max(np.abs(v)))


def compare(name: str, series: list[tuple[np.ndarray, np.ndarray]], batch: Batch) -> None:
    alg = BUILTINS[name]()
    ref_fn = REFERENCES[name]
    op = alg.run(batch)
    assert len(op) == len(series)
    problems = []
    for i, (t, v) in enumerate(series):
        t, v = clean(t, v)
        ref = ref_fn(t, v, FULL_DURATION)
        got = as_verdict(int(op.verdict[i]))
        if got != ref[0] and not _tie(name, ref, op, i):
            problems.append(f"series {i} (n={len(v)}): vectorised {got}, reference {ref[0]} "
                            f"(stat {op.statistic[i]} vs {ref[1]}, limit {ref[2]})")
        elif got is not None and ref[0] is not None and not _noise_only(name, op, i, v):
            a, b = float(op.statistic[i]), float(ref[1])
            if math.isfinite(b) and not math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-9):
                problems.append(f"series {i}: statistic {a} vs reference {b}")
    assert not problems, f"{len(problems)} disagreements:\n" + "\n".join(problems[:20])


@pytest.mark.parametrize("name", NAMES)
def test_agrees_with_reference_on_random_and_adversarial_series(name):
    compare(name, SERIES, Batch.from_series(SERIES, full_duration=FULL_DURATION))


@pytest.mark.parametrize("name", NAMES)
def test_agrees_with_reference_without_padding(name):
    rng = np.random.default_rng(7)
    series = [random_series(rng, 240) for _ in range(300)]
    series = [(grid(240), v) for _, v in series]  # one grid: a batch with no padding at all
    batch = Batch.from_series(series, full_duration=FULL_DURATION)
    assert batch.full
    compare(name, series, batch)


@pytest.mark.parametrize("name", NAMES)
def test_nan_and_inf_points_are_dropped_before_judging(name):
    rng = np.random.default_rng(11)
    series = [with_nan_gaps(rng, *random_series(rng, int(n))) for n in rng.integers(0, 300, 300)]
    compare(name, series, Batch.from_series(series, full_duration=FULL_DURATION))


# -- hand-computed fixtures ----------------------------------------------------------------------

def _one(name: str, values: list[float], **kw) -> tuple[int, float]:
    t = grid(len(values))
    op = BUILTINS[name](**kw).run(Batch.from_series([(t, np.array(values, dtype=float))],
                                                    full_duration=FULL_DURATION))
    return int(op.verdict[0]), float(op.statistic[0])


def test_stddev_from_average_by_hand():
    # 20 points: 19 zeros and tail 3,3,3 -> series [0]*17 + [3,3,3]; mean 0.45,
    # std = sqrt((17*0.45^2 + 3*2.55^2) / 19) = sqrt(23.4 / 19 ... ) computed below
    values = [0.0] * 17 + [3.0, 3.0, 3.0]
    mean = 9 / 20
    std = math.sqrt((17 * mean**2 + 3 * (3 - mean) ** 2) / 19)
    verdict, stat = _one("stddev_from_average", values)
    assert stat == pytest.approx((3 - mean) / std)
    assert verdict == (ANOMALOUS if (3 - mean) > 3 * std else NORMAL)
    assert verdict == NORMAL  # 2.55 / 1.099 = 2.32 sigma


def test_median_absolute_deviation_by_hand():
    # median 2, deviations [1,0,1,0,98] -> MAD 1, last deviation 98 -> 98 MADs
    verdict, stat = _one("median_absolute_deviation", [1.0, 2.0, 3.0, 2.0, 100.0])
    assert (verdict, stat) == (ANOMALOUS, 98.0)
    # half the points equal the median: MAD 0, no opinion
    verdict, _ = _one("median_absolute_deviation", [5.0, 5.0, 5.0, 1.0, 9.0])
    assert verdict == ABSTAIN


def test_grubbs_is_two_sided_by_default_and_one_sided_on_request():
    values = [10.0 + (i % 3) for i in range(60)] + [-50.0, -50.0, -50.0]
    assert _one("grubbs", values)[0] == ANOMALOUS
    assert _one("grubbs", values, two_sided=False)[0] == NORMAL


def test_histogram_tail_at_the_maximum_is_judged():
    # 100 points spread over [0, 1) and three at 10: upstream's half-open last bin never
    # matched a tail equal to the maximum; the fixed rule sees the 3-point bin
    values = [i / 100 for i in range(100)] + [10.0, 10.0, 10.0]
    verdict, stat = _one("histogram_bins", values)
    assert (verdict, stat) == (ANOMALOUS, 3.0)


def test_histogram_needs_more_points_than_its_limit():
    assert _one("histogram_bins", [float(i) for i in range(20)])[0] == ABSTAIN
    assert _one("histogram_bins", [float(i) for i in range(21)])[0] != ABSTAIN


def test_least_squares_rounding_rule_in_metric_units():
    # a clear outlier whose residual and sigma are tiny in metric units does not count
    values = [1e-3 * (i % 2) for i in range(50)] + [1.0, 1.0, 1.0]
    verdict, stat = _one("least_squares", values)
    assert stat > 3 and verdict == NORMAL
    big = [v * 1000 for v in values]
    assert _one("least_squares", big)[0] == ANOMALOUS


def test_ks_test_fires_on_60s_data():
    rng = np.random.default_rng(3)
    values = list(rng.normal(0, 1, 200)) + list(rng.normal(8, 1, 20))
    verdict, d = _one("ks_test", values)
    assert verdict == ANOMALOUS and d == 1.0


def test_first_hour_average_uses_the_series_own_clock():
    # the baseline is the hour after t_last - FULL_DURATION, whatever the wall clock says
    n = int(FULL_DURATION / 60) + 10
    values = [0.0 + (i % 2) for i in range(n - 3)] + [50.0, 50.0, 50.0]
    verdict, stat = _one("first_hour_average", values)
    assert verdict == ANOMALOUS and stat > 3
    # younger than FULL_DURATION - 3600: no baseline, no opinion
    assert _one("first_hour_average", values[-30:])[0] == ABSTAIN
