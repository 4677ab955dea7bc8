"""The web app shell in process, against a real embedded Redis and SQLite."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from fastapi import APIRouter
from fastapi.testclient import TestClient

from skyline.core.errors import NotFound
from skyline.runtime.context import Context
from skyline.services.webapp import create_app
from skyline.settings import load_settings
from skyline.store.redis_client import redis_session
from skyline.store.sql import db
from tests.webauth import bearer


@pytest.fixture
def ctx(tmp_path):
    settings = load_settings(DATA_DIR=tmp_path / "var")
    with redis_session(settings) as handle:
        c = Context(settings, handle)
        engine = c.engine = db.make_engine(settings.database_url)
        db.upgrade(engine)
        yield c
        engine.dispose()


def _extra_router() -> APIRouter:
    router = APIRouter()

    @router.get("/api/v1/things/{name}")
    def thing(name: str, n: int = 1) -> dict:
        if name == "missing":
            raise NotFound(f"no thing named {name!r}")
        if name == "boom":
            raise RuntimeError("secret internal detail")
        return {"name": name, "n": n}

    return router


def test_health_ok_and_components(ctx):
    ctx.store.append(["a", "b"], np.array([1.8e9, 1.8e9]), np.array([1.0, 2.0]))
    tel = ctx.telemetry("roomba")
    tel.incr("passes")
    tel.flush(ctx.client, 60)
    client = TestClient(create_app(ctx))
    r = client.get("/api/v1/health")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok"
    assert body["redis"]["metrics"] == 2 and body["database"]["ok"]
    assert "roomba" in body["components"]  # by component: instances are not shown openly


def test_health_degraded_without_sql(ctx):
    ctx.engine = None
    r = TestClient(create_app(ctx)).get("/api/v1/health")
    assert r.status_code == 503 and r.json()["database"]["ok"] is False


def test_metrics_endpoint_serves_prometheus_text(ctx):
    tel = ctx.telemetry("horizon")
    tel.incr("points_accepted", 41)
    tel.incr("points_accepted")
    tel.gauge("queue_depth", 3)
    tel.flush(ctx.client, 60)
    r = TestClient(create_app(ctx)).get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    lines = r.text.splitlines()
    assert "# TYPE skyline_horizon_points_accepted_total counter" in lines
    inst = ctx.settings.instance
    assert f'skyline_horizon_points_accepted_total{{instance="{inst}"}} 42.0' in lines
    assert f'skyline_horizon_queue_depth{{instance="{inst}"}} 3.0' in lines


def test_status_page_is_html(ctx):
    r = TestClient(create_app(ctx), headers=bearer(ctx.engine)).get(
        "/", headers={"accept": "text/html"})
    assert r.status_code == 200 and "<h1>Overview" in r.text and "Skyline" in r.text


def test_other_components_add_routers_and_errors_have_one_shape(ctx):
    client = TestClient(create_app(ctx, [_extra_router()]), raise_server_exceptions=False,
                        headers=bearer(ctx.engine))
    assert client.get("/api/v1/things/x?n=3").json() == {"name": "x", "n": 3}
    missing = client.get("/api/v1/things/missing")
    assert missing.status_code == 404 and missing.json() == {"error": "no thing named 'missing'"}
    bad = client.get("/api/v1/things/x?n=lots")
    assert bad.status_code == 400 and "n" in bad.json()["error"]
    boom = client.get("/api/v1/things/boom")
    assert boom.status_code == 500
    assert "secret internal detail" not in boom.text and "Traceback" not in boom.text
    page = client.get("/nowhere", headers={"accept": "text/html"})
    assert page.status_code == 404 and page.headers["content-type"].startswith("text/html")
    api = client.get("/api/v1/nowhere")
    assert api.status_code == 404 and "error" in api.json()
    counters, _ = ctx.telemetry("webapp").snapshot()
    assert counters["requests"] == 6
    assert counters["responses_4xx"] == 4 and counters["responses_5xx"] == 1


def test_openapi_schema_lists_routes(ctx):
    client = TestClient(create_app(ctx, [_extra_router()]), headers=bearer(ctx.engine))
    schema = client.get("/api/v1/openapi.json").json()
    assert "/api/v1/health" in schema["paths"] and "/api/v1/things/{name}" in schema["paths"]


def test_redis_down_gives_503_not_500(tmp_path):
    from tests.conftest import free_port
    from tests.redisproc import RedisProcess

    server = RedisProcess(tmp_path / "r", free_port())
    server.start()
    settings = load_settings(DATA_DIR=tmp_path / "var", REDIS_URL=server.url)
    with redis_session(settings) as handle:
        c = Context(settings, handle)
        client = TestClient(create_app(c), raise_server_exceptions=False)
        assert client.get("/metrics").status_code == 200
        server.stop()
        r = client.get("/metrics")
        assert r.status_code == 503 and "unreachable" in r.json()["error"]
        h = client.get("/api/v1/health")
        assert h.status_code == 503 and h.json()["redis"]["ok"] is False


def test_context_is_usable_outside_a_loop(ctx):
    # components build their context before the loop runs; the events must not bind early
    async def use() -> bool:
        ctx.stopping.set()
        await ctx.stopping.wait()
        return True

    assert asyncio.run(use())
