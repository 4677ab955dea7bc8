"""Thunder against real failures: a Redis server stopped and started again, a component's
process killed and started again, a namespace that stops sending, a webhook that fails, a SQL
database that becomes unreachable (its connection goes through a TCP relay that is shut).
Each gives exactly one alert when it trips and one when it recovers, sent by Thunder straight
to a channel (a local HTTP sink), even while Redis or SQL is down."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis
from sqlalchemy.engine import Engine

from skyline.core.events import AnomalyEvent
from skyline.services.thunder import Thunder
from skyline.settings import Settings, load_settings
from skyline.store import keys
from skyline.store.hotstore import HotStore
from skyline.store.redis_client import make_client
from skyline.telemetry import Telemetry
from tests.alertsinks import HttpSink
from tests.conftest import free_port, skip_or_fail
from tests.integration.test_alerts import event, harness
from tests.redisproc import RedisProcess


@pytest.fixture(autouse=True)
def _clean_env(clean_env: None) -> None:
    """No SKYLINE_* variable of the developer's shell leaks into these tests."""



@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisProcess]:
    srv = RedisProcess(tmp_path / "redis", free_port())
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def settings(sink: HttpSink, tmp_path: Path, **kw: Any) -> Settings:
    kw.setdefault("DATA_DIR", tmp_path / "var")
    return load_settings(THUNDER_OPTS={"channels": ["webhook"], "retry_interval": 0.1,
                                       **kw.pop("opts", {})},
                         alerters={"webhook": {"enabled": True, "url": sink.url + "/t"},
                                   **kw.pop("alerters", {})}, **kw)


class Driver:
    """Thunder's rounds, driven one by one (the component's loop does the same)."""

    def __init__(self, s: Settings, url: str, engine: Engine | None):
        self.th = Thunder(s, url, Telemetry("thunder", "test"), engine=engine)
        self.loop = asyncio.new_event_loop()

    def round(self, now: float | None = None) -> list[tuple[str, str]]:
        t = time.time() if now is None else now
        out = self.th.observe(t)
        self.loop.run_until_complete(self.th.deliver(max(t, time.time())))
        self.th.publish()
        return [(tr.event.metric, tr.event.status) for tr in out]

    def close(self) -> None:
        self.loop.run_until_complete(self.th.aclose())
        self.loop.close()


def kinds(sink: HttpSink) -> list[tuple[str, str]]:
    return [(a["alert"]["metric"], a["alert"]["kind"]) for a in sink.accepted]


def stream(client: redis.Redis) -> list[tuple[str, str]]:
    return [(e.metric, e.status) for e in (AnomalyEvent.from_json(f[b"data"])
                                           for _, f in client.xrange(keys.ANOMALY_STREAM))]


def test_redis_stopped_alerts_once_while_down_and_once_when_back(
        server: RedisProcess, engine: Engine, tmp_path: Path) -> None:
    with HttpSink() as sink:
        d = Driver(settings(sink, tmp_path), server.url, engine)
        try:
            assert d.round() == []
            server.stop()
            assert d.round() == [("skyline.thunder.redis.up", "anomalous")]
            assert d.round() == []  # still down: no storm
            # sent straight to the channel while Redis is down
            assert kinds(sink) == [("skyline.thunder.redis.up", "alert")]
            alert = sink.accepted[0]["alert"]
            assert alert["source"] == "thunder" and "unreachable" in \
                alert["algorithms"][0]["text"]
            server.start()
            assert d.round() == [("skyline.thunder.redis.up", "recovered")]
            assert d.round() == []
        finally:
            d.close()
    assert kinds(sink) == [("skyline.thunder.redis.up", "alert"),
                           ("skyline.thunder.redis.up", "resolve")]
    # each send is in the alert log (SQL answered throughout)
    from skyline.store.sql import alerts as q
    rows = q.alert_log_rows(engine, channel="webhook")
    assert sorted((r["kind"], r["status"]) for r in rows) == [("alert", "sent"),
                                                              ("resolve", "sent")]
    # the events kept in memory during the outage reach the stream once Redis is back
    client = make_client(server.url, timeout=2)
    assert stream(client) == [("skyline.thunder.redis.up", "anomalous"),
                              ("skyline.thunder.redis.up", "recovered")]
    client.close()


_BEATING = """
import sys, time
from skyline.store.redis_client import make_client
from skyline.telemetry import Telemetry
client = make_client(sys.argv[1], timeout=2)
tel = Telemetry("horizon", "beating")
while True:
    tel.flush(client, 60)
    time.sleep(0.1)
"""


