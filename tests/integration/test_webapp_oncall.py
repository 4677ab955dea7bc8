"""The overview's "what is broken now" and /api/v1/incidents, in process on a real embedded
Redis and SQLite: open incidents from the analyzer's index, grouped, with silences and
acknowledgements; sources that stopped sending; the status word."""

from __future__ import annotations

import html
import json
import re
import time

import numpy as np

from skyline.analysis.emit import index_incidents
from skyline.core.events import AnomalyEvent
from skyline.services.webapp.templating import duration, si
from skyline.store import keys
from skyline.store.sql import alerts as alert_store
from tests.integration import webapp_data as wd

HTML = {"accept": "text/html"}


def _open(ctx, metric: str, since: float, value: float = 0.0, low: float = 850.0,
          high: float = 950.0, score: float = 0.9) -> AnomalyEvent:
    e = AnomalyEvent.build(metric=metric, timestamp=since, value=value, score=score,
                           source="analyzer", since=since, band_low=low, band_high=high)
    index_incidents(ctx.client, [e])
    return e


def _feed(ctx, names: list[str], last: float, n: int = 5) -> None:
    t = last - 60.0 * np.arange(n)[::-1]
    for name in names:
        ctx.store.append([name] * n, t, np.full(n, 5.0))


def test_formats():
    assert [si(x) for x in (64_778_100, 12_500, 999.96, 0.0123, 0, 37.28, 2.405)] == \
        ["64.78M", "12.5k", "1k", "0.0123", "0", "37.28", "2.405"]
    assert si(-3.2e9) == "-3.2G" and si(None) == "-"
    assert [duration(x) for x in (45, 725, 3 * 3600 + 300, 2 * 86400 + 4 * 3600)] == \
        ["45s", "12m", "3h 05m", "2d 4h"]


def test_broken_now_lists_groups_and_status(web):
    ctx, client = web
    now = time.time()
    # nothing open, every metric fresh: ok
    _feed(ctx, ["web.api.req", "web.api.err"], now)
    r = client.get("/", headers=HTML)
    assert r.status_code == 200
    assert re.search(r'id="status" class="status status-ok">ok<', r.text)
    assert "No open incident." in r.text

    # three incidents on one service and one elsewhere; a host that stopped sending
    for i, m in enumerate(["shop.checkout.latency", "shop.checkout.errors",
                           "shop.checkout.orders"]):
        _open(ctx, m, now - 180 + 30 * i)
    _open(ctx, "db.primary.connections", now - 3 * 3600, value=0.0)
    _feed(ctx, [f"collectd.web03.cpu.{i}" for i in range(4)], now - 3600)
    _feed(ctx, ["collectd.web04.cpu.0", "collectd.web04.cpu.1"], now)
    _feed(ctx, ["collectd.web04.disk.0"], now - 7200)
    page = client.get("/", headers=HTML).text
    assert re.search(r'id="status" class="status status-incidents">incidents open<', page)
    assert "4 open incident(s), 4 neither silenced nor acknowledged" in page
    assert "1 source(s) stopped sending" in page and "5 metric(s) with no data" in page
    # the group row, then its members; the lone incident alone
    assert re.search(r'shop\.checkout\.\* : 3 incidents, the first since', page)
    rows = re.findall(r'<tr class="incident[^"]*" data-metric="([^"]+)"', page)
    assert rows[0] == "db.primary.connections"  # open longest
    assert set(rows[1:]) == {"shop.checkout.latency", "shop.checkout.errors",
                             "shop.checkout.orders"}
    db_row = re.search(r'data-metric="db.primary.connections">(.*?)</tr>', page, re.S)
    assert db_row and "3h 00m" in db_row.group(1) and "850 to 950" in db_row.group(1)
    stale = re.search(r'<table class="list" id="stale">(.*?)</table>', page, re.S)
    assert stale
    srcs = re.findall(r'<tr class="(stopped)?">\s*<td class="name">([^< ]+)', stale.group(1))
    assert srcs == [("stopped", "collectd.web03"), ("", "collectd.web04")]
    assert "4 of 4" in stale.group(1) and "1 of 3" in stale.group(1)

    # the JSON says the same
    body = client.get("/api/v1/incidents").json()
    assert body["status"] == "incidents"
    assert [i["metric"] for i in body["incidents"]][0] == "db.primary.connections"
    assert {s["source"]: (s["stale"], s["total"], s["stopped"]) for s in body["stale"]} == \
        {"collectd.web03": (4, 4, True), "collectd.web04": (1, 3, False)}
    assert client.get("/overview/now", headers=HTML).text.count('class="incident') == 4


