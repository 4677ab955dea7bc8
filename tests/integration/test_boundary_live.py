"""Boundary live: the component's runs against a real Redis (events on the anomaly stream,
state kept across a restart, the overview's open-incident index), and Boundary's alert routing
through the real dispatcher, queue (SQL) and a webhook sink (the rule's channels, not ALERTS;
BOUNDARY_ALERTER_OPTS's per-channel share)."""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np
import pytest
import redis
from sqlalchemy.engine import Engine

from skyline.core.events import AnomalyEvent
from skyline.services.boundary import Boundary
from skyline.settings import load_settings
from skyline.store import keys
from skyline.store.hotstore import HotStore
from tests.alertsinks import HttpSink
from tests.integration.test_alerts import harness

STEP = 60.0


@pytest.fixture(autouse=True)
def _clean_env(clean_env: None) -> None:
    """No SKYLINE_* variable of the developer's shell leaks into these tests."""



def stream(client: redis.Redis) -> list[AnomalyEvent]:
    return [AnomalyEvent.from_json(f[b"data"]) for _, f in client.xrange(keys.ANOMALY_STREAM)]


RULES: list[Any] = [
    {"name": "api requests", "pattern": "prod.api.*.requests", "algorithm": "less_than",
     "trigger_value": 100, "alert_threshold": 2, "channels": ["webhook"]},
    ["prod.queue.depth", "greater_than", 3600, 0, 0, 10000, 1, "webhook"],
]


class Feed:
    """Points written to the real hot store, one per metric per call, a minute apart."""

    def __init__(self, client: redis.Redis, names: list[str], start: float):
        self.store = HotStore(client)
        self.names = names
        self.t = start
        self.rng = np.random.default_rng(0)

    def history(self, values: list[float], n: int) -> None:
        """n noisy points around `values` (noise keeps them from being Boring)."""
        for _ in range(n):
            self.point(list(np.array(values) + self.rng.uniform(0, 1, len(values))))

    def point(self, values: list[float]) -> float:
        self.t += STEP
        self.store.append(self.names, np.full(len(self.names), self.t), np.array(values))
        return self.t


def test_rules_fire_once_recover_once_and_survive_a_restart(redis_client: redis.Redis) -> None:
    s = load_settings(BOUNDARY_METRICS=RULES, STALE_PERIOD=0,
                      alerters={"webhook": {"enabled": True, "url": "http://127.0.0.1:9/x"}})
    names = ["prod.api.web1.requests", "prod.api.web2.requests", "prod.queue.depth",
             "prod.other"]
    start = time.time() - 200 * STEP
    feed = Feed(redis_client, names, start)
    feed.history([500, 500, 10, 1], 150)
    b = Boundary(s, redis_client)
    report = b.run_once()
    assert (report.metrics, report.matched, report.stats.checks) == (4, 3, 3)
    assert report.events == [] and report.stats.judged == 3

    feed.point([42, 500, 10, 1])  # one detection on web1: counted, not yet alerted
    assert b.run_once().events == []
    assert redis_client.hexists(keys.BOUNDARY_CHECKS, "less_than\x00prod.api.web1.requests")

    # a restart in the middle of the count: the state is read back from Redis
    b = Boundary(s, redis_client)
    feed.point([42, 500, 20000, 1])
    report = b.run_once()
    assert sorted((e.metric, e.status) for e in report.events) == [
        ("prod.api.web1.requests", "anomalous"), ("prod.queue.depth", "anomalous")]
    web1 = next(e for e in report.events if e.metric == "prod.api.web1.requests")
    assert web1.source == "boundary" and web1.triggered == ("less_than",)
    assert web1.results[0].text == \
        "value 42 < 100 for 2 consecutive checks (rule api requests)"
    assert len(web1.window) > 0
    index = {k.decode(): json.loads(v) for k, v in
             redis_client.hgetall(keys.OPEN_INCIDENTS).items()}
    assert set(index) == {"prod.api.web1.requests", "prod.queue.depth"}
    assert index["prod.api.web1.requests"]["source"] == "boundary"

    feed.point([42, 500, 20000, 1])  # still broken: no storm
    assert b.run_once().events == []
    b.run_once()  # no new point: nothing judged again
    feed.point([150, 500, 5, 1])
    assert [e.status for e in b.run_once().events] == ["recovered"]  # the queue (threshold 1)
    feed.point([150, 500, 5, 1])
    [rec] = b.run_once().events  # web1 after 2 passing checks
    assert (rec.metric, rec.status) == ("prod.api.web1.requests", "recovered")
    assert "again" in rec.results[0].text
    assert redis_client.hlen(keys.OPEN_INCIDENTS) == 0
    assert redis_client.hlen(keys.BOUNDARY_CHECKS) == 0
    assert [(e.metric, e.status) for e in stream(redis_client)] == [
        ("prod.api.web1.requests", "anomalous"), ("prod.queue.depth", "anomalous"),
        ("prod.queue.depth", "recovered"), ("prod.api.web1.requests", "recovered")]


