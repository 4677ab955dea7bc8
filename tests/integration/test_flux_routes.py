"""Flux's routes in process (TestClient), against a real embedded Redis: every protocol,
key rule, status code and limit, checked in what the hot store then holds and in the
counters."""

from __future__ import annotations

import gzip
import json
import time

import cramjam
import pytest
from fastapi.testclient import TestClient
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)

from skyline.runtime.context import Context
from skyline.services import flux
from skyline.services.flux.promwrite import WriteRequest
from skyline.services.webapp import create_app
from skyline.settings import load_settings
from skyline.store.redis_client import redis_session

KEY = "K" * 32
ROOT_KEY = "R" * 32


@pytest.fixture
def make(tmp_path):
    """make(**settings) -> (ctx, client); the hot store is shared by every client made."""
    sessions = []

    def _make(**overrides):
        settings = load_settings(DATA_DIR=tmp_path / "var",
                                 FLUX_API_KEYS={KEY: "team", ROOT_KEY: ""}, **overrides)
        session = redis_session(settings)
        handle = session.__enter__()
        sessions.append(session)
        ctx = Context(settings, handle)
        app = create_app(ctx, flux.routers(ctx))
        return ctx, TestClient(app, raise_server_exceptions=False)

    yield _make
    for s in reversed(sessions):
        s.__exit__(None, None, None)


@pytest.fixture
def env(make):
    return make()


def stored(ctx, name):
    ctx.points.flush()
    s = ctx.store.read_one(name)
    return list(zip(s.timestamps.tolist(), s.values.tolist(), strict=True))


def counters(ctx, component="ingest"):
    return ctx.telemetry(component).snapshot()[0]


NOW = int(time.time())


# keys -----------------------------------------------------------------------------------------
def test_the_key_may_come_from_every_place_its_clients_put_it(env):
    ctx, c = env
    body = {"metrics": [{"metric": "a", "timestamp": NOW, "value": 1}]}
    import base64

    basic = base64.b64encode(f"user:{KEY}".encode()).decode()
    for i, kwargs in enumerate([
        {"headers": {"key": KEY}},
        {"headers": {"Authorization": f"Bearer {KEY}"}},
        {"headers": {"Authorization": f"Token {KEY}"}},
        {"headers": {"Authorization": f"Basic {basic}"}},
        {"params": {"key": KEY}},
    ]):
        body["metrics"][0]["timestamp"] = NOW - i
        r = c.post("/flux/metric_data_post", json=body, **kwargs)
        assert r.status_code == 204, (kwargs, r.text)
    r = c.post("/flux/metric_data_post", json={"key": KEY, **body})
    assert r.status_code == 204
    assert [t for t, _ in stored(ctx, "team.a")] == [NOW - i for i in range(4, -1, -1)]


def test_missing_or_wrong_key_is_401_and_counted(env):
    ctx, c = env
    body = {"metrics": [{"metric": "a", "timestamp": NOW, "value": 1}]}
    r = c.post("/flux/metric_data_post", json=body)
    assert r.status_code == 401 and "no flux key" in r.json()["error"]
    r = c.post("/flux/metric_data_post", json={"key": "x" * 32, **body})
    assert r.status_code == 401 and r.json() == {"error": "invalid flux key"}
    r = c.post("/flux/prometheus/write", content=b"", headers={"key": "nope"})
    assert r.status_code == 401
    r = c.post("/write", content=b"m v=1", params={"p": "nope"})
    assert r.status_code == 401
    r = c.post("/v1/metrics", content=b"")
    assert r.status_code == 401
    got = counters(ctx)
    assert got["rejected_json_no_key"] == 1 and got["rejected_json_bad_key"] == 1
    assert got["rejected_prometheus_bad_key"] == 1 and got["rejected_influx_bad_key"] == 1
    assert got["rejected_otlp_no_key"] == 1
    assert ctx.store.names() == []


