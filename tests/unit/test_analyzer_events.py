"""The open-anomaly state machine: one event per metric per EXPIRATION_TIME while anomalous,
`recovered` when next judged normal; and how a run's judgements become events."""

from __future__ import annotations

import numpy as np
import pytest

from skyline.analysis.decide import decide
from skyline.analysis.incidents import Incident, judged_anomalous, judged_normal
from skyline.analysis.judge import Judgement
from skyline.core.errors import InvalidInput
from skyline.core.events import AlgorithmResult, AnomalyEvent

EXP = 3600.0


def test_first_anomaly_opens_an_incident_and_emits():
    inc, emit = judged_anomalous(None, 1000.0, EXP)
    assert emit and inc == Incident(1000.0, 1000.0, 1)


def test_continuing_anomaly_emits_once_per_expiration():
    inc, _ = judged_anomalous(None, 0.0, EXP)
    emitted = []
    for t in np.arange(60.0, 3 * EXP + 1, 60.0):
        inc, emit = judged_anomalous(inc, float(t), EXP)
        if emit:
            emitted.append(t)
    assert emitted == [EXP, 2 * EXP, 3 * EXP]
    assert inc.since == 0.0 and inc.events == 4


def test_the_same_point_judged_again_never_emits_twice():
    inc, _ = judged_anomalous(None, 500.0, 0.0)  # even with no expiration at all
    for _ in range(3):
        inc, emit = judged_anomalous(inc, 500.0, 0.0)
        assert not emit
    inc, emit = judged_anomalous(inc, 560.0, 0.0)
    assert emit


def test_an_older_point_does_not_emit():
    inc, _ = judged_anomalous(None, 10_000.0, EXP)
    _, emit = judged_anomalous(inc, 10_000.0 - 2 * EXP, EXP)
    assert not emit


def test_recovered_only_when_an_incident_is_open():
    assert not judged_normal(None)
    assert judged_normal(Incident(1.0, 1.0))


def test_incident_json_round_trip_and_garbage():
    inc = Incident(1.5, 2.5, 3)
    assert Incident.from_json(inc.to_json()) == inc
    with pytest.raises(InvalidInput):
        Incident.from_json(b"{not json")
    with pytest.raises(InvalidInput):
        Incident.from_json('{"since": 1}')


def _j(metric: str, t: float, anomalous: bool = True) -> Judgement:
    w = np.arange(t - 600, t + 1, 60.0)
    return Judgement(metric=metric, timestamp=t, value=42.0, anomalous=anomalous, score=0.8,
                     status="Analysed", triggered=("grubbs",) if anomalous else (),
                     results=(AlgorithmResult("grubbs", anomalous, 5.0, 3.0, "z 5"),),
                     window_timestamps=w, window_values=np.ones_like(w))


def test_decide_new_continuing_and_recovered():
    open_ = {"b": Incident(0.0, 100.0), "c": Incident(0.0, 100.0)}
    d = decide([_j("a", 200.0), _j("b", 200.0), _j("b2", 5.0)],
               [_j("c", 300.0, anomalous=False), _j("z", 300.0, anomalous=False)],
               open_, EXP, created=1.0)
    assert sorted(e.metric for e in d.anomalous) == ["a", "b2"]
    assert [e.metric for e in d.recovered] == ["c"]
    assert d.suppressed == 1  # b: 100 s after its last event
    assert set(d.updates) == {"a", "b2"} and d.closed == ["c"]
    ev = {e.metric: e for e in d.events}
    assert ev["a"].source == "analyzer" and ev["a"].status == "anomalous"
    assert ev["a"].triggered == ("grubbs",) and ev["a"].results[0].text == "z 5"
    assert ev["a"].window_arrays()[0].tolist() == list(np.arange(-400.0, 201.0, 60.0))
    assert ev["c"].status == "recovered" and ev["c"].timestamp == 300.0


def test_event_ids_are_deterministic_and_recovery_ids_differ():
    a1 = decide([_j("m", 60.0)], [], {}, EXP, created=1.0).events[0]
    a2 = decide([_j("m", 60.0)], [], {}, EXP, created=2.0).events[0]
    assert a1.id == a2.id  # a retried publish is the same event for panorama
    r = decide([], [_j("m", 60.0, anomalous=False)], {"m": Incident(0, 0)}, EXP).events[0]
    assert r.id != a1.id
    assert AnomalyEvent.from_json(r.to_json()) == r


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
    record(tel, RunReport(stats=stats, anomalies=1))
    counters, gauges = tel.snapshot()
    assert counters["exception_too_short"] == 1
    assert counters["exception_deleted_by_roomba"] == 1
    assert counters["exception_custom_algorithm_timeout"] == 2
    assert counters["metrics"] == 10 and counters["runs"] == 1
    assert gauges["stage_fetch_wait_seconds"] == 0.1 and gauges["metrics_per_second"] == 5.0
    assert split(list("abcdefg"), 3) == [list("abc"), list("de"), list("fg")]
    assert split(list("ab"), 4) == [["a"], ["b"]] and split([], 2) == []
