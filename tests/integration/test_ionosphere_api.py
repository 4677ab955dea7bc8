"""Ionosphere's API on the whole web app (real embedded Redis, SQLite): teach from an anomaly,
the profile is in the stage's cache at once, list/get/disable/enable/delete, a dry-run check,
matches and their review; and the CLI over the same store."""

from __future__ import annotations

import json

import numpy as np
from click.testing import CliRunner

from skyline.analysis import ionosphere as ion
from skyline.analysis.stages import Candidate, StageContext
from skyline.core.events import AnomalyEvent
from skyline.settings import load_settings
from skyline.store import ionosphere_cache as cache
from skyline.store.sql import ionosphere as q
from skyline.store.sql import save_anomaly

# a budget no machine load reaches: the verdicts asserted must not depend on it
UNHURRIED = load_settings(ionosphere={"budget": 10})
STEP = 60.0
DAY = 1440
T0 = 1_700_000_000.0


def day(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = np.arange(DAY)
    v = 100 * (1 + 0.2 * np.sin(2 * np.pi * x / DAY) + 0.02 * rng.normal(size=DAY))
    v[-30:] += 60
    return v


def stored(ctx, seed: int = 1, start: float = T0) -> AnomalyEvent:
    v = day(seed)
    t = start + STEP * np.arange(DAY)
    ev = AnomalyEvent.build(metric="app.jobs", timestamp=float(t[-1]), value=float(v[-1]),
                            score=3.0, source="analyzer", window_timestamps=t,
                            window_values=v)
    save_anomaly(ctx.engine, ev)
    return ev


def test_teach_list_check_disable_review_delete(web):
    ctx, client = web
    ev = stored(ctx)
    r = client.post(f"/api/v1/anomalies/{ev.id}/feedback",
                    json={"label": "not_anomalous", "note": "nightly export", "who": "ann"})
    assert r.status_code == 201, r.text
    p = r.json()
    assert p["metric"] == "app.jobs" and p["who"] == "ann" and p["points"] == DAY
    assert cache.metrics(ctx.client) == {"app.jobs"}
    fb = client.get(f"/api/v1/anomalies/{ev.id}/feedback").json()
    assert [f["label"] for f in fb["feedback"]] == ["not_anomalous"] and fb["matches"] == []

    listed = client.get("/api/v1/ionosphere/profiles", params={"metric": "app.jobs"}).json()
    assert [x["id"] for x in listed["profiles"]] == [p["id"]]
    full = client.get(f"/api/v1/ionosphere/profiles/{p['id']}").json()
    assert len(full["values"]) == DAY and full["timestamps"][-1] == ev.timestamp

    t = T0 + 7 * 86400 + STEP * np.arange(DAY)
    chk = client.post("/api/v1/ionosphere/check", json={
        "metric": "app.jobs", "timestamps": t.tolist(), "values": day(2).tolist()}).json()
    assert chk["verdict"] == "veto" and chk["matches"][0]["profile_id"] == p["id"]
    flat = client.post("/api/v1/ionosphere/check", json={
        "metric": "app.jobs", "timestamps": t.tolist(), "values": [1.0] * DAY}).json()
    assert flat["verdict"] == "none" and flat["profiles"] == 1
    assert client.post("/api/v1/ionosphere/check", json={
        "metric": "m", "timestamps": [1.0], "values": []}).status_code == 400

    # the stage vetoes, panorama records the match, an operator says it was wrong
    stage = ion.factory({}, StageContext(settings=UNHURRIED, client=ctx.client))
    got = stage.check(Candidate("app.jobs", float(t[-1]), 1.0, 1.0, 0, 1, t, day(2)),
                      float("inf"))
    assert got.verdict == "veto"
    vetoed = AnomalyEvent.build(metric="app.jobs", timestamp=float(t[-1]), value=1.0,
                                score=1.0, source="analyzer", status="vetoed", stages=(got,))
    q.record_event_matches(ctx.engine, vetoed)
    ms = client.get("/api/v1/ionosphere/matches", params={"profile_id": p["id"]}).json()
    assert [m["event_id"] for m in ms["matches"]] == [vetoed.id]
    mid = ms["matches"][0]["id"]
    r = client.post(f"/api/v1/ionosphere/matches/{mid}/review", json={"valid": False})
    assert r.json() == {"profile_ids": [p["id"]]}
    assert cache.metrics(ctx.client) == set()
    assert client.post(f"/api/v1/ionosphere/profiles/{p['id']}/enable").json() == \
        {"profile_ids": [p["id"]]}
    assert cache.metrics(ctx.client) == {"app.jobs"}
    r = client.post(f"/api/v1/ionosphere/profiles/{p['id']}/disable", json={"reason": "x"})
    assert r.json() == {"profile_ids": [p["id"]]}
    assert client.get(f"/api/v1/ionosphere/profiles/{p['id']}").json()["disabled_reason"] == "x"
    assert client.delete(f"/api/v1/ionosphere/profiles/{p['id']}").status_code == 204
    assert client.get(f"/api/v1/ionosphere/profiles/{p['id']}").status_code == 404
    assert client.post("/api/v1/anomalies/nope/feedback",
                       json={"label": "anomalous"}).status_code == 404
    assert client.post(f"/api/v1/anomalies/{ev.id}/feedback",
                       json={"label": "maybe"}).status_code in (400, 422)


def test_cli_teach_list_disable_check(web, tmp_path, monkeypatch):
    from skyline.cli.main import cli

    ctx, _ = web
    ev = stored(ctx)
    monkeypatch.setenv("SKYLINE_DATA_DIR", str(ctx.settings.DATA_DIR))
    monkeypatch.setenv("SKYLINE_DATABASE_URL", ctx.settings.database_url)
    run = CliRunner().invoke
    r = run(cli, ["ionosphere", "teach", ev.id, "--who", "ann", "--note", "backup"])
    assert r.exit_code == 0, r.output
    assert "profile #" in r.output
    r = run(cli, ["ionosphere", "list", "--json"])
    rows = json.loads(r.stdout)
    assert [x["metric"] for x in rows] == ["app.jobs"]
    pid = rows[0]["id"]
    assert cache.metrics(ctx.client) == {"app.jobs"}
    # check the metric's series in the hot store against its profiles
    t = T0 + 7 * 86400 + STEP * np.arange(DAY)
    ctx.store.append(["app.jobs"] * DAY, t, day(3))
    r = run(cli, ["ionosphere", "check", "app.jobs", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["verdict"] == "veto"
    r = run(cli, ["ionosphere", "disable", str(pid), "--reason", "done"])
    assert r.exit_code == 0 and cache.metrics(ctx.client) == set()
    r = run(cli, ["ionosphere", "list"])
    assert "disabled" in r.output
    r = run(cli, ["ionosphere", "disable", "999999"])
    assert r.exit_code == 1 and "not found" in r.output
