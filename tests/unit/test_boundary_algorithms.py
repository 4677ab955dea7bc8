"""Boundary's algorithms: hand-computed cases, the vectorised code against a plain per-series
reference written from upstream's rules, the fixed "frequent cliff" guards, and a drop-off
cliff on a real-looking traffic series (found) beside a slow decline (not)."""

from __future__ import annotations

import numpy as np
import pytest

from skyline.algorithms import boundary as alg

T0 = 1_700_000_000.0


def one(values, step=60.0, t0=T0, times=None):
    v = np.asarray(values, dtype=np.float64)
    t = np.asarray(times, dtype=np.float64) if times is not None else t0 + step * np.arange(len(v))
    return t, v


def batch(series, width=None):
    t = np.concatenate([s[0] for s in series])
    v = np.concatenate([s[1] for s in series])
    counts = np.array([len(s[0]) for s in series])
    return alg.tails(t, v, counts, width or int(counts.max()))


def reference_cliff(t, v, min_average=0.0, min_average_seconds=0.0, fix_guards=True):
    """Upstream's detect_drop_off_cliff, one series, in plain Python (guards counted)."""
    if len(v) < 30:
        return False
    end = t[-1]
    res = t[-1] - t[-2]
    ten = [x for tt, x in zip(t, v, strict=True) if end - 10 * res < tt <= end]
    if len(ten) <= 3:
        return False
    lo, hi = min(ten), max(ten)
    if lo < 0 or hi == 0 or lo == hi:
        return False
    total = sum(ten)
    avg = total / len(ten)
    if fix_guards:
        if sum(1 for x in ten if x <= lo) > 2:
            return False
        twenty = [x for tt, x in zip(t, v, strict=True) if end - 20 * res < tt <= end]
        if sum(1 for x in twenty if x <= lo) > 2:
            return False
    if min_average > 0 and min_average_seconds > 0:
        w = [x for tt, x in zip(t, v, strict=True) if end - min_average_seconds < tt <= end]
        if sum(w) / len(w) < min_average:
            return False
    trigger = None
    if hi < 101:
        trigger = 15
    if hi < 20:
        trigger = avg / 2
    if hi > 100:
        trigger = 100
    last = int(ten[-1])
    if last == 0:
        last = 0.1
    if last == 1:
        trigger = 1
    if last == 1 and hi < 10:
        trigger = 0.1
    if last == 0.1 and avg < 1 and total < 7:
        trigger = 7
    return int(avg / last) > trigger


def test_less_and_greater_than_hand_cases():
    value = np.array([99.0, 100.0, 101.0, np.nan])
    trig = np.full(4, 100.0)
    assert alg.less_than(value, trig).tolist() == [True, False, False, False]
    assert alg.greater_than(value, trig).tolist() == [False, False, True, False]


def test_smoothed_last_mean_and_median():
    tl = batch([one([1, 2, 3, 4, 100]), one([5, 5])])
    assert alg.smoothed_last(tl, "", 0).tolist() == [100.0, 5.0]
    assert alg.smoothed_last(tl, "mean", 3).tolist() == [pytest.approx(107 / 3), 5.0]
    assert alg.smoothed_last(tl, "median", 3).tolist() == [4.0, 5.0]


def test_cliff_hand_case():
    # 40 points at 1000 then a drop to 5: the ten-point window holds nine 1000s and the 5,
    # mean 900.5; 900.5 / 5 = 180 > 100 (max > 100): anomalous
    t, v = one([1000.0] * 39 + [1001.0, 5.0])
    c = alg.detect_drop_off_cliff(batch([(t, v)]), np.zeros(1), np.zeros(1))
    assert c.anomalous.tolist() == [True]
    assert c.trigger[0] == 100 and c.ratio[0] == pytest.approx(900.6 / 5)
    # a drop to 10: 900.6 / 10 = 90, not more than 100
    t, v = one([1000.0] * 39 + [1001.0, 10.0])
    assert not alg.detect_drop_off_cliff(batch([(t, v)]), np.zeros(1), np.zeros(1)).anomalous[0]


def test_cliff_refuses_negative_flat_short_and_low_min_average():
    drop = [1000.0] * 39 + [1001.0, 0.0]
    cases = [
        one([-1.0] + drop[1:30] + [-5.0] * 5 + [1000.0] * 5 + [0.0]),  # negative in window
        one([0.0] * 41),  # max 0
        one(drop[-29:]),  # 29 points
    ]
    c = alg.detect_drop_off_cliff(batch(cases), np.zeros(3), np.zeros(3))
    assert c.anomalous.tolist() == [False, False, False]
    t, v = one(drop)
    # mean of the last hour (every point here) is about 975; MIN_AVERAGE 2000 refuses
    c = alg.detect_drop_off_cliff(batch([(t, v)]), np.array([2000.0]), np.array([3600.0]))
    assert not c.anomalous[0]
    c = alg.detect_drop_off_cliff(batch([(t, v)]), np.array([500.0]), np.array([3600.0]))
    assert c.anomalous[0]


