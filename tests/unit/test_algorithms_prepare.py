"""Batch preparation: cleaning, windows, counters, resampling, exceptions and bucketing."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from skyline.algorithms import (
    AnalysisParams,
    Batch,
    Status,
    analyse,
    is_counter,
    prepare,
    prepare_flat,
)
from skyline.algorithms.counters import non_negative_derivative, strictly_increasing
from skyline.core.errors import InvalidInput
from tests.algorithm_data import T0, grid

DAY = 86400.0
NOW = T0 + DAY


def _day(step: float = 60.0) -> np.ndarray:
    return np.arange(T0 + step, NOW + step / 2, step)


def _rows(prepared):
    """input index -> (timestamps, values) the algorithms will see"""
    out = {}
    for b in prepared.batches:
        for j, r in enumerate(b.rows):
            out[int(r)] = b.series(j)
    return out


def test_from_arrays_canonicalises_any_2d_input():
    t = np.array([[3.0, 1.0, 2.0, 2.0, np.nan], [1.0, 2.0, 3.0, 4.0, 5.0]])
    v = np.array([[30.0, 10.0, 20.0, 21.0, 5.0], [1.0, np.inf, 3.0, np.nan, 5.0]])
    b = Batch.from_arrays(t, v)
    assert list(b.counts) == [3, 3]
    np.testing.assert_array_equal(b.series(0)[0], [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(b.series(0)[1], [10.0, 21.0, 30.0])  # last write wins
    np.testing.assert_array_equal(b.series(1)[1], [1.0, 3.0, 5.0])
    assert np.isnan(b.values[:, :2]).all()  # right-aligned, NaN-padded


def test_prepare_cleans_like_the_store_and_keeps_the_window():
    rng = np.random.default_rng(0)
    t = _day()
    v = rng.normal(10, 1, len(t))
    order = rng.permutation(len(t))
    ts = np.r_[t[order], t[:3], [np.nan, T0 - DAY]]
    vs = np.r_[v[order], [7.0, 8.0, 9.0], [1.0, 1.0]]
    vs[5] = np.nan
    got = _rows(prepare([(ts, vs)], AnalysisParams(detect_counters=False), now=NOW))[0]
    expect = pd.Series(np.r_[v, [7.0, 8.0, 9.0]], index=np.r_[t, t[:3]])
    expect = expect[~expect.index.duplicated(keep="last")].sort_index()
    expect = expect.drop(t[order[5]])  # its NaN value
    np.testing.assert_array_equal(got[0], expect.index.to_numpy())
    np.testing.assert_array_equal(got[1], expect.to_numpy())


@pytest.mark.parametrize("step", [1.0, 10.0])
def test_dense_series_are_averaged_to_the_analysis_resolution(step):
    rng = np.random.default_rng(1)
    t = _day(step)
    v = rng.normal(0, 1, len(t))
    prepared = prepare([(t, v)], AnalysisParams(), now=NOW)
    got_t, got_v = _rows(prepared)[0]
    assert prepared.resampled[0]
    s = pd.Series(v, index=pd.to_datetime(t, unit="s"))
    expect = s.resample("60s").mean().dropna()
    seconds = (expect.index - pd.Timestamp(0)) / pd.Timedelta(seconds=1)
    # the last step is still filling at NOW (it ends after NOW): not an analysis point yet
    assert seconds[-1] <= NOW < seconds[-1] + 60
    np.testing.assert_allclose(got_v, expect.to_numpy()[:-1], rtol=1e-12)
    np.testing.assert_array_equal(got_t, seconds.to_numpy()[:-1])
    # once the step is over (or without a clock: crucible on a file) it is kept
    for later in (NOW + 60, None):
        got_t, got_v = _rows(prepare([(t, v)], AnalysisParams(), now=later))[0]
        np.testing.assert_allclose(got_v, expect.to_numpy(), rtol=1e-12)


def test_sparse_and_regular_series_keep_their_own_points():
    rng = np.random.default_rng(2)
    for step in (60.0, 300.0):
        t = _day(step) + rng.uniform(-2, 2, int(DAY / step))  # jittered arrival times
        v = rng.normal(0, 1, len(t))
        prepared = prepare([(t, v)], AnalysisParams(), now=NOW)
        assert not prepared.resampled[0]
        np.testing.assert_array_equal(_rows(prepared)[0][1], v)


def test_native_resolution_is_capped_at_max_points():
    t = _day(1.0)
    prepared = prepare([(t, np.sin(t))], AnalysisParams(resolution=None, max_points=5000),
                       now=NOW)
    got_t, _ = _rows(prepared)[0]
    assert len(got_t) == 5000 and got_t[-1] == t[-1]


def test_one_high_resolution_series_does_not_widen_the_others():
    rng = np.random.default_rng(3)
    series = [(_day(60), rng.normal(0, 1, 1440)) for _ in range(20)]
    series.append((_day(1.0), rng.normal(0, 1, 86400)))
    params = AnalysisParams(resolution=None, max_points=86400)
    prepared = prepare(series, params, now=NOW)
    widths = {int(r): b.width for b in prepared.batches for r in b.rows}
    assert widths[0] == 1440 and widths[20] == 86400
    for b in prepared.batches:
        assert b.counts.min() >= (1 - params.bucket_padding) * b.width


def test_exceptions_in_upstream_order():
    rng = np.random.default_rng(4)
    ok = (_day(), rng.normal(0, 1, 1440))
    series = [
        ok,
        (np.array([]), np.array([])),
        (_day()[-50:], rng.normal(0, 1, 50)),  # too short
        (_day() - 1000, rng.normal(0, 1, 1440)),  # last point 1000 s old
        (_day(), np.r_[rng.normal(0, 1, 1340), np.full(100, 4.0)]),  # boring tail
        (_day()[-600:], rng.normal(0, 1, 600)),  # 10 h of a 24 h window
    ]
    params = AnalysisParams(incomplete_fraction=0.5, detect_counters=False)
    prepared = prepare(series, params, now=NOW)
    assert [Status(s) for s in prepared.status] == [
        Status.OK, Status.EMPTY, Status.TOO_SHORT, Status.STALE, Status.BORING,
        Status.INCOMPLETE]
    assert [int(r) for b in prepared.batches for r in b.rows] == [0]
    # no `now`: nothing is stale; incomplete off by default
    relaxed = prepare(series, AnalysisParams(detect_counters=False))
    assert relaxed.status[3] == Status.OK and relaxed.status[5] == Status.OK
    # a too-short series that is also stale reports TooShort, as upstream checks it first
    both = prepare([(_day()[-50:] - 1000, np.arange(50.0))], params, now=NOW)
    assert both.status[0] == Status.TOO_SHORT


def test_boredom_set_size():
    v = np.r_[np.arange(1340.0), np.tile([1.0, 2.0], 50)]
    series = [(_day(), v)]
    assert prepare(series, AnalysisParams(boredom_set_size=2, detect_counters=False),
                   now=NOW).status[0] == Status.BORING
    assert prepare(series, AnalysisParams(detect_counters=False), now=NOW).status[0] == Status.OK


def test_analyse_all_keeps_exception_rows_for_crucible():
    series = [(_day()[-50:], np.arange(50.0)), (np.array([]), np.array([]))]
    res = analyse(series, AnalysisParams(detect_counters=False, detector="consensus"),
                  analyse_all=True)
    assert res.status_of(0) == Status.TOO_SHORT and res.analysed(0) and not res.analysed(1)
    assert len(res.explain(0)) == 9 and res.explain(1) == ()


# -- counters --------------------------------------------------------------------------------


def reference_is_counter(v: np.ndarray) -> bool:
    """The documented rule, one series at a time in plain Python."""
    if len(v) < 90 or (v < 0).any():
        return False
    d = np.diff(v)
    inc, dec = int((d > 0).sum()), int((d < 0).sum())
    if inc < 10 or dec >= inc or dec / inc * 100 > 25 or dec + 1 > 280:
        return False
    if dec == 0:
        return True
    span = v.max() - v.min()
    pct = 3 if span > 10000 else 2 if span > 1000 else 1
    landings = v[1:][d < 0]
    return bool((landings <= span / 100 * pct).any())


def _counter_cases(rng):
    cases = []
    for _ in range(150):
        n = int(rng.integers(80, 400))
        kind = rng.integers(0, 6)
        if kind == 0:
            v = np.cumsum(rng.poisson(rng.uniform(0.2, 5), n)).astype(float)
        elif kind == 1:  # counter with resets to 0
            v = np.cumsum(rng.poisson(3, n)).astype(float)
            for r in rng.integers(1, n, rng.integers(1, 4)):
                v[r:] -= v[r]
        elif kind == 2:  # gauge
            v = rng.normal(100, 10, n)
        elif kind == 3:  # mostly up with small dips (not resets)
            v = np.cumsum(rng.choice([5.0, 5.0, 5.0, 5.0, 5.0, -1.0], n)) + 1000
        elif kind == 4:  # negative counter
            v = np.cumsum(rng.poisson(3, n)).astype(float) - 50
        else:  # flat with few steps
            v = np.repeat(np.arange(n // 30 + 1.0), 30)[:n]
        cases.append(v)
    return cases


def test_counter_detection_matches_the_rule_on_many_series():
    rng = np.random.default_rng(5)
    cases = _counter_cases(rng)
    counts = np.array([len(c) for c in cases])
    flags = strictly_increasing(np.concatenate(cases), counts)
    expect = [reference_is_counter(c) for c in cases]
    assert list(flags) == expect
    assert 20 < sum(expect) < len(cases) - 20  # both outcomes are exercised
    assert all(is_counter(c) == e for c, e in zip(cases[:30], expect[:30], strict=True))


def test_non_negative_derivative_drops_the_first_point_and_resets():
    t = np.arange(8.0)
    v = np.array([5.0, 7.0, 7.0, 10.0, 2.0, 4.0, 1.0, 1.0])
    tt, dv, counts = non_negative_derivative(t, v, np.array([8]), np.array([True]))
    assert list(counts) == [5]
    np.testing.assert_array_equal(tt, [1, 2, 3, 5, 7])
    np.testing.assert_array_equal(dv, [2, 0, 3, 2, 0])


def test_counters_are_analysed_as_their_derivative_and_the_flag_overrides():
    rng = np.random.default_rng(6)
    counter = np.cumsum(rng.poisson(5, 1440)).astype(float)
    gauge = rng.normal(100, 5, 1440)
    series = [(_day(), counter), (_day(), gauge), (_day(), counter), (_day(), gauge)]
    prepared = prepare(series, now=NOW, monotonic=[None, None, False, True])
    assert list(prepared.derivative) == [True, False, False, True]
    rows = _rows(prepared)
    np.testing.assert_array_equal(rows[0][1], np.diff(counter))
    np.testing.assert_array_equal(rows[2][1], counter)
    with pytest.raises(InvalidInput):
        prepare(series, monotonic=[None])


def test_a_counter_burst_is_an_anomaly_of_its_rate():
    rng = np.random.default_rng(7)
    rate = rng.poisson(50, 1440).astype(float)
    rate[-1] = 400
    res = analyse([(_day(), np.cumsum(rate))], now=NOW)
    assert res.prepared.derivative[0] and res.anomalous[0]
    assert res.series(0)[1][-1] == 400.0


def test_params_are_validated():
    with pytest.raises(InvalidInput):
        AnalysisParams(resolution=0)
    with pytest.raises(InvalidInput):
        AnalysisParams(incomplete_fraction=2)


def test_every_row_maps_back_to_its_input_index():
    rng = np.random.default_rng(8)
    lengths = rng.integers(100, 3000, 60)
    series = [(grid(int(n)), rng.normal(i, 1, int(n))) for i, n in enumerate(lengths)]
    res = analyse(series, AnalysisParams(resolution=None, detect_counters=False,
                                         full_duration=1e9))
    for i in range(len(series)):
        t, v = res.series(i)
        np.testing.assert_array_equal(v, series[i][1])


def test_prepare_flat_reads_the_stores_packed_points_like_prepare_reads_arrays():
    rng = np.random.default_rng(9)
    series = [(_day(), rng.normal(0, 1, 1440)), (np.array([]), np.array([])),
              (_day(10.0), rng.normal(5, 1, 8640)), (_day()[::-1], rng.normal(0, 1, 1440))]
    series.append((_day(), np.cumsum(rng.poisson(3, 1440)).astype(float)))
    packed = np.empty((sum(len(t) for t, _ in series), 2))  # (timestamp, value) pairs
    packed[:, 0] = np.concatenate([t for t, _ in series])
    packed[:, 1] = np.concatenate([v for _, v in series])
    counts = [len(t) for t, _ in series]
    a = prepare(series, now=NOW)
    b = prepare_flat(packed[:, 0], packed[:, 1], counts, now=NOW)  # strided views
    for field in ("status", "derivative", "resampled", "length", "last_timestamp"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    rows_a, rows_b = _rows(a), _rows(b)
    assert rows_a.keys() == rows_b.keys() == {0, 2, 3, 4}
    for i in rows_a:
        np.testing.assert_array_equal(rows_a[i][1], rows_b[i][1])
    with pytest.raises(InvalidInput):
        prepare_flat(packed[:, 0], packed[:, 1], [1, 2])
