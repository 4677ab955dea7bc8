"""The analyzer through the real commands: `skyline run` analyses what is in the hot store and
the anomaly lands in SQL once, with explanations and its window; `skyline analyze --once`."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from skyline.core.events import AnomalyEvent
from skyline.events.stream import FIELD
from skyline.settings import load_settings
from skyline.store import keys
from skyline.store.redis_client import redis_session
from skyline.store.series import encode
from skyline.store.sql import latest_anomalies, latest_runs, make_engine
from tests.conftest import free_port
from tests.e2e.skylineproc import Running, cli, env_for


def _load(data: Path, now: float) -> None:
    """Five metrics of normal noise and one whose last point spikes, straight into the store."""
    t = now - 60.0 * np.arange(200)[::-1]
    with redis_session(load_settings(DATA_DIR=data)) as h:
        for i in range(6):
            v = np.random.default_rng(i).normal(100.0, 5.0, 200)
            name = f"e2e.normal.{i}"
            if i == 5:
                v[-1] += 250
                name = "e2e.spiked"
            h.client.set(keys.series(name), encode(t, v))
            h.client.sadd(keys.METRIC_INDEX, name)


def _stream(data: Path) -> list[AnomalyEvent]:
    with redis_session(load_settings(DATA_DIR=data)) as h:
        return [AnomalyEvent.from_json(f[FIELD]) for _, f in
                h.client.xrange(keys.ANOMALY_STREAM)]


def test_skyline_run_analyses_everything_and_stores_each_anomaly_once(tmp_path):
    port = free_port()
    data = tmp_path / "var"
    env = env_for(data, port, SKYLINE_ANALYZER_OPTIMUM_RUN_DURATION="1",
                  SKYLINE_ANALYZER_PROCESSES="2", SKYLINE_PANORAMA_EXPIRY_TIME="0")
    run = Running(env, tmp_path)
    try:
        run.wait_healthy(f"http://127.0.0.1:{port}")
        _load(data, time.time())
        engine = make_engine(f"sqlite:///{data / 'skyline.db'}")
        deadline = time.monotonic() + 90
        rows: list[AnomalyEvent] = []
        while time.monotonic() < deadline and not rows:
            rows = latest_anomalies(engine, limit=50)
            time.sleep(0.3)
        assert rows, "no anomaly reached SQL"
        # several more runs within EXPIRATION_TIME: still the one row
        runs_before = len(latest_runs(engine, limit=1000))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(latest_runs(engine, limit=1000)) < \
                runs_before + 3:
            time.sleep(0.3)
        assert len(latest_runs(engine, limit=1000)) >= runs_before + 3
        time.sleep(1)
        rows = latest_anomalies(engine, limit=50)
        runs = latest_runs(engine, limit=1000)
        engine.dispose()
        stream = _stream(data)
    finally:
        assert run.stop() == 0, run.stderr
    assert [(r.metric, r.status, r.source) for r in rows] == \
        [("e2e.spiked", "anomalous", "analyzer")]
    stored = rows[0]
    assert stored.triggered == ["range_excess"] or stored.triggered == ("range_excess",)
    # range_excess decided (the default learning detector has learnt an hour, not a day) and
    # the learner says it is still learning
    assert [r.algorithm for r in stored.results] == ["range_excess", "learning"]
    assert all(r.text for r in stored.results)
    assert stored.results[1].text.startswith("still learning this metric")
    wt, wv = stored.window_arrays()
    assert len(wt) == 200 and wv[-1] == stored.value
    assert [e.metric for e in stream] == ["e2e.spiked"]
    # the run that met the points judged all six; the later ones found no new point
    first = next(r for r in runs if r.analysed)
    assert first.metrics == 6 and first.analysed == 6
    assert all(r.analysed == 0 for r in runs if r.started > first.started)
    assert {"fetch", "prepare", "algorithms", "steps", "publish"} <= set(first.stages)
    assert "Traceback" not in run.stderr


def test_analyze_once_prints_the_run_and_its_anomalies(tmp_path):
    data = tmp_path / "var"
    env = env_for(data, free_port())
    _load(data, time.time())
    r = cli(env, "analyze", "--once", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["stats"]["metrics"] == 6 and out["stats"]["analysed"] == 6
    assert [a["metric"] for a in out["anomalies"]] == ["e2e.spiked"]
    a = out["anomalies"][0]
    assert a["score"] > 0.7 and a["triggered"] == ["range_excess"] and a["value"] > 300
    assert out["events"] == {"anomalous": 1, "vetoed": 0, "recovered": 0, "new_level": 0,
                             "suppressed": 0}
    assert a["band"][1] < a["value"] and a["stages"] == []

    # text; a new point, still high: the incident is open, no event within EXPIRATION_TIME
    with redis_session(load_settings(DATA_DIR=data)) as h:
        h.client.append(keys.series("e2e.spiked"), encode(np.array([time.time() + 1]),
                                                          np.array([360.0])))
    r = cli(env, "analyze", "--once", "--processes", "0")
    assert r.returncode == 0, r.stderr
    assert "analysed 1 of 6 metrics" in r.stdout
    assert "0 anomalous, 0 vetoed by a stage, 0 recovered, 0 at a new level" in r.stdout
    assert "e2e.spiked" not in r.stdout

    engine = make_engine(f"sqlite:///{data / 'skyline.db'}")
    assert len(latest_runs(engine)) == 2
    engine.dispose()
    assert len(_stream(data)) == 1

    r = cli(env, "analyze")
    assert r.returncode != 0 and "--once" in r.stderr


def test_unknown_algorithm_is_one_clear_line(tmp_path):
    env = env_for(tmp_path / "var", free_port(), SKYLINE_ALGORITHMS='["grubbs", "nope"]',
                  SKYLINE_CONSENSUS="1")
    for args in (("analyze", "--once"), ("config", "check")):
        r = cli(env, *args)
        assert r.returncode == 1
        assert r.stderr.strip().splitlines() == [
            r.stderr.strip().splitlines()[0]] and "unknown algorithm 'nope'" in r.stderr
        assert r.stderr.startswith("error: setting ALGORITHMS:")
