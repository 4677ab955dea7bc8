"""The optional built-ins (abs_stddev_from_median, spectral_residual, isolation_forest, mstl):
registered by name but outside the default ensemble, the vectorised ones against their
per-series references, planted anomalies found and clean series left alone, the costly ones
abstaining on too little history. The shared contract is in test_algorithm_conformance.py."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from skyline.algorithms import (
    ABSTAIN,
    ANOMALOUS,
    BUILTINS,
    DEFAULT_ALGORITHMS,
    NORMAL,
    OPTIONAL_BUILTINS,
    AnalysisParams,
    Batch,
    analyse,
    build,
    discover,
)
from skyline.algorithms.base import Opinions, as_verdict
from skyline.algorithms.extra.mstl import merge_factor, on_grid
from skyline.core.errors import DuplicateAlgorithm, InvalidInput, UnknownAlgorithm
from tests.algorithm_data import (
    FULL_DURATION,
    adversarial_series,
    clean,
    grid,
    normal_day,
    planted_day,
    random_series,
    with_nan_gaps,
)
from tests.reference_algorithms import REFERENCES

OPTIONAL = ("abs_stddev_from_median", "spectral_residual", "isolation_forest", "mstl",
            "range_excess")
VECTORISED = ("abs_stddev_from_median", "spectral_residual")
DAY = 86400.0

# -- registry ----------------------------------------------------------------------------------


def test_optional_builtins_are_selectable_but_not_in_the_default_ensemble():
    assert tuple(OPTIONAL_BUILTINS) == OPTIONAL
    assert DEFAULT_ALGORITHMS == (
        "histogram_bins", "first_hour_average", "stddev_from_average", "grubbs", "ks_test",
        "mean_subtraction_cumulation", "median_absolute_deviation", "stddev_from_moving_average",
        "least_squares")
    assert not set(OPTIONAL) & (set(BUILTINS) | set(DEFAULT_ALGORITHMS))
    assert AnalysisParams().algorithms == DEFAULT_ALGORITHMS
    for registry in (None, discover([])):
        algs = build(list(OPTIONAL), registry=registry)
        assert [a.name for a in algs] == list(OPTIONAL)
    algs = build(["mstl", "isolation_forest"],
                 params={"mstl": {"periods": [DAY, 7 * DAY]}, "isolation_forest": {"seed": 3}})
    assert algs[0].periods == (DAY, 7 * DAY) and algs[1].seed == 3


def test_optional_names_are_reserved_and_listed_when_a_name_is_unknown():
    class _EP:
        name = "mstl"

        def load(self):
            return lambda timestamps, values: False

    with pytest.raises(DuplicateAlgorithm):
        discover([_EP()])
    with pytest.raises(UnknownAlgorithm, match="spectral_residual"):
        build(["no_such_algorithm"])
    with pytest.raises(InvalidInput):
        build(["mstl"], params={"mstl": {"periods": []}})
    with pytest.raises(InvalidInput):
        build(["spectral_residual"], params={"spectral_residual": {"amp_window": 4}})


def test_an_optional_algorithm_joins_the_vote_through_analyse():
    rng = np.random.default_rng(4)
    t = grid(1440)
    series = [(t, normal_day(rng, 0)) for _ in range(3)]
    series[1] = (t, planted_day(rng, "spike", series[1][1]))
    params = AnalysisParams(algorithms=(*DEFAULT_ALGORITHMS, "abs_stddev_from_median",
                                        "spectral_residual"), consensus=7, detector="consensus")
    res = analyse(series, params, now=t[-1] + 30)
    assert list(res.anomalous) == [False, True, False]
    assert {"abs_stddev_from_median", "spectral_residual"} <= set(res.triggered(1))
    assert [r.algorithm for r in res.explain(1)][-2:] == ["abs_stddev_from_median",
                                                          "spectral_residual"]


# -- vectorised == per-series reference --------------------------------------------------------


def _series_set() -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(20240602)
    out = [random_series(rng, int(n)) for n in rng.integers(0, 400, 600)]
    return out + adversarial_series(rng)


SERIES = _series_set()


def _compare(name: str, series: list[tuple[np.ndarray, np.ndarray]], batch: Batch) -> None:
    op = OPTIONAL_BUILTINS[name]().run(batch)
    problems = []
    for i, (t, v) in enumerate(series):
        t, v = clean(t, v)
        verdict, stat, limit = REFERENCES[name](t, v, FULL_DURATION)
        got = as_verdict(int(op.verdict[i]))
        near_tie = math.isfinite(stat) and abs(stat - limit) <= 1e-6 * max(1.0, abs(limit))
        if got != verdict and not near_tie:
            problems.append(f"series {i} (n={len(v)}): {got} vs reference {verdict} "
                            f"(stat {op.statistic[i]} vs {stat})")
        elif got is not None and verdict is not None and math.isfinite(stat) and not math.isclose(
                float(op.statistic[i]), stat, rel_tol=1e-6, abs_tol=1e-9):
            problems.append(f"series {i}: statistic {op.statistic[i]} vs reference {stat}")
    assert not problems, f"{len(problems)} disagreements:\n" + "\n".join(problems[:20])


@pytest.mark.parametrize("name", VECTORISED)
def test_vectorised_agrees_with_the_reference(name):
    _compare(name, SERIES, Batch.from_series(SERIES, full_duration=FULL_DURATION))


@pytest.mark.parametrize("name", VECTORISED)
def test_vectorised_agrees_with_the_reference_without_padding_and_with_gaps(name):
    rng = np.random.default_rng(8)
    full = [(grid(240), random_series(rng, 240)[1]) for _ in range(150)]
    batch = Batch.from_series(full, full_duration=FULL_DURATION)
    assert batch.full
    _compare(name, full, batch)
    holed = [with_nan_gaps(rng, *random_series(rng, int(n))) for n in rng.integers(0, 300, 150)]
    _compare(name, holed, Batch.from_series(holed, full_duration=FULL_DURATION))


# -- planted anomalies -------------------------------------------------------------------------


def _days(seed: int, anomaly: str | None, count: int) -> Batch:
    """count 60 s days cycling through noise, a daily sine and a slow trend (algorithm_data)."""
    rng = np.random.default_rng(seed)
    rows = []
    for j in range(count):
        base = normal_day(rng, j % 3)
        rows.append(base if anomaly is None else planted_day(rng, anomaly, base))
    return Batch.from_arrays(grid(1440), np.array(rows))


@pytest.mark.parametrize("name,anomaly,seed,expected", [
    ("abs_stddev_from_median", "spike", 31, 198), ("abs_stddev_from_median", "drop", 32, 197),
    ("abs_stddev_from_median", "shift", 33, 170),
    ("spectral_residual", "spike", 31, 190), ("spectral_residual", "drop", 32, 189),
    ("spectral_residual", "shift", 33, 4),
])
def test_vectorised_find_planted_anomalies(name, anomaly, seed, expected):
    """Observed counts out of 200 (docs/algorithms.md); the margin is for a near-tie flipping
    on another numpy or BLAS. Spectral residual sees spikes, not level shifts."""
    op = OPTIONAL_BUILTINS[name]().run(_days(seed, anomaly, 200))
    assert abs(int((op.verdict == ANOMALOUS).sum()) - expected) <= 2


@pytest.mark.parametrize("name,expected", [("abs_stddev_from_median", 1),
                                           ("spectral_residual", 0)])
def test_vectorised_leave_clean_days_alone(name, expected):
    """200 normal days (noise, daily sine, slow trend). abs_stddev_from_median judges one point
    against 3 sigma, so a normal day fires now and then (1 of these 200)."""
    op = OPTIONAL_BUILTINS[name]().run(_days(30, None, 200))
    assert int((op.verdict == ANOMALOUS).sum()) <= expected


def test_isolation_forest_isolates_a_spike_and_not_an_ordinary_last_value():
    rng = np.random.default_rng(40)
    clean_days = [normal_day(rng, k) for k in range(3)]
    spiked = [planted_day(rng, "spike", normal_day(rng, k)) for k in range(2)]
    op = OPTIONAL_BUILTINS["isolation_forest"]().run(
        Batch.from_arrays(grid(1440), np.array(clean_days + spiked)))
    assert list(op.verdict) == [NORMAL] * 3 + [ANOMALOUS] * 2
    assert (op.statistic[:3] < 0.7).all() and (op.statistic[3:] > 0.75).all()


def test_isolation_forest_abstains_below_100_points_and_is_deterministic():
    rng = np.random.default_rng(41)
    v = rng.normal(0, 1, 100)
    v[-1] = 9.0
    alg = OPTIONAL_BUILTINS["isolation_forest"](n_estimators=20)
    series = [(grid(99), v[1:]), (grid(100), v), (grid(100), np.full(100, 2.0))]
    op = alg.run(Batch.from_series(series))
    assert list(op.verdict) == [ABSTAIN, ANOMALOUS, ABSTAIN]
    assert "99 points" in alg.describe(op, 0) and "equal" in alg.describe(op, 2)
    again = alg.run(Batch.from_series(series[1:2]))
    assert again.statistic[0] == op.statistic[1]


def _seasonal(rng: np.random.Generator, days: float, step: float = 60.0, spike: bool = False,
              amplitude: float = 50.0) -> tuple[np.ndarray, np.ndarray]:
    """A daily sine with noise (sigma 5) and a slight trend; spike: the last 3 points 6-10 noise
    sigma up or down."""
    n = int(round(days * DAY / step))
    t = 1_700_000_000.0 + step * np.arange(n)
    v = 100 + amplitude * np.sin(2 * np.pi * t / DAY + rng.uniform(0, 6)) + rng.normal(0, 5, n) \
        + np.arange(n) * rng.uniform(-0.002, 0.002)
    if spike:
        v[-3:] += rng.choice([-1, 1]) * rng.uniform(6, 10) * 5
    return t, v


def test_mstl_finds_a_spike_the_daily_cycle_hides_and_passes_clean_days():
    rng = np.random.default_rng(50)
    clean_days = [_seasonal(rng, 2.1) for _ in range(3)] + [_seasonal(rng, 2.1, amplitude=0)]
    spiked = [_seasonal(rng, 2.1, spike=True) for _ in range(3)]
    op = OPTIONAL_BUILTINS["mstl"]().run(Batch.from_series(clean_days + spiked))
    assert list(op.verdict) == [NORMAL] * 4 + [ANOMALOUS] * 3
    assert (op.context["step"] == 300.0).all()  # 60 s data, daily period: 5-minute steps
    # the spike is inside the day's range: the whole-window 3-sigma test does not see it
    sigma = BUILTINS["stddev_from_average"]().run(Batch.from_series(spiked))
    assert not (sigma.verdict == ANOMALOUS).any()
    text = OPTIONAL_BUILTINS["mstl"]().describe(op, 4)
    assert "expected from 2 seasons" in text and "\n" not in text


def test_mstl_abstains_without_more_than_two_seasons_of_history():
    rng = np.random.default_rng(51)
    alg = OPTIONAL_BUILTINS["mstl"]()
    two_days = _seasonal(rng, 2.0, step=300.0)  # 576 steps: history 575 <= 2 x 288
    t, v = _seasonal(rng, 2.0, step=300.0)
    longer = (np.r_[t, t[-1] + 300.0, t[-1] + 600.0], np.r_[v, v[-1], v[-2]])  # history 577
    one_day = _seasonal(rng, 1.0)
    gappy_t, gappy_v = _seasonal(rng, 3.0, step=300.0)
    position = np.arange(len(gappy_t)) / len(gappy_t)
    keep = (position < 0.15) | (position > 0.75)  # a gap of 60 % of the window
    series = [two_days, longer, one_day, (gappy_t[keep], gappy_v[keep])]
    op = alg.run(Batch.from_series(series))
    assert list(op.verdict[[0, 2, 3]]) == [ABSTAIN] * 3
    assert op.verdict[1] in (NORMAL, ANOMALOUS)
    assert "two seasons" in alg.describe(op, 0)
    hourly = OPTIONAL_BUILTINS["mstl"](periods=(3600.0,)).run(Batch.from_series([one_day]))
    assert hourly.verdict[0] != ABSTAIN  # 24 hourly seasons at 60 s
    assert "steps" in alg.describe(alg.run(Batch.from_series([series[3]])), 0)


def test_mstl_grid_merges_steps_into_whole_seasons_and_matches_pandas():
    assert merge_factor(60.0, (DAY,), 288) == 5
    assert merge_factor(300.0, (DAY,), 288) == 1
    assert merge_factor(60.0, (DAY, 7 * DAY), 288) == 36  # divides 1440 and 10080
    assert merge_factor(7.0, (DAY,), 288) == math.ceil(round(DAY / 7) / 288)
    rng = np.random.default_rng(52)
    t = 1_700_000_000.0 + np.cumsum(rng.choice([60.0, 60.0, 60.0, 180.0, 600.0], 400))
    v = rng.normal(0, 1, 400)
    y, coverage = on_grid(t, v, 60.0, 5)
    # pandas: 5-minute bins ending at the last point, mean per bin, empty bins interpolated
    steps = np.rint((t[-1] - t) / 60.0).astype(int) // 5
    expected = (pd.Series(v).groupby(steps).mean().reindex(range(steps.max() + 1))
                .interpolate().to_numpy()[::-1])
    np.testing.assert_allclose(y, expected, rtol=1e-12)
    assert coverage == pytest.approx(len(set(steps)) / (steps.max() + 1))


# -- explanations ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", OPTIONAL)
def test_every_verdict_is_explained_in_one_line(name):
    rng = np.random.default_rng(60)
    kw = {"periods": (3600.0,)} if name == "mstl" else {}
    kw |= {"n_estimators": 10} if name == "isolation_forest" else {}
    alg = OPTIONAL_BUILTINS[name](**kw)
    v = rng.normal(100, 5, 300)
    spiked = v.copy()
    spiked[-3:] += 200
    op: Opinions = alg.run(Batch.from_series([(grid(300), v), (grid(300), spiked),
                                              (grid(1), v[:1]), (grid(300), np.full(300, 7.0))]))
    assert op.verdict[0] == NORMAL and op.verdict[1] == ANOMALOUS and op.verdict[2] == ABSTAIN
    for i in range(4):
        text = alg.describe(op, i)
        assert text and "\n" not in text
        if op.verdict[i] != ABSTAIN:
            assert "n/a" not in text and "limit" in text
    assert alg.describe(op, 2).startswith("abstained: ")
