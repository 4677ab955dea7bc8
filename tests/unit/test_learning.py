"""The learning detector (skyline.algorithms.learning): its state, its judgement and learning
point by point, bad input, ageing, and the same outcome whether metrics are stepped together
or one at a time (the per-series reference)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from skyline.algorithms.learning import (
    STATE_DTYPE,
    LearningDetector,
    LearningParams,
    upper_tail,
)
from skyline.analysis.config import from_settings
from skyline.analysis.replay import replay
from skyline.settings import Settings

T0 = 1_700_000_000.0
DAY = 86400.0


def _step_all(det: LearningDetector, t: np.ndarray, v: np.ndarray,
              learn_fired: bool = True) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """One series through the detector point by point (learning every point unless
    learn_fired is False, then not the fired ones: as if an incident were open)."""
    state = det.new(1)
    rows = np.zeros(1, dtype=np.int64)
    fired, score, texts = np.zeros(len(t), dtype=bool), np.zeros(len(t)), []
    for i in range(len(t)):
        j = det.judge(state, rows, t[i:i + 1], v[i:i + 1])
        fired[i], score[i] = j.fired[0], j.score[0]
        texts.append(det.explain(j, 0))
        mask = np.ones(1, dtype=bool) if learn_fired else ~j.fired
        det.learn(state, rows, t[i:i + 1], v[i:i + 1], j, mask)
    return fired, score, texts


def _noisy(step: float, days: float, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    n = int(days * DAY / step)
    rng = np.random.default_rng(seed)
    t = T0 + step * np.arange(n)
    v = 100 + 10 * np.sin(2 * np.pi * (t - T0) / DAY) + rng.normal(0, 1, n)
    return t, v


def test_state_is_small_versioned_and_binary() -> None:
    det = LearningDetector()
    assert STATE_DTYPE.itemsize <= 4096
    assert det.version >= 1 and det.state_dtype is STATE_DTYPE
    s = det.new(3)
    assert s.dtype == STATE_DTYPE and len(s.tobytes()) == 3 * STATE_DTYPE.itemsize


def test_upper_tail_matches_erfc() -> None:
    z = np.array([-3.0, -1.0, 0.0, 0.5, 1.0, 2.0, 4.26, 6.0, 10.0])
    want = np.array([0.5 * math.erfc(x / math.sqrt(2)) for x in z])
    got = upper_tail(z)
    assert np.allclose(got, want, rtol=2e-6, atol=1e-300)
    assert (got > 0).all() and (np.diff(got) < 0).all()


@pytest.mark.parametrize("step", [10.0, 60.0, 300.0])
def test_warm_up_is_time_not_points(step: float) -> None:
    det = LearningDetector(LearningParams(warm_up=6 * 3600.0))
    t, v = _noisy(step, 0.5)
    state = det.new(1)
    rows = np.zeros(1, dtype=np.int64)
    judged_at = None
    for i in range(len(t)):
        j = det.judge(state, rows, t[i:i + 1], v[i:i + 1])
        if j.judged[0] and judged_at is None:
            judged_at = t[i] - t[0]
        det.learn(state, rows, t[i:i + 1], v[i:i + 1], j, np.ones(1, dtype=bool))
    assert judged_at is not None
    # 6 h, or the min_points floor at the coarsest step (50 x 300 s < 6 h)
    assert 6 * 3600.0 <= judged_at <= 6 * 3600.0 + step


@pytest.mark.parametrize("step", [60.0, 300.0])
def test_a_spike_fires_and_says_why(step: float) -> None:
    t, v = _noisy(step, 4)
    k = len(t) - 20
    v[k] = 400.0
    fired, score, texts = _step_all(LearningDetector(), t, v, learn_fired=False)
    assert fired[k] and score[k] >= 1 - 1e-5
    assert "above the 30-day range" in texts[k] and "400" in texts[k]
    # quiet days: few alerts besides the spike
    assert fired[int(DAY / step):].sum() <= 3


def test_state_is_rebuilt_identically_stepping_many_metrics_or_one() -> None:
    """The per-series reference: metrics stepped together, each with its own timing, give
    exactly what each gives alone."""
    det = LearningDetector(LearningParams(warm_up=3 * 3600.0))
    series = []
    for seed, step in ((1, 60.0), (2, 300.0), (3, 120.0)):
        t, v = _noisy(step, 1.5, seed)
        v[len(v) // 2] += 80
        v[len(v) - 10:] -= 60
        series.append((t, v))
    alone = [_step_all(det, t, v, learn_fired=False)[:2] for t, v in series]
    state = det.new(3)
    n = max(len(t) for t, _ in series)
    fired = [np.zeros(len(t), dtype=bool) for t, _ in series]
    score = [np.zeros(len(t)) for t, _ in series]
    for i in range(n):
        rows = np.array([k for k, (t, _) in enumerate(series) if i < len(t)], dtype=np.int64)
        t = np.array([series[k][0][i] for k in rows])
        v = np.array([series[k][1][i] for k in rows])
        j = det.judge(state, rows, t, v)
        for pos, k in enumerate(rows.tolist()):
            fired[k][i], score[k][i] = j.fired[pos], j.score[pos]
        det.learn(state, rows, t, v, j, ~j.fired)
    for k in range(3):
        assert np.array_equal(fired[k], alone[k][0])
        assert np.array_equal(score[k], alone[k][1])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, 1e300, -1e300])
def test_bad_values_never_poison_the_state(bad: float) -> None:
    det = LearningDetector()
    t, v = _noisy(300.0, 3)
    k = len(t) // 2
    v[k] = bad
    v[k + 1] = bad
    v[-5] = 300.0  # a real anomaly afterwards
    state = det.new(1)
    rows = np.zeros(1, dtype=np.int64)
    fired = np.zeros(len(t), dtype=bool)
    for i in range(len(t)):
        j = det.judge(state, rows, t[i:i + 1], v[i:i + 1])
        fired[i] = j.fired[0]
        before = state.copy()
        det.learn(state, rows, t[i:i + 1], v[i:i + 1], j, np.ones(1, dtype=bool))
        if i in (k, k + 1):  # learnt nothing but the alert bookkeeping
            for f in ("n", "mean", "var", "slot_min", "slot_max", "trans", "lmean"):
                assert np.array_equal(state[f], before[f], equal_nan=True), f
    for f in ("mean", "var", "slot_min", "slot_max", "lmean", "lvar"):
        x = state[f]
        assert np.isfinite(x[~np.isnan(x)]).all() and (np.abs(x[~np.isnan(x)]) < 1e10).all()
    if abs(bad) == 1e300:
        assert fired[k]  # beyond anything: anomalous once warm
    assert fired[-5]


def test_gaps_duplicates_and_a_clock_going_back_do_not_crash_or_poison() -> None:
    det = LearningDetector()
    t, v = _noisy(300.0, 4)
    t[100] = t[99]  # duplicate
    t[500:] -= 3600  # clock back an hour
    t[700:] += 3 * DAY  # a three-day gap
    v[-3] = 500.0
    fired, score, _ = _step_all(det, t, v, learn_fired=False)
    assert np.isfinite(score).all() and fired[-3]


def test_the_range_ages_by_whole_days() -> None:
    """A high value is part of the range for range_memory, then forgotten."""
    p = LearningParams(warm_up=3600.0, range_memory=3 * DAY)
    det = LearningDetector(p)
    state = det.new(1)
    rows = np.zeros(1, dtype=np.int64)
    t = T0 + 600.0 * np.arange(int(6 * DAY / 600))
    v = np.full(len(t), 10.0) + (np.arange(len(t)) % 3)
    v[10] = 50.0  # within the warm-up: learnt as normal
    highs = []
    for i in range(len(t)):
        j = det.judge(state, rows, t[i:i + 1], v[i:i + 1])
        highs.append(j.range_high[0])
        det.learn(state, rows, t[i:i + 1], v[i:i + 1], j, np.ones(1, dtype=bool))
    highs_a = np.array(highs)
    age = t - t[10]
    # it joins the range lag / 2 to lag after it arrived (15-30 minutes by default)
    assert (highs_a[(age > p.lag) & (age < 2 * DAY)] == 50.0).all()
    assert (highs_a[(age > 0) & (age <= p.lag / 2)] < 50.0).all()
    assert (highs_a[age > 4 * DAY] == 12.0).all()


def test_a_decline_is_judged_against_the_range_before_it_not_one_it_dragged_along() -> None:
    """A fall that steps down by less than the range's widening each point is still a
    breakout: new extremes join the range only `lag` later (without it, each step would
    widen the range for the next; machine_temperature's drop in NAB went unseen that way)."""
    for lag, expect in ((1800.0, True), (0.0, False)):
        det = LearningDetector(LearningParams(warm_up=DAY, lag=lag))
        rng = np.random.default_rng(3)
        t = T0 + 300.0 * np.arange(int(3 * DAY / 300))
        v = 50.0 + 20.0 * np.sin(2 * np.pi * t / DAY) + rng.normal(0, 0.5, len(t))
        fall = np.linspace(30.0, 10.0, 12)  # 20 down in an hour, 1.7 a step (widening 2.2)
        t = np.concatenate([t, t[-1] + 300.0 * np.arange(1, 13)])
        v = np.concatenate([v, fall])
        fired, _, _ = _step_all(det, t, v, learn_fired=False)
        assert bool(fired[-12:].any()) is expect, lag


def test_lag_must_fit_in_a_range_slot() -> None:
    with pytest.raises(ValueError, match="lag"):
        LearningParams(range_memory=3 * DAY, lag=DAY)


def test_rebase_relearns_a_new_level() -> None:
    det = LearningDetector(LearningParams(warm_up=3600.0, min_points=10))
    t, v = _noisy(300.0, 2)
    state = det.new(1)
    rows = np.zeros(1, dtype=np.int64)
    for i in range(len(t)):
        j = det.judge(state, rows, t[i:i + 1], v[i:i + 1])
        det.learn(state, rows, t[i:i + 1], v[i:i + 1], j, np.ones(1, dtype=bool))
    t1 = t[-1] + 300
    det.rebase(state, rows, np.array([t1]), np.array([190.0]), np.array([230.0]))
    j = det.judge(state, rows, np.array([t1 + 300]), np.array([210.0]))
    assert not j.judged[0]  # learning again
    assert j.range_low[0] == 190.0 and j.range_high[0] == 230.0


# -- through the pipeline (replay = live, test_learning_live.py) ----------------------------

LEARNING = from_settings(Settings(analyzer={"detector": "learning"}))


def _events(t: np.ndarray, v: np.ndarray) -> list[tuple[float, str]]:
    r = replay("m", t, v, LEARNING.pipeline())
    return [(ev.timestamp, ev.status) for ev in r.events]


def test_a_level_that_doubles_for_good_stops_alerting() -> None:
    """Opened, re-alerted per EXPIRATION_TIME, closed as a new level after
    analyzer.new_level_after, then quiet: the detector re-learnt the metric."""
    t, v = _noisy(300.0, 5)
    at = len(t) - int(2.5 * DAY / 300)
    v[at:] *= 2
    ev = _events(t, v)
    statuses = [s for _, s in ev if _ >= t[at]]
    assert statuses[0] == "anomalous" and "new_level" in statuses
    closed = next(ts for ts, s in ev if s == "new_level")
    assert closed - t[at] == pytest.approx(LEARNING.rules.new_level_after, abs=300)
    assert not [ts for ts, s in ev if ts > closed and s == "anomalous"]
    assert "recovered" not in statuses


def test_one_incident_does_not_hide_the_next() -> None:
    t, v = _noisy(60.0, 2.2, seed=5)
    a = len(t) - 120
    v[a:a + 3] += 60  # a spike
    v[a + 40:a + 43] += 60  # the same again half an hour later
    ev = [ts for ts, s in _events(t, v) if s == "anomalous"]
    assert any(t[a] <= ts <= t[a + 2] for ts in ev)
    assert any(t[a + 40] <= ts <= t[a + 42] for ts in ev)


def test_a_sustained_outage_is_never_recovered() -> None:
    t, v = _noisy(60.0, 2.2, seed=6)
    v += 800
    a = len(t) - 200
    v[a:] = 0.0
    ev = [(ts, s) for ts, s in _events(t, v) if ts >= t[a]]
    assert ev and ev[0][1] == "anomalous"
    assert "recovered" not in {s for _, s in ev}


def test_a_slow_drift_beyond_the_range_is_found() -> None:
    t, v = _noisy(60.0, 2.2, seed=7)
    top = v[: len(t) - 60].max()
    a = len(t) - 60
    # +1.5 % a minute, ending about 10 % above the day's maximum
    v[a:] = v[a - 1] * 1.015 ** np.arange(1, 61)
    v[a:] = np.minimum(v[a:], top * 1.1)
    ev = [ts for ts, s in _events(t, v) if s == "anomalous" and ts >= t[a]]
    assert ev


def test_while_learning_the_score_detector_judges() -> None:
    """A metric younger than the warm-up is watched by range_excess: its spike alerts, and
    the event says the learning detector is still learning."""
    t, v = _noisy(300.0, 0.9)
    v[-10] = 1e6
    r = replay("m", t, v, LEARNING.pipeline())
    [ev] = [e for e in r.events if e.status == "anomalous"]
    assert ev.point == len(t) - 10 and ev.triggered == ("range_excess",)
    [learning] = [x for x in ev.results if x.algorithm == "learning"]
    assert learning.verdict is None and learning.text.startswith("still learning this metric")
    plain = replay("m", t, v, from_settings(Settings(analyzer={"detector": "score"})).pipeline())
    assert [(e.point, e.status) for e in r.events] == [(e.point, e.status) for e in plain.events]


def test_the_worked_example() -> None:
    """docs/algorithms.md, "Worked example": its figures."""
    rng = np.random.default_rng(12)
    n = 3 * 288
    t = T0 + 300.0 * np.arange(n)
    v = np.round(70 + 60 * np.sin(2 * np.pi * np.arange(n) / 288) ** 2 + rng.normal(0, 4, n), 1)
    v[n - 100] = 512.0
    r = replay("api.requests", t, v, LEARNING.pipeline())
    # range_excess judges from the 100th point (MIN_TOLERABLE_LENGTH) until the learner is
    # warm at row 288; it finds nothing on day 1
    assert int(np.flatnonzero(r.judged)[0]) == 99
    ev = [(e.point, e.status, e.band_low, e.band_high, e.score, e.results[0].text)
          for e in r.events]
    assert [(p, s) for p, s, *_ in ev] == [(764, "anomalous"), (767, "recovered")]
    _, _, low, high, score, text = ev[0]
    assert (low, high) == pytest.approx((57.575, 143.925))
    assert score == pytest.approx(1 - 1e-7 * 3.925 / (3.925 + 368.075), abs=1e-12)
    assert text == "512 is above the 30-day range 61.5 to 140"
    assert ev[1][5] == "113.5 is within what this metric usually does (30-day range 61.5 to 140)"


def _daily_shape(days: float, step: float = 300.0, seed: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """A strong daily cycle (50 to 150) with noise 1: the range is the whole cycle."""
    n = int(days * DAY / step)
    rng = np.random.default_rng(seed)
    t = T0 - T0 % DAY + step * np.arange(n)
    return t, 100 + 50 * np.sin(2 * np.pi * (t % DAY) / DAY) + rng.normal(0, 1, n)


def test_a_change_of_the_daily_shape_inside_the_range_is_found_after_an_hour() -> None:
    """The daily profile: on day 9 the series stays flat at 100 from 04:00 to 08:00, where it
    usually climbs to 150; 100 is well inside the 30-day range and its transitions are
    common, so only the profile sees it: an alert once the value has been far from the hour's
    usual for `daily_for` (1 h), saying so; then no repeat within `hold`. The same series
    without the change never fires the profile."""
    t, v = _daily_shape(10)
    det = LearningDetector()
    plain, _, _ = _step_all(det, t, v)
    flat = v.copy()
    start = T0 - T0 % DAY + 9 * DAY + 4 * 3600
    on = (t >= start) & (t < start + 4 * 3600)
    flat[on] = 100 + np.random.default_rng(5).normal(0, 1, on.sum())
    fired, _, texts = _step_all(det, t, flat, learn_fired=False)
    assert not plain[t >= T0 - T0 % DAY + 4 * DAY].any()
    hits = np.flatnonzero(fired & on)
    assert len(hits) == 1, [texts[i] for i in hits]
    (i,) = hits
    assert t[i] - start >= 3600 and "usually holds" in texts[i], texts[i]
    assert not fired[~on & (t >= T0 - T0 % DAY + 4 * DAY)].any()  # nor on the way back


def test_the_daily_profile_can_be_turned_off_and_is_validated() -> None:
    t, v = _daily_shape(10)
    start = T0 - T0 % DAY + 9 * DAY + 4 * 3600
    on = (t >= start) & (t < start + 4 * 3600)
    v[on] = 100.0
    fired, _, _ = _step_all(LearningDetector(LearningParams(daily_z=0)), t, v,
                            learn_fired=False)
    assert not fired[on].any()
    with pytest.raises(ValueError):
        LearningParams(daily_min_days=0)
    with pytest.raises(ValueError):
        LearningParams(daily_for=-1)


def test_a_daily_profile_alert_reaches_the_stages_marked_as_time_of_day() -> None:
    """The pipeline tells the stages which candidates the daily profile raised (Mirage then
    does not veto them by its daily-peaks rule: tests/unit/test_mirage_stage.py)."""
    from skyline.algorithms import AnalysisParams
    from skyline.analysis.incidents import IncidentRules
    from skyline.analysis.pipeline import Pipeline
    from skyline.analysis.stages import Candidate, Stages
    from skyline.core.events import StageVerdict

    seen: list[Candidate] = []

    class Recorder:
        name = "recorder"

        def check(self, c: Candidate, deadline: float) -> StageVerdict:
            seen.append(c)
            return StageVerdict(self.name, "abstain", "")

    t, v = _daily_shape(10)
    start = T0 - T0 % DAY + 9 * DAY + 4 * 3600
    on = (t >= start) & (t < start + 4 * 3600)
    v[on] = 100 + np.random.default_rng(5).normal(0, 1, on.sum())
    pipe = Pipeline(AnalysisParams(detector="learning"), IncidentRules(),
                    stages=Stages([Recorder()]))
    replay("app.daily", t, v, pipe)
    daily = [c for c in seen if c.time_of_day]
    assert len(daily) == 1 and daily[0].detector == "learning"
    assert start + 3600 <= daily[0].timestamp < start + 4 * 3600
    assert not [c for c in seen if c.time_of_day and c.timestamp < start]