def test_anonymous_needs_the_setting_and_a_wrong_key_stays_wrong(make):
    ctx, c = make(FLUX_ALLOW_ANONYMOUS=True)
    r = c.get("/flux/metric_data", params={"metric": "anon.m", "value": 3, "timestamp": NOW})
    assert r.status_code == 204
    assert stored(ctx, "anon.m") == [(NOW, 3.0)]
    r = c.get("/flux/metric_data", params={"metric": "anon.m", "value": 3, "key": "wrong"})
    assert r.status_code == 401


def test_tenant_header_adds_a_namespace_element(env):
    ctx, c = env
    r = c.get("/flux/metric_data", params={"metric": "m", "value": 1, "timestamp": NOW,
                                           "key": KEY}, headers={"X-Scope-OrgID": "acme"})
    assert r.status_code == 204
    r = c.get("/flux/metric_data", params={"metric": "m", "value": 2, "timestamp": NOW,
                                           "key": ROOT_KEY}, headers={"X-Scope-OrgID": "acme"})
    assert r.status_code == 204
    assert stored(ctx, "team.acme.m") == [(NOW, 1.0)] and stored(ctx, "acme.m") == [(NOW, 2.0)]
    r = c.get("/flux/metric_data", params={"metric": "m", "value": 1, "key": KEY},
              headers={"X-Scope-OrgID": "a.b"})
    assert r.status_code == 400 and "tenant" in r.json()["error"]


# JSON API ---------------------------------------------------------------------------------------
def test_get_metric_data(env):
    ctx, c = env
    r = c.get("/flux/metric_data", params={"metric": "web.rps", "value": "12.5",
                                           "timestamp": NOW, "key": KEY})
    assert r.status_code == 204 and r.content == b""
    assert stored(ctx, "team.web.rps") == [(NOW, 12.5)]
    r = c.get("/flux/metric_data", params={"metric": "web.rps", "key": KEY})
    assert r.status_code == 400 and r.json() == {"error": "metric and value are required"}
    r = c.get("/flux/metric_data", params={"metric": "web.rps", "value": "x", "key": KEY})
    assert r.status_code == 400 and r.json()["errors"] == [{"item": 0, "reason": "bad_value"}]


def test_post_all_some_and_none_accepted(env):
    ctx, c = env
    good = [{"metric": f"m.{i}", "timestamp": NOW, "value": i} for i in range(3)]
    assert c.post("/flux/metric_data_post", json={"key": KEY, "metrics": good}).status_code == 204
    assert stored(ctx, "team.m.2") == [(NOW, 2.0)]

    mixed = [{"metric": "ok.x", "timestamp": NOW, "value": 1},
             {"metric": "bad name", "timestamp": NOW, "value": 1},
             {"metric": "old", "timestamp": NOW - 10 * 86400, "value": 1},
             {"metric": "ok.y", "value": "nope"}]
    r = c.post("/flux/metric_data_post", json={"key": KEY, "metrics": mixed})
    assert r.status_code == 207
    body = r.json()
    assert body["accepted"] == 1 and body["rejected"] == 3
    assert body["errors"] == [
        {"item": 1, "reason": "bad_name_chars", "metric": "team.bad name"},
        {"item": 2, "reason": "timestamp_too_old", "metric": "team.old"},
        {"item": 3, "reason": "bad_value"},
    ]
    assert stored(ctx, "team.ok.x") == [(NOW, 1.0)]

    r = c.post("/flux/metric_data_post", json={"key": KEY, "metrics": mixed[1:]})
    assert r.status_code == 400 and r.json()["accepted"] == 0
    assert r.json()["error"].startswith("no metric accepted")

    single = {"key": KEY, "metric": "one", "timestamp": NOW, "value": 7}
    assert c.post("/flux/metric_data_post", json=single).status_code == 204
    assert stored(ctx, "team.one") == [(NOW, 7.0)]
    got = counters(ctx)
    assert got["rejected_json_bad_value"] == 2 and got["rejected_json_timestamp_too_old"] == 2


