"""range_excess, the score detector's algorithm: breakouts from the window's range and steps,
in standard deviations, scored z / (1 + z)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from skyline.algorithms import ANOMALOUS, NORMAL, AnalysisParams, Batch, Status, analyse
from skyline.algorithms.range_excess import RangeExcess, to_score, to_sigmas
from skyline.core.errors import InvalidInput


def _run(values, **kw):
    v = [np.asarray(x, dtype=float) for x in values]
    return RangeExcess(**kw).run(Batch.from_series([(np.arange(len(x)) * 60.0, x) for x in v]))


def test_score_mapping():
    assert to_score(np.array([0.0, 1.0, 3.0, np.inf, np.nan])).tolist() == [0, 0.5, 0.75, 1, 0]
    assert to_sigmas(0.75) == pytest.approx(3.0) and math.isinf(to_sigmas(1.0))


def test_level_breakout_by_hand():
    # earlier points 1, 2, 3, 2, 1: range [1, 3], sample std sqrt(0.7); steps 1, 1, 1, 1
    # (std 0, max 1); last 5: 2 beyond the range -> 2 / sqrt(0.7) sigma; its step 4 exceeds
    # the largest step by 3 with zero step spread -> inf: the larger, inf, wins
    op = _run([[1, 2, 3, 2, 1, 5]], tail=1)
    assert op.context["level_z"][0] == pytest.approx(2 / math.sqrt(0.7))
    assert math.isinf(op.context["step_z"][0]) and math.isinf(op.statistic[0])
    assert op.verdict[0] == ANOMALOUS and op.context["score"][0] == 1.0


def test_small_level_breakout_without_a_step_breakout_by_hand():
    # earlier 0, 2, 1, 3, 2: range [0, 3], mean 1.6, sample std sqrt(5.2 / 4) = sqrt(1.3);
    # last 3.5 is 0.5 above the range -> 0.5 / sqrt(1.3) = 0.4385 sigma; steps 2, 1, 2, 1
    # (max 2); the last step 1.5 is not the largest -> 0. score z / (1 + z) = 0.3048: normal
    op = _run([[0, 2, 1, 3, 2, 3.5]], tail=1)
    z = 0.5 / math.sqrt(1.3)
    assert op.context["step_z"][0] == 0.0
    assert op.statistic[0] == pytest.approx(z)
    assert op.context["score"][0] == pytest.approx(z / (1 + z))
    assert op.verdict[0] == NORMAL


def test_inside_the_range_scores_zero_and_constant_is_normal():
    op = _run([[1, 5, 2, 4, 3, 3], [7.0] * 10], tail=1)
    assert op.statistic.tolist() == [0.0, 0.0]
    assert (op.verdict == NORMAL).all()


def test_tail_judges_each_new_point_against_the_points_before_it():
    rng = np.random.default_rng(1)
    v = rng.normal(100, 5, 200)
    v[-3] += 100  # a spike two points back, then back to normal
    assert _run([v], tail=1).verdict[0] == NORMAL
    three = _run([v], tail=3)
    assert three.verdict[0] == ANOMALOUS
    assert three.context["last"][0] == pytest.approx(v[-3])  # the point that spoke


def test_too_few_points_abstain_and_bad_threshold_is_refused():
    op = _run([[1, 2, 3], [1, 2, 3, 9]], tail=3)
    assert op.verdict[0] == -1 and op.verdict[1] == ANOMALOUS
    with pytest.raises(InvalidInput):
        RangeExcess(threshold=0)
    with pytest.raises(InvalidInput):
        RangeExcess(tail=0)


def test_analyse_flags_when_the_score_reaches_the_threshold():
    rng = np.random.default_rng(2)
    t = 1_600_000_000.0 + 60.0 * np.arange(300)
    normal = rng.normal(50, 2, 300)
    spiked = normal.copy()
    spiked[-1] += 40
    res = analyse([(t, normal), (t, spiked)], AnalysisParams(detector="score"), now=float(t[-1]))
    assert res.anomalous.tolist() == [False, True]
    assert res.score[1] >= AnalysisParams(detector="score").score_threshold > res.score[0]
    assert res.triggered(1) == ("range_excess",)


def test_sparse_series_are_judged_at_their_own_step():
    # hourly points: a day holds 24, never MIN_TOLERABLE_LENGTH (100); half of them suffice
    t = 1_600_000_000.0 + 3600.0 * np.arange(24)
    v = np.random.default_rng(3).normal(10, 1, 24)
    p = AnalysisParams(detector="score")
    assert analyse([(t, v)], p, now=float(t[-1])).status[0] == Status.OK
    assert analyse([(t[:11], v[:11])], p, now=float(t[10])).status[0] == Status.TOO_SHORT
    upstream = AnalysisParams(detector="score", short_fraction=0)
    assert analyse([(t, v)], upstream, now=float(t[-1])).status[0] == Status.TOO_SHORT
    # minute points still need MIN_TOLERABLE_LENGTH
    tm = 1_600_000_000.0 + 60.0 * np.arange(99)
    assert analyse([(tm, v.repeat(5)[:99])], p, now=float(tm[-1])).status[0] == \
        Status.TOO_SHORT