def test_silence_and_acknowledge(web):
    ctx, client = web
    now = time.time()
    _open(ctx, "shop.checkout.latency", now - 600)
    _open(ctx, "db.primary.connections", now - 600)
    alert_store.add_silence(ctx.engine, "shop.**", now + 3600, reason="deploy", who="ann")
    r = client.post("/incidents/ack", data={"metric": "db.primary.connections",
                                            "note": "on it"}, follow_redirects=False)
    assert r.status_code == 303
    page = client.get("/", headers=HTML).text
    assert "silenced by ann until" in page
    assert re.search(r"acknowledged by [^<]+: on it", page)
    assert "2 open incident(s), 0 neither silenced nor acknowledged" in page
    got = {i["metric"]: i for i in client.get("/api/v1/incidents").json()["incidents"]}
    assert got["shop.checkout.latency"]["silence"]["pattern"] == "shop.**"
    assert got["db.primary.connections"]["ack"]["note"] == "on it"
    # an acknowledgement is of one incident: a new one of the same metric is not acknowledged
    ctx.client.hset(keys.INCIDENT_ACKS, "db.primary.connections", json.dumps(
        {"since": now - 7200, "who": "bob", "at": now - 7000, "note": "old"}))
    got = {i["metric"]: i for i in client.get("/api/v1/incidents").json()["incidents"]}
    assert got["db.primary.connections"]["ack"] is None
    assert not ctx.client.hexists(keys.INCIDENT_ACKS, "db.primary.connections")
    # the API acknowledges too; nothing open is a 404
    r = client.post("/api/v1/incidents/ack", json={"metric": "db.primary.connections"})
    assert r.status_code == 200 and r.json()["note"] == ""
    r = client.post("/api/v1/incidents/ack", json={"metric": "nothing.open"})
    assert r.status_code == 404 and "no open incident" in r.json()["error"]
    r = client.post("/api/v1/incidents/ack", json={"metric": "db.primary.connections",
                                                   "note": "x" * 501})
    assert r.status_code == 400


def test_recovered_incident_leaves_the_list(web):
    ctx, client = web
    now = time.time()
    e = _open(ctx, "web.api.req", now - 600)
    wd.anomaly(ctx, "web.api.req", now - 600)
    assert client.get("/api/v1/incidents").json()["incidents"][0]["event"] == e.id
    index_incidents(ctx.client, [AnomalyEvent.build(
        metric="web.api.req", timestamp=now, value=1.0, score=0.0, source="analyzer",
        status="recovered")])
    body = client.get("/api/v1/incidents").json()
    assert body["incidents"] == [] and body["status"] == "ok"


def test_no_page_needs_another_origin(web):
    """Every page, the API reference included, references only its own origin: nothing
    from a CDN, no favicon from another site."""
    ctx, client = web
    now = time.time()
    e = wd.anomaly(ctx, "web.a.cpu", now - 600)
    wd.series(ctx, "web.a.cpu", now)
    _open(ctx, "web.a.cpu", now - 600)
    pages = ["/", "/overview/now", "/anomalies", f"/anomalies/{e.id}", "/series",
             "/series/web.a.cpu", "/silences", "/settings", "/crucible", "/api/v1/docs"]
    for path in pages:
        r = client.get(path, headers=HTML)
        assert r.status_code == 200, (path, r.text[:300])
        refs = re.findall(r'(?:src|href|action)\s*=\s*"([^"]*)"', r.text)
        assert refs or path == "/overview/now", path
        outside = [u for u in refs if re.match(r"^(?:[a-z]+:)?//", u, re.I)
                   or (":" in u.split("/")[0] and not u.startswith("data:"))]
        assert outside == [], (path, outside)
        assert "Content-Security-Policy" in r.headers, path
    docs = client.get("/api/v1/docs", headers=HTML).text
    assert "/api/v1/incidents" in docs and "NowOut" in docs and "<script" not in docs
    assert client.get("/favicon.ico").headers["content-type"].startswith("image/svg+xml")


def test_a_tripped_thunder_check_says_skyline_itself_is_degraded(web):
    from skyline.services.thunder.checks import Observation, Tripwires

    ctx, client = web
    now = time.time()
    wires = Tripwires()
    down = wires.observe(Observation("analyzer", "up", True, 75.0, 60.0,
                                     "analyzer is down: no heartbeat for 75 s"), now - 120, 900)
    assert down is not None
    index_incidents(ctx.client, [down.event])
    page = client.get("/", headers=HTML).text
    assert re.search(r'id="status" class="status status-degraded">', page)
    assert "Thunder: 1 check(s) tripped: analyzer.up" in page
    assert 'data-metric="skyline.thunder.analyzer.up"' in page
    up = wires.observe(Observation("analyzer", "up", False, 2.0, 60.0, "up"), now, 900)
    assert up is not None
    index_incidents(ctx.client, [up.event])
    assert "Thunder:" not in client.get("/", headers=HTML).text


