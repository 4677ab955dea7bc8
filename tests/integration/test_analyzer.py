"""One analyzer pass against a real Redis: planted spike found, normal series not, the
exceptions counted, events on the stream with explanations and window, expiry and recovery,
SKIP_LIST, counters, worker processes, and custom algorithms that hang."""

from __future__ import annotations

import os
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import redis

from skyline.core.events import AnomalyEvent
from skyline.events.stream import FIELD
from skyline.services.analyzer import Analyzer
from skyline.settings import load_settings
from skyline.store import keys
from skyline.store.series import encode

STEP = 60.0


def _url(client: redis.Redis) -> str:
    kw = client.connection_pool.connection_kwargs
    if "path" in kw:
        return f"unix://{kw['path']}"
    return os.environ["SKYLINE_TEST_REDIS_URL"]


def put(client: redis.Redis, name: str, t: np.ndarray, v: np.ndarray) -> None:
    client.set(keys.series(name), encode(t, v))
    client.sadd(keys.METRIC_INDEX, name)


def events(client: redis.Redis) -> list[AnomalyEvent]:
    return [AnomalyEvent.from_json(f[FIELD]) for _, f in client.xrange(keys.ANOMALY_STREAM)]


def noise(seed: int, n: int = 200) -> np.ndarray:
    return np.random.default_rng(seed).normal(100.0, 5.0, n)


def grid(end: float, n: int = 200) -> np.ndarray:
    return end - STEP * np.arange(n)[::-1]


@pytest.fixture
def world(redis_client: redis.Redis) -> dict[str, object]:
    """20 normal metrics, one spiked (its newest point), one too short, one stale, one
    boring."""
    now = time.time()
    t = grid(now - 5)
    for i in range(20):
        put(redis_client, f"app.normal.{i:02d}", t, noise(i))
    spiked = noise(99)
    spiked[-1] += 200
    put(redis_client, "app.spiked", t, spiked)
    put(redis_client, "app.short", t[-50:], noise(7, 50))
    put(redis_client, "app.stale", t - 3000, noise(8))
    put(redis_client, "app.boring", t, np.full(200, 3.0))
    return {"now": now, "t": t, "spiked": spiked}


def _analyzer(client: redis.Redis, tmp_path: Path, processes: int = 0, **settings):
    s = load_settings(DATA_DIR=tmp_path / "var", **settings)
    return Analyzer(s, client, _url(client), processes=processes or None,
                    inline=processes == 0)


def found(report) -> list[str]:
    return [e.metric for e in report.events if e.status == "anomalous"]


def extend(client: redis.Redis, name: str, world, values) -> None:
    """The metric's series with `values` appended, one point a minute after its last."""
    t0 = world["t"]
    v0 = world["spiked"] if name == "app.spiked" else noise(5)
    t = np.r_[t0, t0[-1] + STEP * np.arange(1, len(values) + 1)]
    put(client, name, t, np.r_[v0, values])


@pytest.mark.parametrize("processes", [0, 2], ids=["inline", "2-workers"])
def test_one_pass_finds_the_planted_spike(redis_client, world, tmp_path, processes):
    a = _analyzer(redis_client, tmp_path, processes)
    try:
        r = a.run_once()
    finally:
        a.close()
    s = r.stats
    assert s.metrics == 24
    assert s.analysed == 21
    assert found(r) == ["app.spiked"]
    assert s.anomalies == 1
    assert s.exceptions == {"Boring": 1, "Stale": 1, "TooShort": 1}
    assert {"fetch", "prepare", "algorithms", "steps", "publish"} <= set(s.stages)
    assert s.duration > 0 and s.instance

    (ev,) = events(redis_client)
    assert (ev.metric, ev.source, ev.status) == ("app.spiked", "analyzer", "anomalous")
    # the default score detector: range_excess's anomaly score reached the threshold
    assert ev.triggered == ("range_excess",)
    assert ev.score >= load_settings().ANOMALY_SCORE_THRESHOLD
    assert ev.timestamp == pytest.approx(float(world["t"][-1]))  # type: ignore[index]
    # the default learning detector has not learnt these series for a day: range_excess
    # decided, and the learner's line says it is still learning
    assert [x.algorithm for x in ev.results] == ["range_excess", "learning"]
    assert all(x.text for x in ev.results)
    wt, wv = ev.window_arrays()
    assert len(wt) == 200 and wv[-1] == pytest.approx(ev.value)
    # the range the window kept before the spike is the incident's band
    assert ev.band_low is not None and ev.band_high is not None
    assert ev.band_high < ev.value and ev.since == ev.timestamp
    # every metric with points now has its analysis state, next to it
    assert redis_client.exists(keys.analysis_state("app.spiked"))
    assert redis_client.exists(keys.analysis_state("app.normal.00"))


