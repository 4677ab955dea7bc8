"""The incident machine (skyline.analysis.incidents): open on a fired point, re-alert every
EXPIRATION_TIME while still outside the band, recovered only after `recovery` seconds back
inside it, a new level after `new_level_after`; events for any source (analysis.emit)."""

from __future__ import annotations

import numpy as np
import pytest

from skyline.analysis import incidents
from skyline.analysis.emit import to_event
from skyline.analysis.incidents import Emit, IncidentRules
from skyline.analysis.pipeline import PointEvent
from skyline.core.errors import InvalidInput
from skyline.core.events import AlgorithmResult, AnomalyEvent, StageVerdict

RULES = IncidentRules(expiration=3600.0, recovery=600.0, new_level_after=4 * 3600.0)


def _walk(values, fired, low=90.0, high=110.0, step=60.0, rules=RULES, judged=None):
    """One metric through the machine point by point: (emits, learn mask)."""
    inc = incidents.fresh(1)
    emits, learn = [], []
    for i, (v, f) in enumerate(zip(values, fired, strict=True)):
        j = True if judged is None else judged[i]
        tr = incidents.step(inc, np.array([i * step]), np.array([float(v)]),
                            np.array([j]), np.array([bool(f)]), np.array([low]),
                            np.array([high]), rules, np.array([0.9 if f else 0.1]))
        emits.append(int(tr.emit[0]))
        learn.append(bool(tr.learn[0]))
    return emits, learn


def _at(emits, code):
    return [i for i, e in enumerate(emits) if e == code]


def test_a_spike_opens_then_recovers_after_the_recovery_period():
    values = [100] * 10 + [300] + [100] * 20
    fired = [False] * 10 + [True] + [False] * 20
    emits, learn = _walk(values, fired)
    assert _at(emits, Emit.ANOMALOUS) == [10]
    # back at point 11; recovered once 600 s (10 points) back inside: point 21
    assert _at(emits, Emit.RECOVERED) == [21]
    # nothing inside the incident teaches the detector; before and after it does
    assert learn[:10] == [True] * 10 and not any(learn[10:21]) and all(learn[21:])


def test_an_outage_that_persists_is_never_recovered_and_re_alerts_hourly():
    values = [100] * 10 + [0] * 200
    fired = [False] * 10 + [True] + [False] * 199  # the detector soon stops firing
    emits, _ = _walk(values, fired)
    assert _at(emits, Emit.RECOVERED) == []
    assert _at(emits, Emit.ANOMALOUS) == [10, 70, 130, 190]  # every 3600 s
    assert _at(emits, Emit.NEW_LEVEL) == []  # 200 points < 4 h


def test_a_metric_that_never_comes_back_closes_as_a_new_level():
    values = [100] * 10 + [200] * 300
    fired = [False] * 10 + [True] * 300
    emits, learn = _walk(values, fired)
    assert _at(emits, Emit.NEW_LEVEL) == [10 + 240]  # 4 h of 60 s points
    assert learn[250]  # the point that closes it as a new level teaches the detector
    # a new level is a fresh start: the next fire opens a new incident at once
    assert _at(emits, Emit.ANOMALOUS)[-1] == 251


def test_a_flap_back_inside_must_last_the_whole_recovery_period():
    values = [100] * 5 + [0] + [100] * 5 + [0] + [100] * 12
    fired = [False] * 5 + [True] + [False] * 18
    emits, _ = _walk(values, fired)
    assert _at(emits, Emit.ANOMALOUS) == [5]
    # back at 6, away again at 11, back at 12: recovered 600 s after 12
    assert _at(emits, Emit.RECOVERED) == [22]


def test_points_not_judged_still_count_against_the_band():
    # a flat outage becomes Boring for a window detector: not judged, still broken
    values = [100] * 5 + [0] * 100
    fired = [False] * 5 + [True] + [False] * 99
    judged = [True] * 6 + [False] * 99
    emits, _ = _walk(values, fired, judged=judged)
    assert _at(emits, Emit.RECOVERED) == [] and _at(emits, Emit.ANOMALOUS) == [5, 65]


def test_no_band_means_any_value_is_back():
    emits, _ = _walk([100] * 3 + [500] + [100] * 12, [False] * 3 + [True] + [False] * 12,
                     low=np.nan, high=np.nan)
    assert _at(emits, Emit.RECOVERED) == [14]  # back at 4, 600 s later


def test_zero_new_level_after_keeps_it_open():
    rules = IncidentRules(expiration=3600.0, recovery=600.0, new_level_after=0.0)
    emits, _ = _walk([100] + [200] * 500, [False] + [True] * 500, rules=rules)
    assert _at(emits, Emit.NEW_LEVEL) == []