def test_a_killed_component_is_down_once_and_up_once(
        server: RedisProcess, engine: Engine, tmp_path: Path) -> None:
    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-c", _BEATING, server.url])

    def wait_beat(after: float) -> None:
        client = make_client(server.url, timeout=2)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            raw = client.get(keys.heartbeat("horizon.beating"))
            if raw is not None and float(__import__("json").loads(raw)["time"]) > after:
                client.close()
                return
            time.sleep(0.05)
        raise AssertionError("the component wrote no heartbeat")

    with HttpSink() as sink:
        d = Driver(settings(sink, tmp_path, opts={"down_after": 1.0}), server.url, engine)
        proc = start()
        try:
            wait_beat(0)
            assert d.round() == []
            proc.kill()
            proc.wait()
            time.sleep(1.5)
            assert d.round() == [("skyline.thunder.horizon.up", "anomalous")]
            assert d.round() == []
            started = time.time()
            proc = start()
            wait_beat(started)
            assert d.round() == [("skyline.thunder.horizon.up", "recovered")]
        finally:
            proc.kill()
            proc.wait()
            d.close()
    assert kinds(sink) == [("skyline.thunder.horizon.up", "alert"),
                           ("skyline.thunder.horizon.up", "resolve")]
    assert "no heartbeat" in sink.accepted[0]["alert"]["algorithms"][0]["text"]


def test_a_namespace_that_stops_sending_is_stale_once(
        redis_client: redis.Redis, engine: Engine, tmp_path: Path) -> None:
    url = _url_of(redis_client)
    store = HotStore(redis_client)

    def send(names: list[str]) -> None:
        store.append(names, np.full(len(names), time.time()), np.ones(len(names)))

    with HttpSink() as sink:
        s = settings(sink, tmp_path, ALERT_ON_STALE_METRICS=["app.a.**", "app.b.**"],
                     ALERT_ON_STALE_PERIOD=1, DO_NOT_ALERT_ON_STALE_METRICS=["app.b.quiet"],
                     CUSTOM_STALE_PERIOD={"app.a.slow": 60})
        d = Driver(s, url, engine)
        try:
            send(["app.a.x", "app.a.slow", "app.b.y", "app.b.z", "app.b.quiet"])
            assert d.round() == []
            for _ in range(4):  # app.a keeps sending, app.b stops
                time.sleep(0.4)
                send(["app.a.x"])
            assert d.round() == [("skyline.thunder.analyzer.stale_metrics.app_b", "anomalous")]
            assert d.round() == []
            send(["app.b.y", "app.b.z"])
            assert d.round() == [("skyline.thunder.analyzer.stale_metrics.app_b", "recovered")]
        finally:
            d.close()
    assert kinds(sink) == [("skyline.thunder.analyzer.stale_metrics.app_b", "alert"),
                           ("skyline.thunder.analyzer.stale_metrics.app_b", "resolve")]
    text = sink.accepted[0]["alert"]["algorithms"][0]["text"]
    assert text.startswith("2 of 2 metrics of app.b.** sent nothing")


def _url_of(client: redis.Redis) -> str:
    kw = client.connection_pool.connection_kwargs
    if "path" in kw:
        return f"unix://{kw['path']}?db={kw.get('db', 0)}"
    return f"redis://{kw.get('host', '127.0.0.1')}:{kw.get('port', 6379)}/{kw.get('db', 0)}"


def test_a_failing_webhook_trips_the_delivery_check_once(
        redis_client: redis.Redis, engine: Engine, tmp_path: Path) -> None:
    with HttpSink(fail=1000) as hook, HttpSink() as slack:
        routes: dict[str, Any] = dict(
            ALERTS=[{"pattern": "**", "channel": "webhook"}],
            alerters={"webhook": {"enabled": True, "url": hook.url},
                      "slack": {"enabled": True, "webhook_url": slack.url + "/hook"},
                      "retry_initial": 1})
        h = harness(redis_client, engine, **routes)
        d = Driver(load_settings(THUNDER_OPTS={"channels": ["slack"]}, **routes),
                   _url_of(redis_client), engine)
        try:
            for i in range(3):
                h.publish(event(f"web.host{i}.cpu"))
            assert h.drain("webhook") == ["pending"] * 3
            assert d.round() == [("skyline.thunder.alerters.delivery.webhook", "anomalous")]
            assert d.round() == []
            hook.fail = 0  # the webhook's receiver is back
            assert h.drain("webhook", at=time.time() + 5) == ["sent"] * 3
            assert d.round() == [("skyline.thunder.alerters.delivery.webhook", "recovered")]
        finally:
            d.close()
            h.close()
    titles = [a["text"] for a in (__import__("json").loads(b) for _, _, b in slack.requests)]
    assert len(titles) == 2
    assert titles[0].startswith("Skyline Thunder problem: 3 alerts on webhook are waiting")
    assert "HTTP 500" in titles[0]
    assert titles[1].startswith("Skyline Thunder recovered: webhook delivers again")