def test_boundary_does_not_touch_the_analyzers_open_incident(redis_client: redis.Redis) -> None:
    redis_client.hset(keys.OPEN_INCIDENTS, "prod.queue.depth",
                      json.dumps({"since": 1.0, "source": "analyzer"}))
    s = load_settings(BOUNDARY_METRICS=[RULES[1]], STALE_PERIOD=0,
                      alerters={"webhook": {"enabled": True, "url": "http://127.0.0.1:9/x"}})
    feed = Feed(redis_client, ["prod.queue.depth"], time.time() - 100 * STEP)
    feed.history([10], 20)
    b = Boundary(s, redis_client)
    b.run_once()
    feed.point([20000])
    assert [e.status for e in b.run_once().events] == ["anomalous"]
    feed.point([5])
    assert [e.status for e in b.run_once().events] == ["recovered"]
    assert json.loads(redis_client.hget(keys.OPEN_INCIDENTS, "prod.queue.depth"))["source"] \
        == "analyzer"


def test_boundary_alerts_go_to_the_rules_channels_within_its_share(
        redis_client: redis.Redis, engine: Engine) -> None:
    with HttpSink() as sink:
        s: dict[str, Any] = dict(
            BOUNDARY_METRICS=RULES, STALE_PERIOD=0,
            # ALERTS routes nothing here: Boundary's events follow their rule's channels
            ALERTS=[{"pattern": "nothing.**", "channel": "webhook"}],
            BOUNDARY_ALERTER_OPTS={"alerter_limit": {"webhook": 1},
                                   "alerter_expiration_time": {"webhook": 3600}},
            alerters={"webhook": {"enabled": True, "url": sink.url + "/alerts"}})
        names = ["prod.api.web1.requests", "prod.api.web2.requests"]
        feed = Feed(redis_client, names, time.time() - 30 * STEP)
        feed.history([500, 500], 20)
        b = Boundary(load_settings(**s), redis_client)
        b.run_once()
        feed.point([1, 2])
        b.run_once()
        feed.point([1, 2])
        events = b.run_once().events
        assert [e.status for e in events] == ["anomalous", "anomalous"]
        h = harness(redis_client, engine, **s)
        try:
            for e in events:
                h.publish(e)
            h.publish(events[0])  # the stream hands one over twice: still one alert
            assert h.drain("webhook") == ["sent"]
            feed.point([500, 500])
            b.run_once()
            feed.point([500, 500])
            recovered = b.run_once().events
            assert [e.status for e in recovered] == ["recovered", "recovered"]
            for e in recovered:
                h.publish(e)
            assert h.drain("webhook") == ["sent"]  # the webhook resolves what it alerted
        finally:
            h.close()
    bodies = [a["alert"] for a in sink.accepted]
    assert [(a["metric"], a["kind"]) for a in bodies] == [
        ("prod.api.web1.requests", "alert"), ("prod.api.web1.requests", "resolve")]
    assert bodies[0]["source"] == "boundary"
    assert bodies[0]["algorithms"][0]["text"].startswith("value 1 < 100 for 2 consecutive")
    rows = h.log("webhook")
    assert [(r["metric"], r["status"]) for r in rows if r["status"] == "rate_limited"] == [
        ("prod.api.web2.requests", "rate_limited")]
    assert "boundary alerts per 3600 s" in next(
        r for r in rows if r["status"] == "rate_limited")["error"]


