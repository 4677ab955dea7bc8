"""Luminosity against a real Redis and every SQL backend: related metrics of an anomaly read
from the hot store and stored; incidents grouped, stored, published, and carried across a
restart of the service."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Iterator

import numpy as np
import pytest
import redis
from sqlalchemy.engine import Engine

from skyline.core.errors import NotFound
from skyline.core.events import AnomalyEvent
from skyline.services.luminosity.service import Luminosity
from skyline.settings import load_settings
from skyline.store import keys
from skyline.store.series import encode
from skyline.store.sql import make_engine, upgrade
from skyline.store.sql.luminosity import (
    get_incident,
    list_incidents,
    open_incidents,
    related_metrics,
)
from skyline.telemetry import Telemetry

STEP = 60.0
N = 400
T0 = 1_700_000_040.0


@pytest.fixture
def engine(sql_url: str) -> Iterator[Engine]:
    eng = make_engine(sql_url)
    upgrade(eng)
    yield eng
    eng.dispose()


def _load(client: redis.Redis, t0: float = T0) -> dict[str, float]:
    """A root that steps at column 350, two dependents (one lagged two steps, one inverted),
    and unrelated metrics: noise, and one that stepped at the same time on its own."""
    rng = np.random.default_rng(5)
    t = t0 + STEP * np.arange(N)
    noise = rng.normal(0, 1, N)
    root = 100 + np.convolve(noise, np.ones(3) / 3, mode="same") * 3
    root[350:] += 15
    lagged = np.empty(N)
    lagged[2:] = root[:-2]
    lagged[:2] = root[0]
    series = {
        "app.web.requests": root,
        "app.db.latency": 2 * lagged + rng.normal(0, 0.3, N),
        "app.cache.hits": -root + 500 + rng.normal(0, 0.3, N),
        "other.noise": rng.normal(10, 1, N),
        "other.stepped": np.r_[rng.normal(10, 1, 350), rng.normal(25, 1, N - 350)],
    }
    for name, v in series.items():
        client.set(keys.series(name), encode(t, v))
        client.sadd(keys.METRIC_INDEX, name)
    return {"root": float(t[350]), "lagged": float(t[352]), "end": float(t[-1])}


def _event(metric: str, t: float, status: str = "anomalous") -> AnomalyEvent:
    return AnomalyEvent(metric=metric, timestamp=t, value=1.0, score=1.0, source="analyzer",
                        status=status, since=t)  # type: ignore[arg-type]


def _service(client: redis.Redis, engine: Engine) -> Luminosity:
    s = load_settings(LUMINOSITY_CORRELATE_ALL=True, luminosity={"max_wait": 0})
    return Luminosity(s, client, engine, Telemetry("luminosity", "test"), asyncio.Event())


def test_related_metrics_are_found_and_stored(redis_client, engine):
    times = _load(redis_client)
    lum = _service(redis_client, engine)
    event = _event("app.web.requests", times["root"])
    lum.correlate(event)
    related = related_metrics(engine, event.id)
    names = [r.metric for r in related]
    # a metric that stepped at the same time on its own matches in shape, but never moved
    # with the root before: it ranks below the real ones
    assert set(names[:2]) == {"app.db.latency", "app.cache.hits"}
    assert "other.noise" not in names and set(names[2:]) <= {"other.stepped"}
    by = {r.metric: r for r in related}
    assert by["app.db.latency"].shift_seconds == 2 * STEP
    assert by["app.cache.hits"].shifted_coefficient < -0.9
    assert [r.rank for r in related] == list(range(1, len(related) + 1))
    lum.correlate(event)  # handled twice: the same rows
    assert [r.metric for r in related_metrics(engine, event.id)] == names


def test_correlate_all_off_only_alerting_metrics(redis_client, engine):
    times = _load(redis_client)
    s = load_settings(luminosity={"max_wait": 0})
    lum = Luminosity(s, redis_client, engine, Telemetry("luminosity", "t"), asyncio.Event())
    event = _event("app.web.requests", times["root"])
    lum.correlate(event)  # no ALERTS rule matches: not correlated
    assert related_metrics(engine, event.id) == []


def test_incidents_group_store_publish_and_survive_a_restart(redis_client, engine):
    times = _load(redis_client)
    lum = _service(redis_client, engine)
    lum.load()
    root = _event("app.web.requests", times["root"])
    lum.group(root)
    lum.group(_event("app.db.latency", times["lagged"]))
    lum.group(_event("other.stepped", times["root"] + STEP))  # stepped alone: not a member
    [inc, alone] = sorted(list_incidents(engine), key=lambda i: -len(i.members))
    assert inc.origin == "app.web.requests"
    assert set(inc.members) == {"app.web.requests", "app.db.latency"}
    assert inc.members["app.db.latency"].relation == "correlated"
    assert set(alone.members) == {"other.stepped"}

    # a restart: the open incident is read back, and the next member joins the same id
    lum2 = _service(redis_client, engine)
    lum2.load()
    lum2.group(_event("app.cache.hits", times["root"] + 2 * STEP))
    again = get_incident(engine, inc.id)
    assert set(again.members) == {"app.web.requests", "app.db.latency", "app.cache.hits"}
    for name in again.members:
        lum2.group(_event(name, times["end"], "recovered"))
    closed = get_incident(engine, inc.id)
    assert not closed.is_open and closed.ended == times["end"]
    assert [i.id for i in open_incidents(engine)] == [alone.id]
    changes = [json.loads(f[b"data"] if b"data" in f else f["data"])["change"]
               for _, f in redis_client.xrange(keys.INCIDENT_STREAM)]
    assert changes[:3] == ["opened", "joined", "opened"] and changes[-1] == "closed"
    with pytest.raises(NotFound):
        get_incident(engine, "nope")


def test_api_and_cli_show_incidents_and_related_metrics(web, tmp_path):
    """The web API, the pages and `skyline incidents list|show` over what the service
    stored."""
    from click.testing import CliRunner

    from skyline.cli.main import cli
    from skyline.store.sql import save_anomaly

    ctx, client = web
    engine = ctx.engine
    times = _load(ctx.client)
    lum = _service(ctx.client, engine)
    lum.load()
    root = _event("app.web.requests", times["root"])
    lum.group(root)
    lum.group(_event("app.db.latency", times["lagged"]))
    lum.correlate(root)
    save_anomaly(engine, root)  # as panorama stores it
    got = client.get("/api/v1/luminosity/incidents").json()["incidents"]
    assert len(got) == 1 and got[0]["status"] == "open"
    assert [m["metric"] for m in got[0]["members"]] == ["app.web.requests",
                                                         "app.db.latency"]
    one = client.get(f"/api/v1/luminosity/incidents/{got[0]['id']}").json()
    assert one["origin"] == "app.web.requests"
    assert client.get("/api/v1/luminosity/incidents/nope").status_code == 404
    assert client.get("/api/v1/luminosity/incidents?status=bogus").status_code == 400
    assert client.get("/api/v1/anomalies/nope/related").status_code == 404
    rel = client.get(f"/api/v1/anomalies/{root.id}/related").json()["related"]
    assert rel[0]["rank"] == 1 and rel[0]["metric"] in {"app.db.latency",
                                                        "app.cache.hits"}
    # the pages: incidents, one incident's members, an anomaly's related metrics
    page = client.get("/luminosity/incidents")
    assert page.status_code == 200 and f'data-id="{got[0]["id"]}"' in page.text
    page = client.get(f"/luminosity/incidents/{got[0]['id']}")
    assert page.status_code == 200
    assert page.text.index("app.web.requests") < page.text.index("app.db.latency")
    assert "correlated" in page.text
    assert client.get("/luminosity/incidents/nope").status_code == 404
    page = client.get(f"/anomalies/{root.id}/related")
    assert page.status_code == 200 and rel[0]["metric"] in page.text
    page = client.get(f"/anomalies/{root.id}").text
    assert f'href="/anomalies/{root.id}/related"' in page
    assert f'<p id="incident-link">Part of <a href="/luminosity/incidents/{got[0]["id"]}"' in page
    # the anomaly page draws the related metrics with it on one time axis, normalised
    chart = json.loads(re.search(r'<script type="application/json" id="related-chart">(.*?)'
                                 r'</script>', page, re.S).group(1))
    assert chart["label"] == "app.web.requests"
    assert [line["label"].split(" (")[0] for line in chart["lines"]] == [r["metric"] for r in rel]
    main = np.array([np.nan if x is None else x for x in chart["v"]])
    grid = np.array(chart["t"])
    assert grid[0] <= times["root"] - 50 * STEP and grid[-1] > times["lagged"]
    step_at = int(np.searchsorted(grid, times["root"]))
    # normalised: the root's step stands out by many robust deviations, before it ~0
    assert np.nanmedian(main[:step_at]) == pytest.approx(0, abs=1) and main[step_at + 1] > 3
    by = {line["label"].split(" (")[0]: np.array([np.nan if x is None else x
                                                  for x in line["v"]])
          for line in chart["lines"]}
    assert by["app.db.latency"][step_at + 3] > 3  # lagged two steps
    assert by["app.cache.hits"][step_at + 1] < -3  # inverted
    assert "lag +120 s" in next(line["label"] for line in chart["lines"]
                                if line["label"].startswith("app.db.latency"))
    env = {"SKYLINE_DATA_DIR": str(tmp_path / "var")}
    out = CliRunner().invoke(cli, ["incidents", "list", "--json"], env=env)
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)[0]["id"] == got[0]["id"], out.output
    out = CliRunner().invoke(cli, ["incidents", "show", got[0]["id"]], env=env)
    assert out.exit_code == 0 and "origin app.web.requests" in out.output
    assert "app.db.latency" in out.output and "correlated" in out.output
    out = CliRunner().invoke(cli, ["incidents", "show", "nope"], env=env)
    assert out.exit_code == 1 and "not found" in out.output


def test_one_alert_per_incident_updated_as_it_grows_then_resolved(redis_client, engine):
    """ALERTS rules with group = "incident": the luminosity service groups and publishes, the
    alerters read the incident stream. The webhook gets one alert for the incident, one
    update (the members that joined while it waited), and the resolve when the incident
    closes; PagerDuty keeps one incident (one dedup key) throughout; a per-metric rule on
    syslog-free channels is unchanged (checked in test_alerts)."""
    from skyline.alerting.channels import make_channel
    from skyline.events.stream import Consumer, parse_json_object
    from skyline.services.alerters.delivery import ChannelWorker
    from skyline.services.alerters.dispatch import Dispatcher
    from skyline.store.sql import alerts as q
    from tests.alertsinks import HttpSink, validate_pagerduty

    t0 = (time.time() // STEP) * STEP - (N - 1) * STEP
    times = _load(redis_client, t0)
    lum = _service(redis_client, engine)
    lum.load()
    with HttpSink() as hook, HttpSink(validate_pagerduty, ok_status=202) as pd:
        s = load_settings(
            LUMINOSITY_CORRELATE_ALL=True, luminosity={"max_wait": 0},
            WEBAPP_PUBLIC_URL="https://sky.example.com",
            ALERTS=[{"pattern": "app.**", "channel": "webhook", "group": "incident"},
                    {"pattern": "app.**", "channel": "pagerduty", "group": "incident"}],
            alerters={"webhook": {"enabled": True, "url": hook.url + "/hook"},
                      "pagerduty": {"enabled": True, "routing_key": "r" * 32,
                                    "url": pd.url + "/v2/enqueue"},
                      "incident_update_delay": 30})
        tel = Telemetry("alerters", "test")
        channels = {n: make_channel(n, s) for n in ("webhook", "pagerduty")}
        dispatcher = Dispatcher(s, redis_client, engine,
                                {n: c.resolves for n, c in channels.items()}, tel)
        consumer = Consumer(redis_client, "alerters", "a1", stream=keys.INCIDENT_STREAM,
                            parse=parse_json_object)
        loop = asyncio.new_event_loop()
        workers = {n: ChannelWorker(c, s, engine, tel, asyncio.Event())
                   for n, c in channels.items()}

        def step(at: float | None = None) -> dict[str, list[str]]:
            """The anomaly events already handed to luminosity: alerters read its stream
            (and the anomaly stream's per-metric path, which must stay silent), then
            every channel delivers what is due as of `at`."""
            consumer.poll(dispatcher.handle_incident, block_ms=None)
            out = {}
            for n, w in workers.items():
                due = q.claim_due(engine, n, lease=60, now=at)
                out[n] = loop.run_until_complete(w.deliver_batch(due))
            return out

        try:
            root = _event("app.web.requests", times["root"])
            lum.group(root)
            dispatcher.handle(root)  # the per-metric path: grouped rules leave it alone
            assert step() == {"webhook": ["sent"], "pagerduty": ["sent"]}
            for name, t in (("app.db.latency", times["lagged"]),
                            ("app.cache.hits", times["root"] + 2 * STEP)):
                e = _event(name, t)
                lum.group(e)
                dispatcher.handle(e)
            # the update waits incident_update_delay; the second member rides on the first
            assert step() == {"webhook": [], "pagerduty": []}
            assert step(at=time.time() + 31) == {"webhook": ["sent"], "pagerduty": ["sent"]}
            [inc] = [i for i in open_incidents(engine) if "app.web.requests" in i.members]
            for name in sorted(inc.members):
                e = _event(name, times["end"], "recovered")
                lum.group(e)
                dispatcher.handle(e)
            assert step() == {"webhook": ["sent"], "pagerduty": ["sent"]}
            counters = tel.snapshot()[0]
            # the stream handing everything over again changes nothing
            redis_client.xgroup_setid(keys.INCIDENT_STREAM, "alerters", id="0")
            assert step(at=time.time() + 60) == {"webhook": [], "pagerduty": []}
        finally:
            for c in channels.values():
                loop.run_until_complete(c.aclose())
            loop.close()
    alert, update, resolve = [json.loads(b)["alert"] for _, _, b in hook.requests]
    assert [a["kind"] for a in (alert, update, resolve)] == ["alert", "update", "resolve"]
    assert alert["metric"] == "app.web.requests"
    assert alert["incident"]["members"] == ["app.web.requests"]
    assert alert["link"] == f"https://sky.example.com/luminosity/incidents/{inc.id}"
    # the update carries the member list as it was when it was sent, in the order they began
    # (both joined two steps after the root: then by name)
    assert update["incident"]["members"] == ["app.web.requests", "app.cache.hits",
                                             "app.db.latency"]
    assert resolve["incident"]["ended"] == times["end"]
    trigger, retrigger, end = pd.accepted
    assert [x["event_action"] for x in (trigger, retrigger, end)] == [
        "trigger", "trigger", "resolve"]
    assert trigger["dedup_key"] == retrigger["dedup_key"] == end["dedup_key"] == (
        f"skyline-incident/{inc.id}")
    assert counters.get("alerts_grouped", 0) == 6  # 3 anomalies x 2 channels
    assert counters.get("incident_updates_coalesced", 0) == 2  # 1 per channel