def test_veto_closes_the_incident():
    inc = incidents.fresh(2)
    tr = incidents.step(inc, np.array([0.0, 0.0]), np.array([5.0, 5.0]),
                        np.array([True, True]), np.array([True, True]),
                        np.array([0.0, 0.0]), np.array([1.0, 1.0]), RULES)
    assert list(tr.emit) == [Emit.ANOMALOUS, Emit.ANOMALOUS] and tr.opened.all()
    incidents.veto(inc, np.array([1]))
    assert list(inc["open"]) == [1, 0]


def test_vectorised_equals_one_metric_at_a_time():
    rng = np.random.default_rng(5)
    n, k = 400, 30
    values = 100 + rng.normal(0, 5, (k, n))
    fired = rng.random((k, n)) < 0.02
    values[fired] += 80
    low, high = np.full(k, 85.0), np.full(k, 115.0)
    inc = incidents.fresh(k)
    together = np.zeros((k, n), dtype=np.int8)
    for i in range(n):
        t = np.full(k, i * 60.0)
        tr = incidents.step(inc, t, values[:, i], np.ones(k, bool), fired[:, i], low, high,
                            RULES)
        together[:, i] = tr.emit
    for m in range(k):
        emits, _ = _walk(values[m], fired[m], low=85.0, high=115.0)
        assert together[m].tolist() == emits


def test_rules_refuse_negative_times():
    with pytest.raises(InvalidInput):
        IncidentRules(recovery=-1)


def _point_event(status: str, t: float = 60.0) -> PointEvent:
    w = np.arange(t - 600, t + 1, 60.0)
    return PointEvent(metric="m", row=0, point=0, timestamp=t, value=42.0, score=0.8,
                      status=status, since=t, band_low=1.0, band_high=np.inf,
                      triggered=("range_excess",),
                      results=(AlgorithmResult("range_excess", True, 5.0, 3.0, "z 5"),),
                      stages=(StageVerdict("margin", "confirm", "big", {"excess": 2.0}),),
                      window_timestamps=w, window_values=np.ones_like(w))


def test_event_ids_are_deterministic_and_other_statuses_differ():
    a1 = to_event(_point_event("anomalous"), "analyzer", created=1.0)
    a2 = to_event(_point_event("anomalous"), "analyzer", created=2.0)
    assert a1.id == a2.id  # a retried run is the same event for panorama
    ids = {to_event(_point_event(s), "analyzer", 1.0).id
           for s in ("anomalous", "vetoed", "recovered", "new_level")}
    assert len(ids) == 4
    assert to_event(_point_event("anomalous"), "boundary", 1.0).id != a1.id
    # the JSON form keeps stages and the band (an infinite edge is null)
    back = AnomalyEvent.from_json(a1.to_json())
    assert back == a1.__class__(**{**a1.__dict__, "band_high": None})
    assert back.stages[0].figures == {"excess": 2.0} and back.band_low == 1.0
    assert back.window_arrays()[0].tolist() == list(np.arange(-540.0, 61.0, 60.0))


def test_unknown_status_is_refused():
    d = to_event(_point_event("anomalous"), "analyzer", 1.0).to_dict()
    d["status"] = "sort-of"
    with pytest.raises(InvalidInput):
        AnomalyEvent.from_dict(d)


def test_run_statistics_become_valid_self_metrics():
    from skyline.services.analyzer.run import RunReport, split
    from skyline.services.analyzer.service import record
    from skyline.store.sql.runs import RunStats
    from skyline.telemetry import Telemetry

    stats = RunStats(instance="i", started=0.0, duration=2.0, metrics=10, analysed=8,
                     anomalies=1, exceptions={"TooShort": 1, "DeletedByRoomba": 1,
                                              "CustomAlgorithmTimeout": 2},
                     stages={"fetch": 0.5, "fetch_wait": 0.1, "publish": 0.01})
    tel = Telemetry("analyzer", "i")
    ev = to_event(_point_event("vetoed"), "analyzer", 1.0)
    from skyline.analysis.stages import StageStats

    st = StageStats(checked=1, vetoed=1, per_stage={"mirage": {"veto": 1,
                                                               "remote_errors_timeout": 2}})
    record(tel, RunReport(stats=stats, events=[ev], stage_stats=st))
    counters, gauges = tel.snapshot()
    assert counters["stage_mirage_veto"] == 1
    assert counters["stage_mirage_remote_errors_timeout"] == 2
    assert counters["exception_too_short"] == 1
    assert counters["exception_deleted_by_roomba"] == 1
    assert counters["exception_custom_algorithm_timeout"] == 2
    assert counters["metrics"] == 10 and counters["runs"] == 1
    assert counters["events_vetoed"] == 1 and counters["anomalies"] == 1
    assert gauges["stage_fetch_wait_seconds"] == 0.1 and gauges["metrics_per_second"] == 5.0
    assert split(list("abcdefg"), 3) == [list("abc"), list("de"), list("fg")]
    assert split(list("ab"), 4) == [["a"], ["b"]] and split([], 2) == []