def test_post_gzip_bad_json_and_limits(make):
    ctx, c = make(FLUX_MAX_METRICS_PER_POST=3, flux={"max_body_bytes": 2048})
    body = json.dumps({"key": KEY, "metrics": [{"metric": "z", "timestamp": NOW, "value": 1}]})
    r = c.post("/flux/metric_data_post", content=gzip.compress(body.encode()),
               headers={"Content-Encoding": "gzip", "Content-Type": "application/json"})
    assert r.status_code == 204 and stored(ctx, "team.z") == [(NOW, 1.0)]

    r = c.post("/flux/metric_data_post", content=b"{not json", headers={"key": KEY})
    assert r.status_code == 400 and "not valid JSON" in r.json()["error"]
    r = c.post("/flux/metric_data_post", content=b"{not json")  # no key: 401 first
    assert r.status_code == 401

    four = {"key": KEY, "metrics": [{"metric": "z", "value": 1}] * 4}
    r = c.post("/flux/metric_data_post", json=four)
    assert r.status_code == 413 and "FLUX_MAX_METRICS_PER_POST" in r.json()["error"]

    r = c.post("/flux/metric_data_post", content=b" " * 3000, headers={"key": KEY})
    assert r.status_code == 413 and "flux.max_body_bytes" in r.json()["error"]
    bomb = gzip.compress(b" " * 100_000)
    assert len(bomb) < 2048
    r = c.post("/flux/metric_data_post", content=bomb,
               headers={"key": KEY, "Content-Encoding": "gzip"})
    assert r.status_code == 413
    r = c.post("/flux/metric_data_post", content=b"xx",
               headers={"key": KEY, "Content-Encoding": "gzip"})
    assert r.status_code == 400
    got = counters(ctx)
    assert got["rejected_json_bad_json"] == 1 and got["rejected_json_too_many_metrics"] == 1
    assert got["rejected_json_body_too_large"] == 2 and got["rejected_json_bad_gzip"] == 1
    assert got["rejected_json_no_key"] == 1


def test_buffer_full_is_503_then_backpressure(make):
    ctx, c = make(FLUX_MAX_METRICS_PER_POST=1000, redis={"write_buffer_max_points": 1000},
                  ingest={"high_watermark": 1000, "low_watermark": 500})
    metrics = [{"metric": f"f.{i}", "timestamp": NOW, "value": 1} for i in range(999)]
    assert c.post("/flux/metric_data_post", json={"key": KEY, "metrics": metrics}).status_code \
        == 204
    two = [{"metric": "g.1", "timestamp": NOW, "value": 1},
           {"metric": "g.2", "timestamp": NOW, "value": 1}]
    r = c.post("/flux/metric_data_post", json={"key": KEY, "metrics": two})
    assert r.status_code == 503 and r.headers["retry-after"] == "5"
    r = c.post("/flux/metric_data_post", json={"key": KEY, "metrics": two})
    assert r.status_code == 503 and "saturated" in r.json()["error"]
    assert counters(ctx)["rejected_json_backpressure"] == 1
    ctx.points.flush()
    ctx.ingest.after_flush()
    assert c.post("/flux/metric_data_post", json={"key": KEY, "metrics": two}).status_code == 204


# Prometheus remote_write ------------------------------------------------------------------------
def _remote_write(series):
    req = WriteRequest()
    for labels, samples in series:
        ts = req.timeseries.add()
        for k, v in labels.items():
            ts.labels.add(name=k, value=v)
        for t, v in samples:
            ts.samples.add(timestamp=t, value=v)
    return bytes(cramjam.snappy.compress_raw(req.SerializeToString()))


