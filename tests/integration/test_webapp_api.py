"""The web app's /api/v1 read endpoints in process, on a real embedded Redis and SQLite:
shapes, filters, keyset pages both ways, 400 and 404 paths, and the OpenAPI schema."""

from __future__ import annotations

import time

import numpy as np

from skyline.store import history as hist
from skyline.store import keys
from tests.integration import webapp_data as wd


def test_metrics_list_pattern_limit_cursor_total(web):
    ctx, client = web
    names = [f"web.{i:03d}.cpu" for i in range(250)] + ["db.a.mem", wd.HOSTILE]
    ctx.store.append(names, np.full(len(names), time.time()), np.ones(len(names)))
    body = client.get("/api/v1/metrics", params={"limit": 2}).json()
    assert body["total"] == 252 and len(body["metrics"]) == 2 and body["next"]
    got, cursor = [], None
    while True:
        params = {"pattern": "web.*.cpu", "limit": 100} | ({"cursor": cursor} if cursor else {})
        page = client.get("/api/v1/metrics", params=params).json()
        assert page["total"] == 251  # the hostile name has three elements too
        got += page["metrics"]
        cursor = page["next"]
        if cursor is None:
            break
    assert got == sorted(n for n in names if n != "db.a.mem")
    assert client.get("/api/v1/metrics", params={"pattern": "re:^db"}).json() == {
        "metrics": ["db.a.mem"], "total": 1, "next": None}
    bad = client.get("/api/v1/metrics", params={"pattern": "re:("})
    assert bad.status_code == 400 and bad.json()["error"].startswith("pattern: invalid")
    assert client.get("/api/v1/metrics", params={"limit": 0}).status_code == 400
    assert client.get("/api/v1/metrics", params={"limit": 5000}).status_code == 400


def test_series(web):
    ctx, client = web
    now = time.time()
    wd.series(ctx, "web.a.cpu", now - 30)
    wd.series(ctx, wd.HOSTILE, now - 30, n=5)
    body = client.get("/api/v1/series/web.a.cpu").json()
    t, v = wd.window(now - 30)
    assert body == {"metric": "web.a.cpu", "points": 300, "timestamps": t.tolist(),
                    "values": v.tolist(), "resolution": None, "downsampled_before": None}
    part = client.get("/api/v1/series/web.a.cpu", params={"from": "-1h", "until": "-10m"}).json()
    assert part["points"] == len(part["timestamps"]) == 50
    assert all(now - 3600 <= x <= now - 600 for x in part["timestamps"])
    iso = client.get("/api/v1/series/web.a.cpu",
                     params={"from": "2001-01-01T00:00:00Z", "until": str(now - 30)}).json()
    assert iso["points"] == 300
    from urllib.parse import quote

    hostile = client.get("/api/v1/series/" + quote(wd.HOSTILE, safe=""))
    assert hostile.status_code == 200 and hostile.json()["metric"] == wd.HOSTILE
    missing = client.get("/api/v1/series/no.such.metric")
    assert missing.status_code == 404 and missing.json() == {
        "error": "no metric named 'no.such.metric'"}
    bad = client.get("/api/v1/series/web.a.cpu", params={"from": "soon"})
    assert bad.status_code == 400 and bad.json()["error"].startswith("from: not a time")


