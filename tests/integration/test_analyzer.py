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

from skyline.core.events import AnomalyEvent, unpack_window
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
    """20 normal metrics, one spiked, one too short, one stale, one boring."""
    now = time.time()
    t = grid(now - 5)
    for i in range(20):
        put(redis_client, f"app.normal.{i:02d}", t, noise(i))
    spiked = noise(99)
    spiked[-3:] += 200
    put(redis_client, "app.spiked", t, spiked)
    put(redis_client, "app.short", t[-50:], noise(7, 50))
    put(redis_client, "app.stale", t - 3000, noise(8))
    put(redis_client, "app.boring", t, np.full(200, 3.0))
    return {"now": now, "t": t}


def _analyzer(client: redis.Redis, tmp_path: Path, processes: int = 0, **settings):
    s = load_settings(DATA_DIR=tmp_path / "var", **settings)
    return Analyzer(s, client, _url(client), processes=processes or None,
                    inline=processes == 0)


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
    assert [j.metric for j in r.found] == ["app.spiked"]
    assert s.anomalies == 1
    assert s.exceptions == {"Boring": 1, "Stale": 1, "TooShort": 1}
    assert {"fetch", "prepare", "algorithms", "publish"} <= set(s.stages)
    assert s.duration > 0 and s.instance

    (ev,) = events(redis_client)
    assert (ev.metric, ev.source, ev.status) == ("app.spiked", "analyzer", "anomalous")
    # the default score detector: range_excess's anomaly score reached the threshold
    assert ev.triggered == ("range_excess",)
    assert ev.score >= load_settings().ANOMALY_SCORE_THRESHOLD
    assert ev.timestamp == pytest.approx(float(world["t"][-1]))  # type: ignore[index]
    assert [x.algorithm for x in ev.results] == ["range_excess"]
    assert all(x.text for x in ev.results)
    wt, wv = ev.window_arrays()
    assert len(wt) == 200 and wv[-1] == pytest.approx(ev.value)


def test_expiry_and_recovery_across_runs(redis_client, world, tmp_path):
    a = _analyzer(redis_client, tmp_path, EXPIRATION_TIME=3600)
    try:
        first = a.run_once()
        again = a.run_once()  # the same data: no second event
        assert len(first.decisions.anomalous) == 1
        assert (len(again.decisions.events), again.decisions.suppressed) == (0, 1)
        assert redis_client.hexists(keys.ANALYZER_INCIDENTS, "app.spiked")

        # still anomalous a minute later: within EXPIRATION_TIME, no event
        t = grid(float(world["now"]) + 55, 201)  # type: ignore[arg-type]
        v = np.append(noise(99), 400.0)
        v[-4:] += 200
        put(redis_client, "app.spiked", t, v)
        assert a.run_once().decisions.suppressed == 1

        # back to normal: one recovered event, and the incident is closed
        put(redis_client, "app.spiked", t, noise(5, 201))
        r = a.run_once()
        assert [(e.metric, e.status) for e in r.decisions.events] == \
            [("app.spiked", "recovered")]
        assert not redis_client.hexists(keys.ANALYZER_INCIDENTS, "app.spiked")
        assert a.run_once().decisions.events == []
    finally:
        a.close()
    statuses = [(e.metric, e.status) for e in events(redis_client)]
    assert statuses == [("app.spiked", "anomalous"), ("app.spiked", "recovered")]


def test_open_incidents_survive_a_restart(redis_client, world, tmp_path):
    a = _analyzer(redis_client, tmp_path)
    a.run_once()
    a.close()
    b = _analyzer(redis_client, tmp_path)  # a new analyzer, as after a restart
    try:
        assert b.run_once().decisions.suppressed == 1
    finally:
        b.close()
    assert len(events(redis_client)) == 1


def test_an_expired_incident_emits_again(redis_client, world, tmp_path):
    a = _analyzer(redis_client, tmp_path, EXPIRATION_TIME=0)
    try:
        a.run_once()
        t = grid(float(world["now"]) + 55, 201)  # type: ignore[arg-type]
        v = np.append(noise(99), 100.0)
        v[-3:] += 200  # a breakout within the score detector's tail of 3 new points
        put(redis_client, "app.spiked", t, v)
        r = a.run_once()
    finally:
        a.close()
    assert [e.metric for e in r.decisions.anomalous] == ["app.spiked"]
    assert len(events(redis_client)) == 2


def test_skip_list_deleted_series_and_incidents_of_vanished_metrics(redis_client, world,
                                                                    tmp_path):
    redis_client.sadd(keys.METRIC_INDEX, "app.ghost")  # trimmed away meanwhile
    redis_client.hset(keys.ANALYZER_INCIDENTS, "gone.metric", '{"since":1,"last_event":1}')
    a = _analyzer(redis_client, tmp_path, SKIP_LIST=["app.normal.0*"])
    try:
        r = a.run_once()
    finally:
        a.close()
    assert r.stats.metrics == 24 - 10 + 1
    assert r.stats.exceptions["DeletedByRoomba"] == 1
    assert "EmptyTimeseries" not in r.stats.exceptions
    assert not redis_client.hexists(keys.ANALYZER_INCIDENTS, "gone.metric")


def test_counters_named_in_monotonic_namespaces_are_analysed_as_derivatives(redis_client,
                                                                            tmp_path):
    t = grid(time.time() - 5)
    rate = np.random.default_rng(3).poisson(20, 200).astype(float)
    rate[-3:] = 400  # the rate spikes; the counter itself just climbs a bit faster
    put(redis_client, "app.requests.count", t, np.cumsum(rate))
    a = _analyzer(redis_client, tmp_path, MONOTONIC_METRIC_NAMESPACES=["**.count"],
                  analyzer={"detect_counters": False})
    try:
        r = a.run_once()
    finally:
        a.close()
    (j,) = r.found
    assert j.value == pytest.approx(np.cumsum(rate)[-1])  # the raw point
    _, seen = unpack_window(j.packed_window)
    assert seen[-1] == pytest.approx(400.0)  # what the algorithms saw


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
    assert [j.metric for j in r.found] == ["app.spiked"]  # the ensemble still decided
    (j,) = r.found
    assert j.results[-1].algorithm == "hang" and j.results[-1].verdict is None


def test_consensus_detector_stays_available(redis_client, world, tmp_path):
    """analyzer.detector = consensus: upstream's vote of the nine algorithms decides."""
    a = _analyzer(redis_client, tmp_path, analyzer={"detector": "consensus"})
    try:
        r = a.run_once()
    finally:
        a.close()
    assert [j.metric for j in r.found] == ["app.spiked"]
    (ev,) = events(redis_client)
    assert len(ev.triggered) >= 6 and 0.5 < ev.score <= 1
    assert [x.algorithm for x in ev.results][:2] == ["histogram_bins", "first_hour_average"]