PROM_HEADERS = {"Content-Encoding": "snappy", "Content-Type": "application/x-protobuf",
                "X-Prometheus-Remote-Write-Version": "0.1.0"}


def test_remote_write(env):
    ctx, c = env
    body = _remote_write([
        ({"__name__": "up", "job": "node"}, [(NOW * 1000, 1.0), (NOW * 1000 + 500, 0.0)]),
        ({"__name__": "temp", "room": 'a "b"'}, [(NOW * 1000, 21.5)]),
    ])
    r = c.post("/flux/prometheus/write", content=body,
               headers={**PROM_HEADERS, "Authorization": f"Bearer {KEY}"})
    assert r.status_code == 204, r.text
    assert stored(ctx, 'team.up{job="node"}') == [(NOW, 1.0), (NOW + 0.5, 0.0)]
    assert stored(ctx, 'team.temp{room="a \\"b\\""}') == [(NOW, 21.5)]

    body = _remote_write([({"__name__": "ok"}, [(NOW * 1000, 1.0)]),
                          ({"job": "nameless"}, [(NOW * 1000, 1.0)])])
    r = c.post("/flux/prometheus/write", content=body, headers={**PROM_HEADERS, "key": KEY})
    assert r.status_code == 207
    assert r.json()["errors"] == [{"item": 1, "reason": "no_metric_name"}]

    old = _remote_write([({"__name__": "old"}, [((NOW - 10 * 86400) * 1000, 1.0)])])
    r = c.post("/flux/prometheus/write", content=old, headers={**PROM_HEADERS, "key": KEY})
    assert r.status_code == 400  # never retried: retrying cannot make it younger

    r = c.post("/flux/prometheus/write", content=b"\x05notsnappy",
               headers={**PROM_HEADERS, "key": KEY})
    assert r.status_code == 400 and "snappy" in r.json()["error"]
    r = c.post("/flux/prometheus/write", content=bytes(cramjam.snappy.compress_raw(b"\xff\xff")),
               headers={**PROM_HEADERS, "key": KEY})
    assert r.status_code == 400 and "WriteRequest" in r.json()["error"]
    r = c.post("/flux/prometheus/write", content=body, headers={
        **PROM_HEADERS, "key": KEY,
        "Content-Type": "application/x-protobuf;proto=io.prometheus.write.v2.Request"})
    assert r.status_code == 415
    got = counters(ctx)
    assert got["accepted_prometheus"] == 4 and got["rejected_prometheus_bad_snappy"] == 1
    assert got["rejected_prometheus_bad_protobuf"] == 1
    assert got["rejected_prometheus_no_metric_name"] == 1


# Influx line protocol ---------------------------------------------------------------------------
def test_influx_v1_and_v2(env):
    ctx, c = env
    lines = (f"cpu,host=h1,cpu=cpu0 usage_idle=97.5,usage_user=2i {NOW}\n"
             f'sys,host=h1 uptime=100u,uptime_format="1 day" {NOW}\n')
    r = c.post("/write", params={"db": "telegraf", "precision": "s", "p": KEY},
               content=lines.encode())
    assert r.status_code == 204, r.text
    assert stored(ctx, 'team.cpu_usage_idle{cpu="cpu0",host="h1"}') == [(NOW, 97.5)]
    assert stored(ctx, 'team.sys_uptime{host="h1"}') == [(NOW, 100.0)]
    assert counters(ctx)["rejected_influx_string_field"] == 1

    v2 = gzip.compress(f"mem,host=h1 used=5i {NOW * 1000}\n".encode())
    r = c.post("/api/v2/write", params={"org": "o", "bucket": "b", "precision": "ms"},
               content=v2, headers={"Authorization": f"Token {ROOT_KEY}",
                                    "Content-Encoding": "gzip"})
    assert r.status_code == 204, r.text
    assert stored(ctx, 'mem_used{host="h1"}') == [(NOW, 5.0)]

    r = c.post("/flux/write", params={"precision": "s"}, headers={"key": KEY},
               content=f"a v=1 {NOW}\nbroken\nb v=2 {NOW}\n".encode())
    assert r.status_code == 400
    assert r.json()["error"].startswith("partial write: 1 refused (bad_line: 1)")
    assert stored(ctx, "team.b_v") == [(NOW, 2.0)]
    r = c.post("/api/v2/write", params={"precision": "m"}, headers={"key": KEY}, content=b"")
    assert r.status_code == 400 and "precision" in r.json()["error"]
    assert c.get("/ping").status_code == 204
    q = c.post("/query", data={"q": 'CREATE DATABASE "telegraf"'})
    assert q.status_code == 200 and q.json() == {"results": [{"statement_id": 0}]}


