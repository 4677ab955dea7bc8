"""Ionosphere's pages on the whole web app with login on (real embedded Redis, SQLite): the
anomaly page's teach buttons (CSRF checked), the profile live in the stage's cache at once,
the profiles page, a profile with its match drawn over it, "wrong match" disabling it, and
the anomalies list naming the profile that vetoed a candidate."""

from __future__ import annotations

import re
from collections.abc import Iterator

import numpy as np
import pytest
from fastapi.testclient import TestClient

from skyline.analysis import ionosphere as ion
from skyline.analysis.stages import Candidate, StageContext
from skyline.core.events import AnomalyEvent
from skyline.runtime.context import Context
from skyline.services.webapp import create_app
from skyline.settings import load_settings
from skyline.store import ionosphere_cache as cache
from skyline.store.redis_client import redis_session
from skyline.store.sql import db, save_anomaly
from skyline.store.sql import ionosphere as q
from tests.webauth import login

# a budget no machine load reaches: the verdicts asserted must not depend on it
UNHURRIED = load_settings(ionosphere={"budget": 10})
STEP = 60.0
DAY = 1440
T0 = 1_700_000_000.0
TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
def app(tmp_path) -> Iterator[tuple[Context, TestClient]]:
    settings = load_settings(DATA_DIR=tmp_path / "var")
    with redis_session(settings) as handle:
        ctx = Context(settings, handle)
        engine = ctx.engine = db.make_engine(settings.database_url)
        db.upgrade(engine)
        try:
            yield ctx, TestClient(create_app(ctx), raise_server_exceptions=False)
        finally:
            engine.dispose()


def day(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = np.arange(DAY)
    v = 100 * (1 + 0.2 * np.sin(2 * np.pi * x / DAY) + 0.02 * rng.normal(size=DAY))
    v[-30:] += 60
    return v


def event(ctx, seed: int, start: float, **kw) -> AnomalyEvent:
    v = day(seed)
    t = start + STEP * np.arange(DAY)
    ev = AnomalyEvent.build(metric="app.jobs", timestamp=float(t[-1]), value=float(v[-1]),
                            score=3.0, source="analyzer", window_timestamps=t, window_values=v,
                            **kw)
    save_anomaly(ctx.engine, ev)
    return ev


def test_teach_from_the_anomaly_page_then_see_the_veto_and_mark_it_wrong(app):
    ctx, client = app
    csrf = login(client, ctx.engine)
    ev = event(ctx, 1, T0)
    page = client.get(f"/anomalies/{ev.id}")
    assert page.status_code == 200
    assert "Not anomalous - teach" in page.text and "Real anomaly" in page.text
    assert 'id="remembered"' in page.text and f'action="/anomalies/{ev.id}/teach"' in page.text
    # without the CSRF token the form is refused
    r = client.post(f"/anomalies/{ev.id}/teach", data={"label": "not_anomalous"},
                    follow_redirects=False)
    assert r.status_code == 403 and cache.metrics(ctx.client) == set()
    r = client.post(f"/anomalies/{ev.id}/teach",
                    data={"label": "not_anomalous", "note": "nightly export",
                          "csrf_token": csrf}, follow_redirects=False)
    assert r.status_code == 303, r.text
    (p,) = q.list_profiles(ctx.engine)
    assert r.headers["location"] == f"/anomalies/{ev.id}?taught={p.id}"
    assert p.who == "tester" and p.note == "nightly export"
    assert cache.metrics(ctx.client) == {"app.jobs"}
    shown = client.get(r.headers["location"]).text
    assert f"profile #{p.id} is live" in shown and "nightly export" in shown

    # a week later the repeat is vetoed live, panorama records it
    t = T0 + 7 * 86400 + STEP * np.arange(DAY)
    stage = ion.factory({}, StageContext(settings=UNHURRIED, client=ctx.client))
    got = stage.check(Candidate("app.jobs", float(t[-1]), 1.0, 1.0, 0, 1, t, day(2)),
                      float("inf"))
    assert got.verdict == "veto"
    vetoed = event(ctx, 2, T0 + 7 * 86400, status="vetoed", stages=(got,))
    q.record_event_matches(ctx.engine, vetoed)
    listing = client.get("/anomalies").text
    assert f'href="/ionosphere/profiles/{p.id}">profile #{p.id}</a>' in listing
    detail = client.get(f"/anomalies/{vetoed.id}").text
    assert "say whether this match was wrong" in detail

    profiles = client.get("/ionosphere", params={"metric": "app.jobs"}).text
    assert f'href="/ionosphere/profiles/{p.id}">#{p.id}</a>' in profiles
    prof = client.get(f"/ionosphere/profiles/{p.id}").text
    assert "Wrong match" in prof and "match " in prof and 'id="profile-chart"' in prof
    (m,) = q.list_matches(ctx.engine, profile_id=p.id)
    r = client.post(f"/ionosphere/matches/{m.id}/review", data={"valid": "0",
                                                                  "csrf_token": csrf},
                    follow_redirects=False)
    assert r.status_code == 303
    assert not q.get_profile(ctx.engine, p.id).enabled and cache.metrics(ctx.client) == set()
    assert "marked wrong by tester" in client.get(f"/ionosphere/profiles/{p.id}").text
    r = client.post(f"/ionosphere/profiles/{p.id}/enable", data={"csrf_token": csrf},
                    follow_redirects=False)
    assert r.status_code == 303 and cache.metrics(ctx.client) == {"app.jobs"}
    r = client.post(f"/ionosphere/profiles/{p.id}/delete", data={"csrf_token": csrf},
                    follow_redirects=False)
    assert r.status_code == 303 and q.list_profiles(ctx.engine) == []


def test_an_anomaly_without_a_window_cannot_be_taught(app):
    ctx, client = app
    csrf = login(client, ctx.engine)
    bare = AnomalyEvent(metric="x", timestamp=T0, value=1, score=1, source="analyzer")
    save_anomaly(ctx.engine, bare)
    assert "nothing to teach from" in client.get(f"/anomalies/{bare.id}").text
    r = client.post(f"/anomalies/{bare.id}/teach",
                    data={"label": "not_anomalous", "csrf_token": csrf})
    assert r.status_code == 400