def test_frequent_cliff_guard_fixed_where_upstream_never_fired():
    # a peaky metric: it fell to 0 three times in the last ten points; upstream's guard
    # (len(np.where(...)) == 1) let it through, the fixed one says it is normal for it
    vals = [1000.0] * 32 + [0.0, 1000.0, 1000.0, 0.0, 1000.0, 1000.0, 1000.0, 1000.0, 0.0]
    t, v = one(vals)
    tl = batch([(t, v)])
    fixed = alg.detect_drop_off_cliff(tl, np.zeros(1), np.zeros(1))
    buggy = alg.detect_drop_off_cliff(tl, np.zeros(1), np.zeros(1), fix_guards=False)
    assert buggy.anomalous[0] and not fixed.anomalous[0]
    assert reference_cliff(t, v, fix_guards=False) and not reference_cliff(t, v)
    # the same in the twenty-point window only
    vals = [1000.0] * 22 + [0.0, 1000.0, 0.0] + [1000.0] * 15 + [0.0]
    t, v = one(vals)
    assert not alg.detect_drop_off_cliff(batch([(t, v)]), np.zeros(1), np.zeros(1)).anomalous[0]
    # the second point at the bottom of a cliff still counts (the guard allows 2)
    t, v = one([1000.0] * 40 + [0.0, 0.0])
    assert alg.detect_drop_off_cliff(batch([(t, v)]), np.zeros(1), np.zeros(1)).anomalous[0]


def traffic(days=1, step=60.0, seed=0):
    """Requests per minute: a daily cycle between ~300 and ~3000 with noise."""
    rng = np.random.default_rng(seed)
    n = int(days * 86400 / step)
    t = T0 + step * np.arange(n)
    phase = 2 * np.pi * (t % 86400) / 86400
    v = 1650 - 1350 * np.cos(phase) + rng.normal(0, 60, n)
    return t, np.round(np.clip(v, 0, None))


def test_cliff_found_on_traffic_and_slow_decline_not():
    t, v = traffic()
    ok = alg.detect_drop_off_cliff(batch([(t, v)]), np.zeros(1), np.zeros(1))
    assert not ok.anomalous[0]
    # the service fails: traffic drops to almost nothing
    cliff = v.copy()
    cliff[-1] = 3.0
    # a slow decline: the last two hours fall linearly to 5 % of the level
    decline = v.copy()
    decline[-120:] = v[-120:] * np.linspace(1.0, 0.05, 120)
    c = alg.detect_drop_off_cliff(batch([(t, cliff), (t, decline)]), np.zeros(2), np.zeros(2))
    assert c.anomalous.tolist() == [True, False]


def test_vectorised_equals_per_series_reference():
    rng = np.random.default_rng(7)
    series = []
    for i in range(300):
        n = int(rng.integers(25, 120))
        step = float(rng.choice([10.0, 60.0]))
        times = T0 + step * np.arange(n)
        if i % 7 == 0:  # irregular spacing
            times = T0 + np.cumsum(rng.choice([step, 2 * step, step / 2], n))
        level = float(rng.choice([5.0, 50.0, 500.0, 5000.0]))
        v = np.round(level + rng.normal(0, level / 10, n))
        if i % 3 == 0:
            v[-1] = float(rng.choice([0.0, 1.0, level / 50]))
        if i % 11 == 0:
            v[-12:-1:3] = 0.0
        series.append((times, np.clip(v, 0, None) if i % 13 else v))
    ma = rng.choice([0.0, 10.0, 400.0], len(series))
    mas = rng.choice([0.0, 600.0, 3600.0], len(series))
    t = np.concatenate([s[0] for s in series])
    v = np.concatenate([s[1] for s in series])
    counts = np.array([len(s[0]) for s in series])
    tl = alg.tails_covering(t, v, counts, 21, mas, res_points=20)
    got = alg.detect_drop_off_cliff(tl, ma, mas).anomalous
    want = [reference_cliff(s[0], s[1], ma[i], mas[i]) for i, s in enumerate(series)]
    assert got.tolist() == want
    assert sum(want) > 20  # the cases exercise detections, not only refusals


def test_tails_covering_widens_for_time_windows():
    # dense old points, then sparse recent ones: an hour's window needs more than 21 columns
    times = np.concatenate([T0 + 10.0 * np.arange(400), T0 + 4000 + 300.0 * np.arange(5)])
    v = np.arange(len(times), dtype=np.float64)
    tl = alg.tails_covering(times, v, np.array([len(times)]), 21, np.array([3600.0]))
    inside = tl.t[0][np.isfinite(tl.t[0])]
    assert inside[0] <= times[-1] - 3600
    assert tl.width < len(times)


def test_pre_checks():
    short = one([5.0] * 10, t0=T0 + 140 * 60)
    flat = one([5.0] * 150)
    varied = one(list(range(150)))
    old = one(list(range(150)), t0=T0 - 10_000)
    tl = batch([short, flat, varied, old])
    now = float(varied[0][-1]) + 30
    assert alg.too_short(tl, 100).tolist() == [True, False, False, False]
    assert alg.boring(tl, 100, 1).tolist() == [True, True, False, False]
    assert alg.stale(tl, now, 500).tolist() == [False, False, False, True]
    assert alg.stale(tl, now, 0).tolist() == [False] * 4
    two = one([1.0, 2.0] * 75)
    assert alg.boring(batch([two, varied]), 100, 2).tolist() == [True, False]