def test_series_reaches_into_the_long_history(web):
    """7 d / 30 d: before the raw series, the long history's bucket means."""
    ctx, client = web
    now = time.time()
    wd.series(ctx, "web.a.cpu", now - 30)  # 300 raw points, the last 5 h
    first_raw = now - 30 - 299 * 60
    r = 600
    end = (first_raw // r) * r  # whole buckets before the raw series, as the roomba moves
    t = np.arange(end - 6 * 86400, end, 60.0)
    b = hist.bucketise(t, np.round(50 + 10 * np.sin(t / 5000.0), 2), r)
    ctx.client.set(keys.history("web.a.cpu"), hist.encode(b))
    week = client.get("/api/v1/series/web.a.cpu", params={"from": "-7d"}).json()
    assert week["resolution"] == r and week["downsampled_before"] == end
    assert week["points"] == len(b) + 300
    assert week["timestamps"][: len(b)] == b.timestamps.tolist()
    assert week["values"][: len(b)] == b.mean.tolist()
    assert week["timestamps"][len(b):] == wd.window(now - 30)[0].tolist()
    day = client.get("/api/v1/series/web.a.cpu", params={"from": "-1d"}).json()
    assert day["downsampled_before"] == end and day["timestamps"][0] >= now - 86400 - r
    recent = client.get("/api/v1/series/web.a.cpu", params={"from": "-1h"}).json()
    assert recent["downsampled_before"] is None and recent["points"] == 60
    page = client.get("/series/web.a.cpu", params={"from": "-30d"},
                      headers={"Accept": "text/html"}).text
    assert 'id="long-history-note"' in page and f"{len(b)} means of 600-s buckets" in page
    backwards = client.get("/api/v1/series/web.a.cpu", params={"from": "-1h", "until": "-2h"})
    assert backwards.status_code == 400 and "from is after until" in backwards.json()["error"]


def test_anomalies_list_keeps_its_shape_and_pages_both_ways(web):
    ctx, client = web
    now = time.time()
    made = [wd.anomaly(ctx, f"svc.n{i % 3}.lat", now - 10 * i, with_window=False,
                       score=0.1 + (i % 9) / 10) for i in range(57)]
    first = client.get("/api/v1/anomalies", params={"limit": 10}).json()
    assert set(first) == {"items", "next", "prev"} and first["prev"] is None
    item = first["items"][0]
    assert set(item) == {"id", "metric", "timestamp", "value", "score", "source", "status",
                         "triggered", "results", "stages", "band_low", "band_high", "since",
                         "created"}
    assert item["id"] == made[0].id and item["results"][2] == {
        "algorithm": "ks_test", "verdict": None, "statistic": None, "limit": None,
        "text": "abstained: too few points"}
    pages, cursor = [first], first["next"]
    while cursor:
        pages.append(client.get("/api/v1/anomalies",
                                params={"limit": 10, "before": cursor}).json())
        cursor = pages[-1]["next"]
    ids = [x["id"] for p in pages for x in p["items"]]
    assert ids == [e.id for e in made]
    back, cursor = [], pages[-1]["prev"]
    while cursor:
        back.append(client.get("/api/v1/anomalies", params={"limit": 10, "after": cursor}).json())
        cursor = back[-1]["prev"]
    assert [[x["id"] for x in p["items"]] for p in back] == \
        [[x["id"] for x in p["items"]] for p in pages[-2::-1]]
    # filters, as before the move from panorama
    f = client.get("/api/v1/anomalies", params={"pattern": "svc.n1.*", "min_score": 0.5,
                                                "from": "-5m", "limit": 1000}).json()
    want = [e.id for e in made if e.metric == "svc.n1.lat" and e.score >= 0.5
            and e.timestamp >= now - 300]
    assert [x["id"] for x in f["items"]] == want and want


def test_anomalies_bad_parameters_and_unknown_ids(web):
    ctx, client = web
    e = wd.anomaly(ctx, "web.a.cpu", time.time() - 60)
    cases = {
        (("from", "whenever"),): "from: not a time",
        (("pattern", "re:("),): "pattern: invalid regular expression",
        (("limit", "0"),): "limit",
        (("limit", "lots"),): "limit",
        (("status", "sleepy"),): "status must be one of anomalous, recovered, vetoed",
        (("min_score", "nan"),): "min_score",
        (("before", e.id), ("after", e.id)): "give before or after, not both",
        (("from", "-1h"), ("until", "-2h")): "from is after until",
    }
    for params, message in cases.items():
        r = client.get("/api/v1/anomalies", params=dict(params))
        assert r.status_code == 400, (params, r.text)
        assert message in r.json()["error"], (params, r.json())
    for path in ("/api/v1/anomalies/feedfacefeedface", "/api/v1/anomalies/feedface/window",
                 "/api/v1/anomalies/feedface/graph.png"):
        r = client.get(path)
        assert r.status_code == 404 and "not found" in r.json()["error"], path
    gone = client.get("/api/v1/anomalies", params={"before": "feedface"})
    assert gone.status_code == 404


def test_anomaly_detail_window_and_graph(web):
    ctx, client = web
    e = wd.anomaly(ctx, "web.a.cpu", time.time() - 60)
    d = client.get(f"/api/v1/anomalies/{e.id}").json()
    assert d["id"] == e.id and d["metric"] == "web.a.cpu" and d["triggered"] == list(e.triggered)
    assert "window" not in d
    w = client.get(f"/api/v1/anomalies/{e.id}/window").json()
    t, v = e.window_arrays()
    assert w == {"metric": "web.a.cpu", "points": 300, "timestamps": t.tolist(),
                 "values": v.tolist(), "resolution": None, "downsampled_before": None}
    png = client.get(f"/api/v1/anomalies/{e.id}/graph.png")
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG")


def test_analyzer_runs_and_stats(web):
    ctx, client = web
    interval = float(ctx.settings.ANALYZER_OPTIMUM_RUN_DURATION)
    empty = client.get("/api/v1/analyzer/stats").json()
    assert empty["runs"] == 0 and empty["duration_p50"] is None
    wd.runs(ctx, 3, interval=interval)
    runs = client.get("/api/v1/analyzer/runs", params={"limit": 2}).json()["runs"]
    assert [r["metrics"] for r in runs] == [1002, 1001]
    assert runs[0]["exceptions"] == {"TooShort": 10} and runs[0]["stages"] == {"ensemble": 1.0}
    stats = client.get("/api/v1/analyzer/stats").json()
    assert stats["runs"] == 3 and stats["overruns"] == 1 and stats["anomalies"] == 3
    assert stats["duration_max"] == 2 * interval and stats["duration_p50"] == 0.25 * interval
    assert stats["metrics_last"] == 1002 and stats["interval"] == interval
    assert client.get("/api/v1/analyzer/runs", params={"limit": -1}).status_code == 400


def test_openapi_documents_the_read_api_and_its_errors(web):
    _, client = web
    schema = client.get("/api/v1/openapi.json").json()
    paths = schema["paths"]
    for p in ("/api/v1/metrics", "/api/v1/series/{name}", "/api/v1/anomalies",
              "/api/v1/anomalies/{event_id}", "/api/v1/anomalies/{event_id}/window",
              "/api/v1/analyzer/runs", "/api/v1/analyzer/stats", "/api/v1/health"):
        assert p in paths, p
    for p, ops in paths.items():
        for op in ops.values():
            assert "422" not in op["responses"], p  # the handler answers 400, not 422
    anomalies = paths["/api/v1/anomalies"]["get"]
    assert {"400", "404"} <= set(anomalies["responses"])
    ok = anomalies["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok == {"$ref": "#/components/schemas/AnomalyPageOut"}
    assert "ErrorOut" in schema["components"]["schemas"]
    # the pages are not API
    assert "/" not in paths and "/anomalies" not in paths


def test_the_web_app_alone_serves_silences_and_the_alert_log(web):
    """No alerters router mounted (create_app with none): `skyline serve webapp` alone."""
    _, client = web
    r = client.post("/api/v1/silences", json={"pattern": "web.**", "until": "2h",
                                             "reason": "deploy", "who": "ops"})
    assert r.status_code == 201, r.text
    sid = r.json()["id"]
    listed = client.get("/api/v1/silences").json()["silences"]
    assert [(s["id"], s["pattern"], s["reason"]) for s in listed] == [(sid, "web.**", "deploy")]
    assert client.get("/api/v1/alerts/log").json() == {"log": []}
    assert client.delete(f"/api/v1/silences/{sid}").status_code == 204
    assert client.delete(f"/api/v1/silences/{sid}").status_code == 404
    assert client.get("/api/v1/silences").json() == {"silences": []}