def test_incident_expiry_catch_up_and_recovery_across_runs(redis_client, world, tmp_path):
    a = _analyzer(redis_client, tmp_path, EXPIRATION_TIME=3600)
    try:
        assert found(a.run_once()) == ["app.spiked"]
        again = a.run_once()  # no new point: nothing judged again, no event
        assert again.events == [] and again.stats.analysed == 0

        # still broken two minutes later: inside EXPIRATION_TIME, no event
        extend(redis_client, "app.spiked", world, [400.0, 390.0])
        r = a.run_once()
        assert r.events == []

        # back to normal, but only for 5 minutes: not recovered yet
        extend(redis_client, "app.spiked", world, [400.0, 390.0, *noise(5, 5)])
        assert a.run_once().events == []
        # ten minutes back inside the range it kept before (analyzer.recovery_period 600 s):
        # one recovered event; every new point was judged, oldest first
        extend(redis_client, "app.spiked", world, [400.0, 390.0, *noise(5, 12)])
        r = a.run_once()
        assert [(e.metric, e.status) for e in r.events] == [("app.spiked", "recovered")]
        rec = r.events[0]
        assert rec.timestamp == pytest.approx(float(world["t"][-1]) + 13 * STEP)
        assert a.run_once().events == []
    finally:
        a.close()
    statuses = [(e.metric, e.status) for e in events(redis_client)]
    assert statuses == [("app.spiked", "anomalous"), ("app.spiked", "recovered")]


def test_an_outage_that_persists_is_re_alerted_not_recovered(redis_client, world, tmp_path):
    a = _analyzer(redis_client, tmp_path, EXPIRATION_TIME=600)
    try:
        a.run_once()
        # 30 minutes at 0: the window detector gets used to it, the incident does not
        extend(redis_client, "app.spiked", world, [0.0] * 30)
        r = a.run_once()
    finally:
        a.close()
    assert [e.status for e in r.events] == ["anomalous"] * 3  # every EXPIRATION_TIME
    assert all(e.since == pytest.approx(float(world["t"][-1])) for e in r.events)
    assert "still anomalous" in r.events[0].results[0].text


def test_open_incidents_survive_a_restart(redis_client, world, tmp_path):
    a = _analyzer(redis_client, tmp_path)
    a.run_once()
    a.close()
    extend(redis_client, "app.spiked", world, [400.0])
    b = _analyzer(redis_client, tmp_path)  # a new analyzer, as after a restart
    try:
        r = b.run_once()
    finally:
        b.close()
    assert r.events == []  # still the same open incident, inside EXPIRATION_TIME
    assert len(events(redis_client)) == 1


def test_an_expired_incident_emits_again(redis_client, world, tmp_path):
    a = _analyzer(redis_client, tmp_path, EXPIRATION_TIME=0)
    try:
        a.run_once()
        extend(redis_client, "app.spiked", world, [400.0])
        r = a.run_once()
    finally:
        a.close()
    assert found(r) == ["app.spiked"]
    assert len(events(redis_client)) == 2


def test_skip_list_deleted_series_and_unreadable_states(redis_client, world, tmp_path):
    redis_client.sadd(keys.METRIC_INDEX, "app.ghost")  # trimmed away meanwhile
    redis_client.set(keys.analysis_state("app.spiked"), b"not a state record")
    a = _analyzer(redis_client, tmp_path, SKIP_LIST=["app.normal.0*"])
    try:
        r = a.run_once()
    finally:
        a.close()
    assert r.stats.metrics == 24 - 10 + 1
    assert r.stats.exceptions["DeletedByRoomba"] == 1
    assert "EmptyTimeseries" not in r.stats.exceptions
    assert found(r) == ["app.spiked"]  # the garbage state was rebuilt, not misread
    assert not redis_client.exists(keys.analysis_state("app.ghost"))


def test_counters_named_in_monotonic_namespaces_are_analysed_as_derivatives(redis_client,
                                                                            tmp_path):
    t = grid(time.time() - 5)
    rate = np.random.default_rng(3).poisson(20, 200).astype(float)
    rate[-1] = 400  # the rate spikes; the counter itself just climbs a bit faster
    put(redis_client, "app.requests.count", t, np.cumsum(rate))
    a = _analyzer(redis_client, tmp_path, MONOTONIC_METRIC_NAMESPACES=["**.count"],
                  analyzer={"detect_counters": False})
    try:
        r = a.run_once()
    finally:
        a.close()
    (e,) = r.events
    assert e.value == pytest.approx(400.0)  # the rate the detector judged, not the counter
    _, seen = e.window_arrays()
    assert seen[-1] == pytest.approx(400.0)


