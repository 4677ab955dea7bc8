"""The Mirage stage on a candidate whose history is given (as replay gives it)."""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pytest

from skyline.algorithms import AnalysisParams
from skyline.analysis.mirage import MirageRules, MirageStage, factory, rules_from
from skyline.analysis.stages import STAGES, Candidate, StageContext, build
from skyline.core.errors import InvalidInput
from skyline.settings import load_settings

DAY = 86400.0
END = 1_800_000_000.0 - 1_800_000_000.0 % DAY + 8 * DAY  # midnight UTC


def nightly(days: float = 8, seed: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """60-s points around 100, and a nightly job that lifts the metric to ~150 from 02:00 to
    02:10 every day."""
    rng = np.random.default_rng(seed)
    t = np.arange(END - days * DAY, END + 3 * 3600, 60.0)
    v = 100 + rng.normal(0, 2, t.size)
    job = (t % DAY >= 7200) & (t % DAY < 7800)
    v[job] += 50 + rng.normal(0, 2, job.sum())
    return t, v


def candidate(t, v, at: float, value: float, metric: str = "app.jobs") -> Candidate:
    keep = t < at

    def history(start: float, end: float):
        sel = (t >= start) & (t <= end) & keep
        return np.append(t[sel], at), np.append(v[sel], value)

    w = (t > at - DAY) & keep
    return Candidate(metric=metric, timestamp=at, value=value, score=0.9,
                     band_low=float(v[w].min()), band_high=float(v[w].max()) - 30,
                     window_timestamps=t[w], window_values=v[w], history=history)


def stage(**kw) -> MirageStage:
    kw.setdefault("rules", MirageRules((("app.**", 168.0),)))
    kw.setdefault("params", AnalysisParams())
    return MirageStage(**kw)


def deadline() -> float:
    return time.monotonic() + 60


def test_a_nightly_job_is_vetoed_with_a_reason():
    t, v = nightly()
    at = END + 7200 + 300  # 02:05 today, the job running again
    got = stage().check(candidate(t, v, at, 151.0), deadline())
    assert got.verdict == "veto", got
    assert "168 h at 600 s" in got.reason or "similar peaks" in got.reason
    assert got.figures["history_hours"] >= 167


def test_a_planted_anomaly_is_confirmed():
    t, v = nightly()
    at = END + 14 * 3600  # 14:00: never anything there before
    got = stage().check(candidate(t, v, at, 190.0), deadline())
    assert got.verdict == "confirm", got
    assert got.reason.startswith("anomalous on")


def test_daily_peaks_rule_vetoes_what_the_judgement_would_confirm():
    # a judgement that calls everything anomalous: only the daily-peaks rule can veto
    eager = AnalysisParams(score_threshold=1e-9)
    t, v = nightly()
    at = END + 7200 + 300
    got = stage(params=eager).check(candidate(t, v, at, 159.0), deadline())
    assert got.verdict == "veto", got
    assert "similar peaks near 02:05 on earlier days" in got.reason
    assert got.figures["similar_peaks"] >= 3
    # off: the same candidate is confirmed
    off = stage(params=eager, daily_peaks=0).check(candidate(t, v, at, 159.0), deadline())
    assert off.verdict == "confirm"
    # a peak well beyond the earlier ones is not "within their range"
    far = stage(params=eager).check(candidate(t, v, at, 400.0), deadline())
    assert far.verdict == "confirm"


def test_a_learning_detector_candidate_is_not_rejudged_only_its_daily_peaks_are_checked():
    """The learning detector judged against a 30-day memory: Mirage does not overrule it
    with range_excess on a week (a pattern inside the week's range stays an anomaly), but a
    peak that repeats every day at that time is still vetoed."""
    t, v = nightly()
    inside = dataclasses.replace(candidate(t, v, END + 14 * 3600, 140.0), detector="learning")
    plain = stage().check(dataclasses.replace(inside, detector="score"), deadline())
    assert plain.verdict == "veto"  # within the week's range: range_excess says no
    got = stage().check(inside, deadline())
    assert got.verdict == "confirm" and "learning detector" in got.reason, got
    job = dataclasses.replace(candidate(t, v, END + 7200 + 300, 151.0), detector="learning")
    again = stage().check(job, deadline())
    assert again.verdict == "veto" and "similar peaks near 02:05" in again.reason, again
    # the learner's daily profile already compared it with the same hour on earlier days:
    # the daily-peaks rule has nothing to add
    daily = stage().check(dataclasses.replace(job, time_of_day=True), deadline())
    assert daily.verdict == "confirm" and "same hour" in daily.reason, daily


def test_abstains_without_scope_history_or_budget():
    t, v = nightly()
    at = END + 7200 + 300
    out = stage().check(candidate(t, v, at, 151.0, metric="db.load"), deadline())
    assert out.verdict == "abstain" and "no second-order resolution" in out.reason
    short_t, short_v = t[t > at - 30 * 3600], v[t > at - 30 * 3600]
    out = stage().check(candidate(short_t, short_v, at, 151.0), deadline())
    assert out.verdict == "abstain" and "h of history (needs 48 h)" in out.reason
    out = stage().check(candidate(t, v, at, 151.0), time.monotonic() - 1)
    assert out.verdict == "abstain"


def test_a_counter_abstains():
    t = np.arange(END - 3 * DAY, END, 60.0)
    v = np.cumsum(np.full(t.size, 5.0))
    out = stage().check(candidate(t, v, END, 50.0), deadline())
    assert out.verdict == "abstain" and "counter" in out.reason


def test_scopes_from_settings_namespaces_then_alert_rules():
    s = load_settings(
        mirage={"namespaces": [{"pattern": "web.**", "hours": 72}]},
        ALERTS=[{"pattern": "web.**", "channel": "syslog", "second_order_resolution_hours": 168},
                {"pattern": "db.*", "channel": "syslog", "second_order_resolution_hours": 336},
                {"pattern": "other.*", "channel": "syslog"}],
        alerters={"syslog": {"enabled": True}})
    rules = rules_from(s)
    assert rules.hours("web.a.b") == 72  # [mirage] first
    assert rules.hours("db.x") == 336
    assert rules.hours("other.x") is None
    st = factory({"namespaces": {"x.*": 48}}, StageContext(settings=s))
    assert st.rules.hours("x.y") == 48 and st.resolution == 600 and st.daily_peaks == 3


def test_registered_and_options_checked():
    assert "mirage" in STAGES
    [st] = build(["mirage"], {"mirage": {"namespaces": {"a.*": 100}}})
    assert st.name == "mirage"
    with pytest.raises(InvalidInput):
        build(["mirage"], {"mirage": {"namespaces": {"a.*": 5}}})
    with pytest.raises(InvalidInput):
        build(["mirage"], {"mirage": {"namespaces": {"re:(": 100}}})


def _daily_peaks_by_day(st: MirageStage, b, c, up: bool) -> tuple[int, float, float]:
    """The rule written as a loop over the days (the reference for the vectorised one)."""
    ext = b.max if up else b.min
    sign = 1.0 if up else -1.0
    median = float(np.median(b.mean))
    dev = sign * (c.value - median)
    if not dev > 0:
        return 0, 0.0, dev
    mid = b.timestamps + st.resolution / 2
    peaks, largest = 0, 0.0
    for k in range(1, int((c.timestamp - b.timestamps[0]) // DAY) + 1):
        near = np.abs(mid - (c.timestamp - k * DAY)) <= st.peak_window + st.resolution / 2
        if near.any():
            went = float(np.max(sign * (ext[near] - median)))
            if went >= 0.5 * dev:
                peaks += 1
                largest = max(largest, went)
    return peaks, largest, dev


@pytest.mark.parametrize("window", [0.0, 600.0, 3600.0, 43200.0])
@pytest.mark.parametrize("at,value", [(END + 7500, 151.0), (END + 7500, 60.0),
                                      (END + 50000, 190.0), (END + 3000, 101.0)])
def test_daily_peaks_vectorised_equals_the_loop_over_days(window, at, value):
    t, v = nightly()
    st = stage(peak_window=window)
    c = candidate(t, v, at, value)
    b = st.merged(c, 168 * 3600.0)
    for up in (True, False):
        assert st._daily_peaks(b, c, up) == pytest.approx(_daily_peaks_by_day(st, b, c, up))


def test_check_many_gives_each_candidate_the_verdict_check_gives():
    t, v = nightly()
    short_t, short_v = nightly(days=1, seed=6)
    cands = [candidate(t, v, END + 7500, 151.0), candidate(t, v, END + 50000, 190.0),
             candidate(t, v, END + 50000, 190.0, metric="other.jobs"),  # out of scope
             candidate(short_t, short_v, END + 3600, 190.0),  # too little history
             candidate(t, v, END + 7500, 60.0)]
    st = stage(rules=MirageRules((("app.**", 168.0),)))
    many = st.check_many(cands, deadline())
    one = [st.check(c, deadline()) for c in cands]
    assert many == one
    assert [x.verdict for x in many] == ["veto", "confirm", "abstain", "abstain", "confirm"]


def test_crucible_runs_mirage_on_a_file_longer_than_a_day():
    """A job every other day: absent from the analyzer's 24 h, so the newest point (the job
    starting) is a candidate; on 8 days of file Mirage vetoes it, on 1 day it abstains."""
    from skyline.analysis.crucible import crucible_pipeline, examine

    rng = np.random.default_rng(5)
    t = np.arange(END - 8 * DAY, END + 7200 + 1, 60.0)
    v = 100 + rng.normal(0, 2, t.size)
    day = np.floor((t - t[0]) / DAY)
    v[(t % DAY >= 7200) & (t % DAY < 7800) & (day % 2 == 0)] += 50
    s = load_settings(analyzer={"stages": ["mirage"]},
                      mirage={"namespaces": [{"pattern": "app.**", "hours": 168}]})
    with crucible_pipeline(s) as p:
        week = examine(p, "app.jobs", t, v)
        last = t > t[-1] - DAY - 600
        day_only = examine(p, "app.jobs", t[last], v[last])
        assert p.history is None  # examine leaves the pipeline as it found it
    assert week.candidate and week.event == "vetoed" and not week.anomalous
    assert week.stages[0].stage == "mirage" and week.stages[0].verdict == "veto"
    assert week.stages[0].figures["history_hours"] >= 167
    assert day_only.anomalous and day_only.stages[0].verdict == "abstain"
    assert "only 24" in day_only.stages[0].reason


@pytest.mark.parametrize("setting", ["periodic", "always", "off"])
def test_periodic_and_always_checks_judge_points_the_analyzer_did_not_flag(setting):
    """MIRAGE_PERIODIC_CHECK / MIRAGE_ALWAYS_METRICS: Mirage judges newest points the
    detector did not flag; its confirm makes them candidates (here a Mirage that calls
    everything anomalous, on a quiet series the analyzer never flags)."""
    from skyline.analysis.config import from_settings
    from skyline.analysis.replay import replay

    rng = np.random.default_rng(9)
    t = np.arange(END - 4 * DAY, END, 300.0)
    v = np.round(100 + rng.normal(0, 1, t.size), 2)
    extra = {"off": {},
             "periodic": {"MIRAGE_PERIODIC_CHECK": True, "MIRAGE_PERIODIC_CHECK_INTERVAL": 7200,
                          "MIRAGE_PERIODIC_CHECK_NAMESPACES": ["app.**"]},
             "always": {"MIRAGE_ALWAYS_METRICS": ["app.quiet"]}}[setting]
    s = load_settings(analyzer={"stages": ["mirage"]},
                      mirage={"namespaces": [{"pattern": "app.**", "hours": 48}],
                              "min_history_hours": 24}, **extra)
    pipeline = from_settings(s).pipeline()
    (st,) = pipeline.stages.stages
    st.params = AnalysisParams(score_threshold=1e-9)  # everything is anomalous to it
    plain = replay("app.quiet", t, v, from_settings(load_settings()).pipeline())
    assert not [e for e in plain.events if e.status == "anomalous"]
    out = replay("app.quiet", t, v, pipeline)
    flagged = [e for e in out.events if e.status == "anomalous"]
    if setting == "off":
        assert flagged == []
        return
    assert flagged, "Mirage's confirm made no candidate"
    assert all(e.stages and e.stages[0].stage == "mirage" and e.stages[0].verdict == "confirm"
               for e in flagged)
    if setting == "periodic":  # at most one check per 2 h of the metric's time
        times = np.array([e.timestamp for e in flagged])
        assert np.all(np.diff(times) >= 7200)
