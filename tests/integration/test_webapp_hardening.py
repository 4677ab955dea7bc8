"""The web app's limits and roles through the real app in process (TestClient), against a
real embedded Redis and SQL: body limits counted as the body streams, admin-only actions,
security headers, and what the open health endpoint tells."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from skyline.runtime.context import Context
from skyline.services.webapp import create_app
from tests.integration.test_webapp_auth import _context, _probe
from tests.webauth import bearer


@pytest.fixture
def ctx(tmp_path, sql_url) -> Iterator[Context]:
    yield from _context(tmp_path, sql_url, webapp={"max_body_bytes": 65536})


@pytest.fixture
def client(ctx) -> TestClient:
    return TestClient(create_app(ctx, [_probe()]), raise_server_exceptions=False)


def _chunks(total: int, size: int = 8192) -> Iterator[bytes]:
    sent = 0
    while sent < total:
        n = min(size, total - sent)
        sent += n
        yield b"x" * n


def test_declared_body_over_the_limit_is_refused_before_reading(client, ctx) -> None:
    admin = bearer(ctx.engine)
    r = client.post("/api/v1/echo", content=b"x" * 70000, headers=admin)
    assert r.status_code == 413 and "65536" in r.json()["error"]


def test_chunked_body_is_cut_at_the_limit(client, ctx) -> None:
    admin = bearer(ctx.engine)
    r = client.post("/api/v1/echo", content=_chunks(200_000), headers=admin)
    assert r.status_code == 413
    ok = client.post("/api/v1/echo", content=_chunks(60_000), headers=admin)
    assert ok.status_code == 200 and len(ok.json()["body"]) == 60_000


def test_unauthenticated_login_post_is_limited_too(client) -> None:
    r = client.post("/login", content=_chunks(300_000),
                    headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 413


def test_viewers_read_and_admins_change(client, ctx) -> None:
    viewer = bearer(ctx.engine, "viewer", admin=False)
    admin = bearer(ctx.engine, "boss", admin=True)
    body = {"pattern": "re:.*", "until": "1h", "reason": "x", "who": "someone-else"}
    r = client.post("/api/v1/silences", json=body, headers=viewer)
    assert r.status_code == 403 and "admin" in r.json()["error"]
    assert client.get("/api/v1/silences", headers=viewer).status_code == 200
    assert client.get("/settings", headers=viewer).status_code == 403
    r = client.post("/api/v1/silences", json=body, headers=admin)
    assert r.status_code == 201
    assert r.json()["who"] == "boss"  # the authenticated user, not what the client said
    sid = r.json()["id"]
    assert client.delete(f"/api/v1/silences/{sid}", headers=viewer).status_code == 403
    assert client.delete(f"/api/v1/silences/{sid}", headers=admin).status_code == 204
    assert client.get("/settings", headers=admin).status_code == 200


@pytest.mark.parametrize("until", ["nan", "inf", "-inf", "1e400"])
def test_silence_until_must_be_finite(client, ctx, until: str) -> None:
    r = client.post("/api/v1/silences", json={"pattern": "a.*", "until": until},
                    headers=bearer(ctx.engine))
    assert r.status_code == 400


def test_pages_cannot_be_framed_and_load_only_their_own_scripts(client, ctx) -> None:
    r = client.get("/", headers=bearer(ctx.engine))
    assert r.headers["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]
    assert "script-src 'self'" in r.headers["Content-Security-Policy"]
    assert r.headers["X-Content-Type-Options"] == "nosniff"


def test_open_health_tells_no_addresses(client, ctx) -> None:
    r = client.get("/api/v1/health")
    text = r.text
    assert r.json()["redis"]["ok"] is True
    for secret in ("unix://", "sqlite:", "redis.sock", '"pid"', '"instance"', '"url"'):
        assert secret not in text, secret