# OTLP -------------------------------------------------------------------------------------------
def _otlp_request(points):
    req = ExportMetricsServiceRequest()
    rm = req.resource_metrics.add()
    rm.resource.attributes.add(key="service.name").value.string_value = "shop"
    rm.resource.attributes.add(key="telemetry.sdk.name").value.string_value = "x"
    sm = rm.scope_metrics.add()
    g = sm.metrics.add(name="queue.depth")
    for t, v in points:
        dp = g.gauge.data_points.add(time_unix_nano=t * 10**9, as_double=v)
        dp.attributes.add(key="queue.name").value.string_value = "orders"
    h = sm.metrics.add(name="latency")
    h.histogram.data_points.add(time_unix_nano=NOW * 10**9, count=1)
    return req


def test_otlp_protobuf_and_json(env):
    ctx, c = env
    req = _otlp_request([(NOW, 4.0)])
    r = c.post("/v1/metrics", content=req.SerializeToString(),
               headers={"Content-Type": "application/x-protobuf", "Authorization": f"Bearer {KEY}"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/x-protobuf"
    reply = ExportMetricsServiceResponse.FromString(r.content)
    assert reply.partial_success.rejected_data_points == 1
    assert "histogram: 1" in reply.partial_success.error_message
    name = 'team.queue.depth{queue_name="orders",service_name="shop"}'
    assert stored(ctx, name) == [(NOW, 4.0)]

    from google.protobuf import json_format

    doc = json_format.MessageToJson(_otlp_request([(NOW + 1, 5.0)]))
    r = c.post("/flux/otlp/v1/metrics", content=gzip.compress(doc.encode()),
               headers={"Content-Type": "application/json", "Content-Encoding": "gzip",
                        "key": KEY})
    assert r.status_code == 200 and r.json()["partialSuccess"]["rejectedDataPoints"] == "1"
    assert stored(ctx, name) == [(NOW, 4.0), (NOW + 1, 5.0)]

    r = c.post("/v1/metrics", content=b"\xff\xff", headers={
        "Content-Type": "application/x-protobuf", "key": KEY})
    assert r.status_code == 400 and "OTLP" in r.json()["error"]
    r = c.post("/v1/metrics", content=b"{", headers={"Content-Type": "application/json",
                                                     "key": KEY})
    assert r.status_code == 400
    r = c.post("/v1/metrics", content=b"", headers={"Content-Type": "text/plain", "key": KEY})
    assert r.status_code == 415
    got = counters(ctx)
    assert got["rejected_otlp_histogram"] == 2 and got["rejected_otlp_bad_protobuf"] == 1
    assert got["rejected_otlp_bad_json"] == 1


def test_flux_requests_are_counted_and_listed_in_openapi(env):
    ctx, c = env
    c.get("/flux/metric_data", params={"metric": "m", "value": 1, "key": KEY})
    assert counters(ctx, "flux")["requests_json"] == 1
    paths = c.app.openapi()["paths"]  # the schema URL needs a login; flux's routes not
    for p in ("/flux/metric_data", "/flux/metric_data_post", "/flux/prometheus/write",
              "/write", "/api/v2/write", "/v1/metrics"):
        assert p in paths


# arbitrary bodies through every route: a status the client can act on, never a 500 ------------
def test_arbitrary_bodies_never_give_500_and_valid_lines_are_stored(env):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    ctx, c = env
    routes = [
        ("/flux/metric_data_post", {}),
        ("/flux/prometheus/write", {}),
        ("/write", {"precision": "s"}),
        ("/api/v2/write", {"precision": "s"}),
        ("/v1/metrics", {}),
    ]
    encodings = st.sampled_from([None, "gzip", "snappy", "br"])
    types = st.sampled_from(["application/json", "application/x-protobuf", "text/plain"])
    seen: set[str] = set()

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(route=st.sampled_from(routes), data=st.binary(max_size=400), enc=encodings,
           ctype=types, good=st.lists(st.from_regex(r"[a-z]{1,6}", fullmatch=True),
                                      max_size=3))
    def post(route, data, enc, ctype, good):
        path, params = route
        body = data
        if path in ("/write", "/api/v2/write"):
            body = data + b"\n" + "".join(f"{m} v=1 {NOW}\n" for m in good).encode()
        if enc == "gzip":
            body = gzip.compress(body)
        elif enc == "snappy":
            body = bytes(cramjam.snappy.compress_raw(body))
        headers = {"key": ROOT_KEY, "Content-Type": ctype}
        if enc:
            headers["Content-Encoding"] = enc
        r = c.post(path, params=params, content=body, headers=headers)
        assert r.status_code in (200, 204, 207, 400, 413, 415), (path, r.status_code, r.text)
        if path in ("/write", "/api/v2/write") and enc != "br":
            seen.update(f"{m}_v" for m in good)

    post()
    ctx.points.flush()
    assert seen, "no example posted valid lines"
    names = set(ctx.store.names())
    assert seen <= names


@pytest.mark.parametrize("processes", [1, 0], ids=["process", "thread"])
def test_large_bodies_are_parsed_away_from_the_web_app(make, processes):
    """256 KiB and more: parsed in flux's own process (flux.parse_processes), or its threads
    with 0; the points, the refusals and the whole-body errors are the same either way."""
    ctx, client = make(flux={"parse_processes": processes}, FLUX_MAX_METRICS_PER_POST=10_000)
    now = int(time.time())
    metrics = [{"metric": f"big.m{i:05d}", "timestamp": now - 60, "value": i}
               for i in range(6000)]
    metrics.append({"metric": "big.bad", "timestamp": now, "value": "many"})
    body = json.dumps({"metrics": metrics}).encode()
    assert len(body) > 256 * 1024
    r = client.post("/flux/metric_data_post", content=body, headers={"key": KEY})
    assert r.status_code == 207, r.text
    assert r.json()["accepted"] == 6000 and r.json()["rejected"] == 1
    assert stored(ctx, "team.big.m05999") == [(now - 60.0, 5999.0)]
    # a broken body of that size: the error raised in the parsing process reaches the client
    r = client.post("/flux/metric_data_post", content=body[:-100],
                    headers={"key": KEY})
    assert r.status_code == 400 and "not valid JSON" in r.json()["error"]
    r = client.post("/flux/metric_data_post", headers={"key": KEY},
                    content=json.dumps({"metrics": metrics * 2}).encode())
    assert r.status_code == 413 and "12002 metrics in one request" in r.json()["error"]
    lines = "\n".join(f"big.influx{i} value={i} {now}000000000" for i in range(12000))
    assert len(lines) > 256 * 1024
    r = client.post("/write", params={"p": KEY}, content=lines.encode())
    assert r.status_code == 204, r.text
    assert stored(ctx, "team.big.influx11999_value") == [(float(now), 11999.0)]
    counters, _ = ctx.telemetry("flux").snapshot()
    assert counters.get("parsed_in_process", 0) == (4 if processes else 0)