def test_overruns_and_ingest_volume(redis_client: redis.Redis, engine: Engine,
                                    tmp_path: Path) -> None:
    with HttpSink() as sink:
        s = settings(sink, tmp_path, THUNDER_CHECKS={
            # time runs ahead as data below: the heartbeat written now would look missing
            "analyzer": {"run_time": {"after_overruns": 3}, "up": {"run": False}},
            "horizon": {"metrics_received": {"significant_change_window": 60,
                                             "significant_change_over": 600}}})
        d = Driver(s, _url_of(redis_client), engine)
        analyzer, ingest = Telemetry("analyzer", "a1"), Telemetry("ingest", "i1")
        try:
            for streak, want in ((1, []), (2, []), (3, ["anomalous"]), (4, []), (0, ["recovered"])):
                analyzer.gauge("overrun_streak", streak)
                analyzer.flush(redis_client, 60)
                assert [st for m, st in d.round() if m.endswith("run_time")] == want
            # 100 points/s for 11 minutes (time given as data), then 10/s
            t0 = time.time()
            seen = []
            for k in range(0, 14 * 60, 30):
                ingest.incr("accepted_plaintext", (100 if k < 11 * 60 else 10) * 30)
                ingest.flush(redis_client, 60)
                seen += [(k, st) for m, st in d.round(t0 + k) if m.endswith("received")]
        finally:
            d.close()
    assert [st for _, st in seen] == ["anomalous"]
    assert 11 * 60 < seen[0][0] <= 12 * 60
    assert kinds(sink) == [("skyline.thunder.analyzer.run_time", "alert"),
                           ("skyline.thunder.analyzer.run_time", "resolve"),
                           ("skyline.thunder.horizon.metrics_received", "alert")]


class Relay:
    """A TCP relay to a real database server: closing it makes the database unreachable
    for whoever connects through it, as a network failure would."""

    def __init__(self, host: str, port: int):
        self.target = (host, port)
        self.port = free_port()
        self._socks: list[socket.socket] = []
        self.sock: socket.socket | None = None

    def start(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, args=(self.sock,), daemon=True).start()

    def _accept(self, srv: socket.socket) -> None:
        while True:
            try:
                a, _ = srv.accept()
            except OSError:
                return
            b = socket.create_connection(self.target)
            self._socks += [a, b]
            for x, y in ((a, b), (b, a)):
                threading.Thread(target=self._pipe, args=(x, y), daemon=True).start()

    @staticmethod
    def _pipe(x: socket.socket, y: socket.socket) -> None:
        try:
            while data := x.recv(65536):
                y.sendall(data)
        except OSError:
            pass
        finally:
            for s in (x, y):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def stop(self) -> None:
        assert self.sock is not None
        try:  # wakes the accepting thread (a close alone leaves accept() listening on Linux)
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        for s in self._socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
        self._socks.clear()


def test_sql_unreachable_alerts_once_and_once_when_back(
        redis_client: redis.Redis, tmp_path: Path) -> None:
    from sqlalchemy.engine import make_url

    url = os.environ.get("SKYLINE_TEST_POSTGRES_URL")
    if not url:
        skip_or_fail("SKYLINE_TEST_POSTGRES_URL is not set")
    u = make_url(url)
    relay = Relay(u.host or "127.0.0.1", u.port or 5432)
    relay.start()
    via = u.set(host="127.0.0.1", port=relay.port).render_as_string(hide_password=False)
    with HttpSink() as sink:
        s = settings(sink, tmp_path, DATABASE_URL=via)
        d = Driver(s, _url_of(redis_client), None)
        try:
            assert d.round() == []
            relay.stop()
            assert d.round() == [("skyline.thunder.database.up", "anomalous")]
            assert d.round() == []
            assert kinds(sink) == [("skyline.thunder.database.up", "alert")]
            relay.start()
            assert d.round() == [("skyline.thunder.database.up", "recovered")]
        finally:
            d.close()
    assert kinds(sink) == [("skyline.thunder.database.up", "alert"),
                           ("skyline.thunder.database.up", "resolve")]
