"""The Prometheus-compatible API on the real app, a real (embedded) Redis and SQLite: series
of the hot store, anomaly scores and events, selectors, evaluation, label endpoints, the
error shape, and the API token."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from fastapi.testclient import TestClient

from skyline.runtime.context import Context
from skyline.services.webapp import create_app
from skyline.settings import load_settings
from skyline.store import keys
from skyline.store.redis_client import redis_session
from skyline.store.series import encode
from skyline.store.sql import db
from tests.integration.webapp_data import anomaly
from tests.webauth import bearer

T0 = 1_800_000_000.0
P = "/prometheus/api/v1"


@pytest.fixture
def api(tmp_path) -> Iterator[tuple[Context, TestClient, dict[str, str]]]:
    settings = load_settings(DATA_DIR=tmp_path / "var")
    with redis_session(settings) as handle:
        ctx = Context(settings, handle)
        engine = ctx.engine = db.make_engine(settings.database_url)
        db.upgrade(engine)
        try:
            t = T0 + 60.0 * np.arange(10)
            ctx.store.append(["web.host1.rps"] * 10, t, np.arange(10, dtype=float))
            ctx.store.append(['node_load1{instance="a:9100",job="node"}'] * 10, t, t / 1e9)
            ctx.store.append(['node_load1{instance="b:9100",job="node"}'] * 5, t[:5],
                             np.full(5, 2.5))
            ctx.client.set(keys.scores("web.host1.rps"), encode(t, np.linspace(0, 0.9, 10)))
            anomaly(ctx, "web.host1.rps", T0 + 540, score=0.9)
            anomaly(ctx, "web.host1.rps", T0 + 120, score=0.75, status="recovered")
            client = TestClient(create_app(ctx), raise_server_exceptions=False)
            yield ctx, client, bearer(engine)
        finally:
            engine.dispose()


def test_needs_an_api_token(api):
    _ctx, c, _auth = api
    r = c.get(f"{P}/query", params={"query": "up"})
    assert r.status_code == 401


def test_instant_query_lookback_and_dotted_names(api):
    _ctx, c, auth = api
    r = c.get(f"{P}/query", params={"query": '{__name__="web.host1.rps"}',
                                    "time": T0 + 545}, headers=auth)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "success" and body["data"]["resultType"] == "vector"
    assert body["data"]["result"] == [{"metric": {"__name__": "web.host1.rps"},
                                       "value": [T0 + 545, "9"]}]
    # the newest point within 5 minutes before the time, and nothing after that
    at = c.get(f"{P}/query", params={"query": '{__name__="web.host1.rps"}',
                                     "time": T0 + 150}, headers=auth).json()["data"]
    assert at["result"][0]["value"] == [T0 + 150, "2"]
    late = c.get(f"{P}/query", params={"query": '{__name__="web.host1.rps"}',
                                       "time": T0 + 540 + 300}, headers=auth).json()["data"]
    assert late["result"] == []


def test_labels_selectors_and_post(api):
    _ctx, c, auth = api
    r = c.post(f"{P}/query", data={"query": 'node_load1{instance=~"a.*"}',
                                    "time": str(T0 + 540)}, headers=auth)
    assert r.status_code == 200, r.text
    (only,) = r.json()["data"]["result"]
    assert only["metric"] == {"__name__": "node_load1", "instance": "a:9100", "job": "node"}
    assert float(only["value"][1]) == (T0 + 540) / 1e9
    both = c.get(f"{P}/query", params={"query": '{job="node"}', "time": T0 + 240},
                 headers=auth).json()["data"]["result"]
    assert sorted(x["metric"]["instance"] for x in both) == ["a:9100", "b:9100"]


def test_range_query_steps_and_comparison(api):
    _ctx, c, auth = api
    r = c.get(f"{P}/query_range", params={"query": 'node_load1{instance="b:9100"}',
                                          "start": T0, "end": T0 + 900, "step": "2m"},
              headers=auth)
    (s,) = r.json()["data"]["result"]
    # points at T0..T0+240; each step takes the newest within 5 minutes
    assert [t for t, _ in s["values"]] == [T0 + 120 * i for i in range(5)]
    assert {v for _, v in s["values"]} == {"2.5"}
    r = c.get(f"{P}/query_range", params={"query": "skyline_anomaly_score > 0.5",
                                          "start": T0, "end": T0 + 540, "step": 60},
              headers=auth)
    (s,) = r.json()["data"]["result"]
    assert s["metric"] == {"metric": "web.host1.rps"}  # a comparison drops __name__
    assert [t for t, _ in s["values"]] == [T0 + 60 * i for i in range(6, 10)]


def test_scores_and_events(api):
    _ctx, c, auth = api
    r = c.get(f"{P}/query", params={"query": 'skyline_anomaly_score{metric="web.host1.rps"}',
                                    "time": T0 + 540}, headers=auth)
    (s,) = r.json()["data"]["result"]
    assert s["metric"] == {"__name__": "skyline_anomaly_score", "metric": "web.host1.rps"}
    assert float(s["value"][1]) == pytest.approx(0.9)
    # a metric without a score series has none: no error, no series
    none = c.get(f"{P}/query", params={"query": 'skyline_anomaly_score{metric="nope"}'},
                 headers=auth).json()
    assert none["status"] == "success" and none["data"]["result"] == []
    ev = c.get(f"{P}/query", params={"query": "skyline_anomaly[1h]", "time": T0 + 600},
               headers=auth).json()["data"]
    assert ev["resultType"] == "matrix"
    got = {x["metric"]["status"]: x["values"] for x in ev["result"]}
    assert got == {"anomalous": [[T0 + 540, "0.9"]], "recovered": [[T0 + 120, "0.75"]]}
    assert all(x["metric"]["source"] == "analyzer" for x in ev["result"])


def test_label_endpoints_and_series(api):
    _ctx, c, auth = api
    names = c.get(f"{P}/label/__name__/values", headers=auth).json()["data"]
    assert names == sorted(["node_load1", "skyline_anomaly", "skyline_anomaly_score",
                            "web.host1.rps"])
    labels = c.get(f"{P}/labels", headers=auth).json()["data"]
    assert {"__name__", "instance", "job", "metric", "source", "status"} <= set(labels)
    inst = c.get(f"{P}/label/instance/values", headers=auth,
                 params={"match[]": "node_load1"}).json()["data"]
    assert inst == ["a:9100", "b:9100"]
    series = c.post(f"{P}/series", headers=auth,
                    data={"match[]": ['{__name__="web.host1.rps"}', "skyline_anomaly_score"]}
                    ).json()["data"]
    assert {"__name__": "web.host1.rps"} in series
    assert {"__name__": "skyline_anomaly_score", "metric": "web.host1.rps"} in series
    info = c.get(f"{P}/status/buildinfo", headers=auth).json()
    assert info["status"] == "success" and info["data"]["version"]


@pytest.mark.parametrize("params,kind,status", [
    ({"query": "rate(x[5m])"}, "bad_data", 400),
    ({"query": "x +"}, "bad_data", 400),
    ({"query": ""}, "bad_data", 400),
    ({"query": "x", "time": "yesterday"}, "bad_data", 400),
])
def test_errors_in_prometheus_shape(api, params, kind, status):
    _ctx, c, auth = api
    r = c.get(f"{P}/query", params=params, headers=auth)
    assert r.status_code == status
    body = r.json()
    assert body["status"] == "error" and body["errorType"] == kind and body["error"]


def test_range_errors(api):
    _ctx, c, auth = api
    for params, needle in [({"query": "x", "start": 0, "end": 1e6, "step": 1}, "11,000"),
                           ({"query": "x[5m]", "start": 0, "end": 60, "step": 1}, "range"),
                           ({"query": "x", "start": 60, "end": 0, "step": 1}, "before"),
                           ({"query": "x", "start": 0, "end": 60}, "step")]:
        r = c.get(f"{P}/query_range", params=params, headers=auth)
        assert r.status_code == 400 and needle in r.json()["error"], r.text
    r = c.get(f"{P}/unknown", headers=auth)
    assert r.status_code == 404 and r.json()["errorType"] == "not_found"


def test_basic_auth_with_the_token_as_password(api):
    import base64

    _ctx, c, auth = api
    token = auth["Authorization"].split()[1]
    ok = base64.b64encode(f"grafana:{token}".encode()).decode()
    r = c.get(f"{P}/query", params={"query": "up"}, headers={"Authorization": f"Basic {ok}"})
    assert r.status_code == 200, r.text
    bad = base64.b64encode(b"grafana:wrong-token-0123456789abcdef").decode()
    r = c.get(f"{P}/query", params={"query": "up"}, headers={"Authorization": f"Basic {bad}"})
    assert r.status_code == 401
    # elsewhere basic auth is no way in
    r = c.get("/api/v1/metrics", headers={"Authorization": f"Basic {ok}"})
    assert r.status_code == 401