HANG = """
import time
def hang(current_skyline_app, parent_pid, timeseries, algorithm_parameters):
    time.sleep(600)
    return True, 1.0
"""


def test_a_hung_custom_algorithm_never_delays_the_run_past_its_limit(redis_client, world,
                                                                     tmp_path):
    src = tmp_path / "hang.py"
    src.write_text(textwrap.dedent(HANG))
    a = _analyzer(redis_client, tmp_path, processes=2, CUSTOM_ALGORITHMS={"hang": {
        "algorithm_source": str(src), "namespaces": ["app.normal.**", "app.spiked"],
        "max_execution_time": 0.5, "consensus": 1}})
    try:
        a.start()
        started = time.monotonic()
        r = a.run_once()
        assert time.monotonic() - started < 60  # the hang (600 s) was cut short
    finally:
        a.close()
    ex = r.stats.exceptions
    assert ex["CustomAlgorithmTimeout"] == 2  # once per worker, then skipped
    assert ex["CustomAlgorithmSkipped"] == 21 - 2
    assert found(r) == ["app.spiked"]  # the detector still decided
    (e,) = r.events
    assert e.results[-1].algorithm == "hang" and e.results[-1].verdict is None


def test_consensus_detector_stays_available(redis_client, world, tmp_path):
    """analyzer.detector = consensus: upstream's vote of the nine algorithms decides."""
    a = _analyzer(redis_client, tmp_path, analyzer={"detector": "consensus"})
    try:
        r = a.run_once()
    finally:
        a.close()
    assert found(r) == ["app.spiked"]
    (ev,) = events(redis_client)
    assert len(ev.triggered) >= 6 and 0.5 < ev.score <= 1
    assert [x.algorithm for x in ev.results][:2] == ["histogram_bins", "first_hour_average"]


def test_scores_are_kept_as_a_series_beside_the_metric(redis_client, world, tmp_path):
    from skyline.store.hotstore import HotStore
    from skyline.store.roomba import Roomba
    from skyline.store.scores import read_scores

    a = _analyzer(redis_client, tmp_path)
    try:
        (ev,) = a.run_once().events
        extend(redis_client, "app.spiked", world, [101.0, 99.0])
        a.run_once()
    finally:
        a.close()
    spiked, normal = read_scores(redis_client, ["app.spiked", "app.normal.00"])
    # one score per judged point: the spike's, then the two new points'
    assert spiked.timestamps.tolist() == [ev.timestamp, ev.timestamp + STEP,
                                          ev.timestamp + 2 * STEP]
    assert spiked.values[0] == pytest.approx(ev.score) and spiked.values[1] < 0.5
    assert len(normal.timestamps) == 1 and 0 <= normal.values[0] < 0.7
    # the roomba keeps them to the window; deleting the metric deletes them and its state
    Roomba(redis_client, retention=60.0).trim_names(["app.spiked"], ev.timestamp + 90)
    (trimmed,) = read_scores(redis_client, ["app.spiked"])
    assert trimmed.timestamps.tolist() == [ev.timestamp + STEP, ev.timestamp + 2 * STEP]
    HotStore(redis_client).delete(["app.spiked"])
    assert not redis_client.exists(keys.scores("app.spiked"),
                                   keys.analysis_state("app.spiked"))


def test_open_incidents_are_indexed_until_they_close(redis_client, world, tmp_path):
    import json

    a = _analyzer(redis_client, tmp_path, EXPIRATION_TIME=3600)
    try:
        (ev,) = a.run_once().events
        entry = json.loads(redis_client.hget(keys.OPEN_INCIDENTS, "app.spiked"))
        assert entry["since"] == ev.timestamp and entry["event"] == ev.id
        assert entry["band_high"] == ev.band_high and entry["score"] == ev.score
        assert redis_client.hlen(keys.OPEN_INCIDENTS) == 1
        extend(redis_client, "app.spiked", world, [*noise(5, 12)])
        assert [e.status for e in a.run_once().events] == ["recovered"]
        assert not redis_client.hexists(keys.OPEN_INCIDENTS, "app.spiked")
    finally:
        a.close()
