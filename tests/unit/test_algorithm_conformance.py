"""One conformance suite for every registered algorithm (built-ins, optional built-ins and
installed plug-ins): constant series, NaN, short series, huge and tiny values, negative values,
pickling, output contract, and vectorised == per-series."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest

from skyline.algorithms import (
    ABSTAIN,
    ANOMALOUS,
    NORMAL,
    OPTIONAL_BUILTINS,
    Batch,
    SeriesAlgorithm,
    discover,
)
from skyline.algorithms.base import Opinions, as_verdict
from tests.algorithm_data import FULL_DURATION, grid
from tests.reference_algorithms import REFERENCES

REGISTRY = {**discover(), **OPTIONAL_BUILTINS}
NAMES = sorted(REGISTRY)

# The suite's series are 300 points at 60 s: mstl's default daily period needs more than two
# days, so it is checked with an hourly one; isolation_forest's 100 trees cost ~0.3 s a row, and
# the contract does not depend on the number of trees.
SUITE_PARAMS = {"mstl": {"periods": (3600.0,)}, "isolation_forest": {"n_estimators": 8}}
# built-ins that loop over rows: their per-series truth is the algorithm on that row alone
PER_ROW = {"isolation_forest", "mstl"}


def _alg(name):
    return REGISTRY[name](**SUITE_PARAMS.get(name, {}))


def _run(alg, series, **kw) -> Opinions:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an algorithm must not leak numpy warnings
        op = alg.run(Batch.from_series(series, full_duration=FULL_DURATION, **kw))
    assert len(op) == len(series)
    assert op.verdict.dtype == np.int8
    assert set(np.unique(op.verdict)) <= {ABSTAIN, NORMAL, ANOMALOUS}
    for arr in (op.statistic, op.limit, op.severity):
        assert arr.shape == (len(series),)
    return op


def _per_series(name, alg, t, v):
    """The per-series truth: the test reference for built-ins, the function for plug-ins."""
    if name in REFERENCES:
        return REFERENCES[name](t, v, FULL_DURATION)[0]
    if isinstance(alg, SeriesAlgorithm) or name in PER_ROW:
        return as_verdict(int(alg.run(Batch.from_series([(t, v)])).verdict[0]))
    pytest.skip(f"{name} has no per-series reference")


def _anomalous_examples(n: int = 300, count: int = 12) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(5)
    out = []
    for i in range(count):
        v = rng.normal(100, 10, n)
        if i % 2:
            v[-3:] += rng.uniform(80, 200) * (1 if i % 4 == 1 else -1)
        if i % 3 == 0:
            v[-20:] += 150
        out.append((grid(n), v))
    return out


@pytest.mark.parametrize("name", NAMES)
def test_constant_series_are_never_anomalous(name):
    series = [(grid(n), np.full(n, value)) for n in (1, 2, 3, 50, 300)
              for value in (0.1, -7.0, 0.0, 1e300, -1e-300, 123456789.123)]
    op = _run(_alg(name), series)
    assert not (op.verdict == ANOMALOUS).any()


@pytest.mark.parametrize("name", NAMES)
def test_nan_and_inf_points_change_nothing_but_their_absence(name):
    rng = np.random.default_rng(9)
    clean, holed = [], []
    for t, v in _anomalous_examples():
        holes = rng.random(len(v)) < 0.15
        holes[-1] = False
        w = v.copy()
        w[holes] = rng.choice([np.nan, np.inf, -np.inf], holes.sum())
        holed.append((t, w))
        clean.append((t[~holes], v[~holes]))
    alg = _alg(name)
    a, b = _run(alg, clean), _run(alg, holed)
    np.testing.assert_array_equal(a.verdict, b.verdict)
    np.testing.assert_allclose(a.statistic, b.statistic, rtol=1e-12, equal_nan=True)


@pytest.mark.parametrize("name", NAMES)
def test_short_series_give_valid_opinions(name):
    rng = np.random.default_rng(1)
    series = [(grid(n), rng.normal(0, 1, n)) for n in range(0, 8)]
    series += [(grid(n), np.arange(n, dtype=float)) for n in range(0, 8)]
    op = _run(_alg(name), series)
    assert (op.verdict[:1] == ABSTAIN).all()  # nothing to judge in an empty series


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("exponent", [996, -996])
def test_huge_and_tiny_values_get_the_same_opinion(name, exponent):
    """Every rule is scale-invariant (least_squares' rounding test aside, which these series
    pass at every scale), so a power-of-two scaling (exact) must not change any opinion."""
    base = [(t, v * 100) for t, v in _anomalous_examples()]
    scaled = [(t, np.ldexp(v, exponent)) for t, v in base]
    alg = _alg(name)
    a, b = _run(alg, base), _run(alg, scaled)
    if name == "least_squares" and exponent < 0:
        # tiny values: residuals round to 0 in metric units, so nothing may fire
        assert not (b.verdict == ANOMALOUS).any()
        return
    np.testing.assert_array_equal(a.verdict, b.verdict)
    np.testing.assert_allclose(a.statistic, b.statistic, rtol=1e-9, equal_nan=True)


@pytest.mark.parametrize("name", NAMES)
def test_negative_values_match_the_per_series_result(name):
    series = [(t, v - 1e4) for t, v in _anomalous_examples()]
    alg = _alg(name)
    op = _run(alg, series)
    for i, (t, v) in enumerate(series):
        assert as_verdict(int(op.verdict[i])) == _per_series(name, alg, t, v)


@pytest.mark.parametrize("name", NAMES)
def test_picklable(name):
    alg = _alg(name)
    series = _anomalous_examples()
    batch = Batch.from_series(series, full_duration=FULL_DURATION)
    again = pickle.loads(pickle.dumps(alg))
    batch_again = pickle.loads(pickle.dumps(batch))
    a, b = alg.run(batch), again.run(batch_again)
    np.testing.assert_array_equal(a.verdict, b.verdict)
    np.testing.assert_array_equal(a.statistic, b.statistic)


@pytest.mark.parametrize("name", NAMES)
def test_vectorised_equals_per_series(name):
    rng = np.random.default_rng(21)
    series = _anomalous_examples()
    series += [(grid(n), rng.normal(0, 1, n)) for n in (25, 130, 260)]  # padded rows
    alg = _alg(name)
    together = _run(alg, series)
    for i, (t, v) in enumerate(series):
        alone = _run(alg, [(t, v)])
        assert together.verdict[i] == alone.verdict[0]
        np.testing.assert_allclose(together.statistic[i], alone.statistic[0], rtol=1e-9,
                                   equal_nan=True)
        assert as_verdict(int(together.verdict[i])) == _per_series(name, alg, t, v)


@pytest.mark.parametrize("name", NAMES)
def test_fires_on_some_planted_anomaly_and_describes_every_row(name):
    alg = _alg(name)
    op = _run(alg, _anomalous_examples())
    if name != "ks_test":  # ks needs a stationary reference and a shift of 20 points
        assert (op.verdict == ANOMALOUS).any()
    for i in range(len(op)):
        text = alg.describe(op, i)
        assert text and "\n" not in text