def test_feed_groups_events_close_in_time(web):
    """Six anomalies within three minutes are one burst in the feed (overview and anomalies
    page), under one heading naming their namespaces; a lone event stays a plain row."""
    ctx, client = web
    now = time.time()
    for i, m in enumerate(["shop.checkout.latency", "shop.checkout.errors", "shop.cart.adds",
                           "shop.checkout.orders", "db.primary.connections", "shop.cart.views"]):
        wd.anomaly(ctx, m, now - 1200 + 36 * i)
    wd.anomaly(ctx, "batch.nightly.rows", now - 5 * 3600)
    for path in ("/", "/anomalies"):
        page = client.get(path, headers=HTML).text
        heads = re.findall(r'<tr class="burst"><th colspan="7">(.*?)</th></tr>', page, re.S)
        assert len(heads) == 1, (path, heads)
        head = re.sub(r"<[^>]+>", "", heads[0])
        assert head.startswith("6 events within 3m,"), head
        assert "shop.checkout.* (3), shop.cart.* (2), db.primary.* (1)" in head, head
        assert page.count('<tr class="member">') == 6
        assert "batch.nightly.rows" in page
        # times are <time datetime="...Z"> elements that the browser may show in its zone
        assert re.search(r'<time datetime="\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ">', page)
        assert '(<span class="tz">UTC</span>)' in page


def test_anomalies_time_presets(web):
    ctx, client = web
    now = time.time()
    wd.anomaly(ctx, "web.a.cpu", now - 600)
    wd.anomaly(ctx, "web.b.cpu", now - 3 * 3600)
    wd.anomaly(ctx, "web.c.cpu", now - 3 * 86400)
    page = client.get("/anomalies?pattern=web.**", headers=HTML).text
    nav = re.search(r'<nav class="presets"[^>]*id="anomaly-presets">(.*?)</nav>', page, re.S)
    assert nav
    links = dict((label, html.unescape(href)) for href, label in
                 re.findall(r'<a href="([^"]+)"[^>]*>([^<]+)</a>', nav.group(1)))
    assert list(links) == ["1 h", "6 h", "24 h", "7 d", "30 d", "all"]
    assert links["6 h"] == "/anomalies?pattern=web.%2A%2A&from=-6h"  # the filters kept
    assert 'aria-current="true">all<' in nav.group(1)
    shown = {label: re.findall(r'<a href="/series/([^"]+)">', client.get(
        href, headers=HTML).text) for label, href in links.items()}
    assert shown["1 h"] == ["web.a.cpu"] and shown["6 h"] == ["web.a.cpu", "web.b.cpu"]
    assert shown["7 d"] == shown["all"] == ["web.a.cpu", "web.b.cpu", "web.c.cpu"]
    active = client.get(links["24 h"], headers=HTML).text
    assert 'aria-current="true">24 h<' in active


def test_user_timezone_setting_is_the_pages_default(tmp_path):
    from fastapi.testclient import TestClient

    from skyline.runtime.context import Context
    from skyline.services.webapp import create_app
    from skyline.settings import load_settings
    from skyline.store.redis_client import redis_session
    from skyline.store.sql import db

    for flag, want in ((False, "utc"), (True, "local")):
        settings = load_settings(DATA_DIR=tmp_path / "var", WEBAPP_AUTH_ENABLED=False,
                                 WEBAPP_USER_TIMEZONE=flag)
        with redis_session(settings) as handle:
            ctx = Context(settings, handle)
            ctx.engine = db.make_engine(settings.database_url)
            db.upgrade(ctx.engine)
            page = TestClient(create_app(ctx)).get("/", headers=HTML).text
            ctx.engine.dispose()
        assert f'<html lang="en" data-tz-default="{want}">' in page
        assert 'id="tz-choice"' in page and '<script src="/static/format.js' in page


def test_a_component_whose_heartbeat_expired_is_listed_as_stopped(web):
    """A component that died does not vanish from the overview when its heartbeat key
    expires: it is listed as stopped (for a day) and Skyline's status is degraded."""
    ctx, client = web
    for component in ("analyzer", "horizon"):
        ctx.telemetry(component).flush(ctx.client, 60)
    page = client.get("/", headers=HTML).text
    assert 'id="stopped-components"' not in page
    # the analyzer died five minutes ago: its heartbeat key expired, its last beat remains
    ctx.client.delete(keys.heartbeat(f"analyzer.{ctx.settings.instance}"))
    ctx.client.hset(keys.HEARTBEATS_SEEN, f"analyzer.{ctx.settings.instance}", time.time() - 300)
    page = client.get("/", headers=HTML).text
    assert re.search(r'id="status" class="status status-degraded">', page)
    assert f"1 component(s) stopped (no heartbeat): analyzer.{ctx.settings.instance}" in page
    assert re.search(r'id="stopped-components">.*analyzer\..*last heartbeat 5m ago', page, re.S)
    assert 'class="stopped-component"' in page and f"horizon.{ctx.settings.instance}" in page
    api = client.get("/api/v1/incidents").json()
    assert list(api["stopped_components"]) == [f"analyzer.{ctx.settings.instance}"]
    assert client.get("/api/v1/health").json()["components"]["analyzer"]["stopped"] is True
    # a day later it is forgotten
    ctx.client.hset(keys.HEARTBEATS_SEEN, f"analyzer.{ctx.settings.instance}",
                    time.time() - 2 * 86400)
    page = client.get("/", headers=HTML).text
    assert 'id="stopped-components"' not in page
    assert ctx.client.hget(keys.HEARTBEATS_SEEN, f"analyzer.{ctx.settings.instance}") is None