def test_boundary_enable_alerts_false_keeps_events_but_sends_nothing(
        redis_client: redis.Redis, engine: Engine) -> None:
    with HttpSink() as sink:
        s: dict[str, Any] = dict(
            BOUNDARY_METRICS=[RULES[1]], STALE_PERIOD=0, BOUNDARY_ENABLE_ALERTS=False,
            alerters={"webhook": {"enabled": True, "url": sink.url}})
        feed = Feed(redis_client, ["prod.queue.depth"], time.time() - 30 * STEP)
        feed.history([10], 20)
        b = Boundary(load_settings(**s), redis_client)
        b.run_once()
        feed.point([20000])
        [e] = b.run_once().events
        h = harness(redis_client, engine, **s)
        try:
            h.publish(e)
            assert h.drain("webhook") == []
        finally:
            h.close()
    assert sink.requests == []


def test_custom_stale_period_makes_a_quiet_metric_stale(redis_client: redis.Redis) -> None:
    s = load_settings(BOUNDARY_METRICS=[RULES[1]], STALE_PERIOD=0,
                      CUSTOM_STALE_PERIOD={"prod.queue.*": 120},
                      alerters={"webhook": {"enabled": True, "url": "http://127.0.0.1:9/x"}})
    feed = Feed(redis_client, ["prod.queue.depth"], time.time() - 30 * STEP)
    feed.history([10], 20)
    feed.point([20000])  # broken, but its last point is 9 minutes old
    report = Boundary(s, redis_client).run_once()
    assert (report.stats.stale, report.stats.judged, report.events) == (1, 0, [])
    # STALE_PERIOD alone (0: never stale) would have judged and alerted
    s = load_settings(BOUNDARY_METRICS=[RULES[1]], STALE_PERIOD=0,
                      alerters={"webhook": {"enabled": True, "url": "http://127.0.0.1:9/x"}})
    redis_client.delete(keys.BOUNDARY_CHECKS)
    assert [e.status for e in Boundary(s, redis_client).run_once().events] == ["anomalous"]


def test_read_tails_reads_enough_of_each_series_and_no_more(redis_client: redis.Redis) -> None:
    from skyline.services.boundary.service import read_tails
    from skyline.store.flatread import FlatReader

    rng = np.random.default_rng(3)
    store = HotStore(redis_client)
    names, full = [], {}
    for i, (n, step) in enumerate([(10, 60), (500, 60), (500, 1), (3000, 10), (0, 60),
                                   (64, 60)]):
        name = f"tails.m{i}"
        t = 1e9 + step * np.arange(n) + rng.uniform(0, 0.5, n)
        v = rng.standard_normal(n)
        if n:
            store.append([name] * n, t, v)
        names.append(name)
        full[name] = (t, v)
    seconds = np.array([0, 3600, 3600, 600, 3600, 0], dtype=float)
    t, v, counts = read_tails(FlatReader(redis_client, initial_bytes=1024), names, 64, seconds)
    ends = np.cumsum(counts)
    for i, name in enumerate(names):
        ft, fv = full[name]
        got_t, got_v = t[ends[i] - counts[i]:ends[i]], v[ends[i] - counts[i]:ends[i]]
        k = len(got_t)
        assert np.array_equal(got_t, ft[len(ft) - k:]) and np.array_equal(got_v, fv[len(fv) - k:])
        assert k >= min(len(ft), 64)  # every point a pre-check counts
        if k < len(ft):  # a tail: it covers the seconds window and 20 steps
            span = max(seconds[i], 20 * (ft[-1] - ft[-2]))
            assert got_t[0] <= ft[-1] - span
    # the 1-second series needed 3600 s: widened until it held all of its 500 points; the
    # 60-second one needed 60 points and the 10-second one 600 s (60 points): 64 each
    assert list(counts) == [10, 64, 500, 64, 0, 64]


def test_the_analyzers_recovery_leaves_boundarys_open_incident(redis_client: redis.Redis
                                                               ) -> None:
    from skyline.analysis.emit import index_incidents

    redis_client.hset(keys.OPEN_INCIDENTS, "prod.queue.depth",
                      json.dumps({"since": 1.0, "source": "boundary", "check": "greater_than"}))
    redis_client.hset(keys.OPEN_INCIDENTS, "prod.other",
                      json.dumps({"since": 1.0, "source": "analyzer"}))
    index_incidents(redis_client, [
        AnomalyEvent.build(metric=m, timestamp=2.0, value=1.0, score=0.0, source="analyzer",
                           status="recovered") for m in ("prod.queue.depth", "prod.other")])
    assert [k.decode() for k in redis_client.hkeys(keys.OPEN_INCIDENTS)] == ["prod.queue.depth"]
