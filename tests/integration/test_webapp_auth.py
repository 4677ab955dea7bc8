"""Login, sessions, CSRF and API tokens through the real web app in process (TestClient
with its cookie jar), against a real embedded Redis and SQL."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from fastapi import APIRouter, Request
from fastapi.testclient import TestClient

from skyline.runtime.context import Context
from skyline.services import flux
from skyline.services.webapp import create_app
from skyline.services.webapp.auth import SESSION_COOKIE, is_open
from skyline.settings import load_settings
from skyline.store.redis_client import redis_session
from skyline.store.sql import db
from skyline.store.sql import users as q
from skyline.store.sql.models import sessions
from tests.webauth import PASSWORD, USERNAME, bearer, ensure_user, login

HTML = {"accept": "text/html"}
_FORM_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


def _probe() -> APIRouter:
    """Routes that show what the auth layer told them, and take posts."""
    r = APIRouter()

    @r.get("/api/v1/whoami")
    def whoami(request: Request) -> dict:
        u = request.state.user
        return {"user": u.username, "admin": u.is_admin, "via": u.via,
                "csrf": request.state.csrf_token}

    @r.post("/api/v1/echo")
    async def echo(request: Request) -> dict:
        ctype = request.headers.get("content-type", "")
        if ctype.startswith(("multipart/", "application/x-www-form")):
            form = await request.form()
            out = {}
            for k, v in form.items():
                out[k] = v if isinstance(v, str) else (await v.read()).decode()
            return {"form": out}
        return {"body": (await request.body()).decode()}

    @r.get("/pages/thing")
    def page() -> dict:
        return {"page": True}

    return r


def _context(tmp_path, sql_url: str, **settings) -> Iterator[Context]:
    s = load_settings(DATA_DIR=tmp_path / "var", DATABASE_URL=sql_url, **settings)
    with redis_session(s) as handle:
        c = Context(s, handle)
        engine = c.engine = db.make_engine(s.database_url)
        db.upgrade(engine)
        try:
            yield c
        finally:
            engine.dispose()


@pytest.fixture
def ctx(tmp_path, sql_url) -> Iterator[Context]:
    yield from _context(tmp_path, sql_url, webapp={"login_max_failures": 3})


@pytest.fixture
def client(ctx) -> TestClient:
    return TestClient(create_app(ctx, [_probe()]), raise_server_exceptions=False)


def _form_token(page_html: str) -> str:
    m = _FORM_TOKEN.search(page_html)
    assert m is not None
    return m.group(1)


def _login_post(client: TestClient, username: str, password: str, next_: str = "/",
                **headers: str):
    token = _form_token(client.get("/login").text)
    return client.post("/login", data={"username": username, "password": password,
                                       "next": next_, "csrf_token": token},
                       headers=headers, follow_redirects=False)


def test_unauthenticated_api_gets_401_json_and_browsers_the_login_page(client):
    r = client.get("/api/v1/whoami")
    assert r.status_code == 401 and "error" in r.json()
    assert r.headers["www-authenticate"].startswith("Bearer")
    page = client.get("/pages/thing?x=1&y=a%20b", headers=HTML, follow_redirects=False)
    assert page.status_code == 303
    assert page.headers["location"] == "/login?next=/pages/thing%3Fx%3D1%26y%3Da%2520b"
    form = client.get(page.headers["location"])
    assert form.status_code == 200 and 'value="/pages/thing?x=1&amp;y=a%20b"' in form.text
    assert "traceback" not in form.text.lower()


def test_open_routes_need_no_login(client, ctx):
    assert client.get("/api/v1/health").status_code == 200
    assert client.get("/metrics").status_code == 200
    assert client.get("/login").status_code == 200
    # every flux route is open: flux checks its own keys
    paths = {getattr(route, "path", "") for router in flux.routers(ctx)
             for route in router.routes}
    assert paths and all(is_open(p) for p in paths), sorted(p for p in paths if not is_open(p))


def test_login_flow_with_a_real_cookie_jar(client, ctx):
    ensure_user(ctx.engine)
    r = _login_post(client, USERNAME, PASSWORD, "/api/v1/whoami")
    assert r.status_code == 303 and r.headers["location"] == "/api/v1/whoami"
    cookie = next(c for c in r.headers.get_list("set-cookie")
                  if c.startswith(SESSION_COOKIE + "="))
    attrs = {a.strip().lower() for a in cookie.split(";")}
    assert "httponly" in attrs and "samesite=lax" in attrs and "path=/" in attrs
    assert "secure" not in attrs  # plain http, no trusted proxy
    sid = client.cookies[SESSION_COOKIE]
    with ctx.engine.connect() as c:  # the database keeps only a hash of the id
        assert c.execute(sa.select(sessions.c.id_hash)).scalar() == q.sha256(sid)
    me = client.get("/api/v1/whoami").json()
    assert me["user"] == USERNAME and me["via"] == "session" and me["admin"] is True
    assert me["csrf"] == q.csrf_token_for(sid)
    # already logged in: the login page sends you on
    again = client.get("/login?next=/pages/thing", follow_redirects=False)
    assert again.status_code == 303 and again.headers["location"] == "/pages/thing"
    counters, _ = ctx.telemetry("webapp").snapshot()
    assert counters["logins"] == 1


def test_wrong_password_and_unknown_user(client, ctx):
    ensure_user(ctx.engine)
    for name, pw in ((USERNAME, "wrong-password"), ("nobody", PASSWORD)):
        r = _login_post(client, name, pw)
        assert r.status_code == 401 and "Wrong user name or password" in r.text
        assert SESSION_COOKIE not in client.cookies
    assert client.get("/api/v1/whoami").status_code == 401
    counters, _ = ctx.telemetry("webapp").snapshot()
    assert counters["login_failures"] == 2


def test_failed_logins_lock_the_pair_out(client, ctx):
    ensure_user(ctx.engine)
    for _ in range(3):
        assert _login_post(client, USERNAME, "wrong-password").status_code == 401
    locked = _login_post(client, USERNAME, PASSWORD)  # the right one, too late
    assert locked.status_code == 429 and "Too many failed logins" in locked.text
    assert int(locked.headers["retry-after"]) >= 1
    assert SESSION_COOKIE not in client.cookies
    # another address is not locked (behind no trusted proxy, X-Forwarded-For is ignored)
    fake = _login_post(client, USERNAME, PASSWORD, **{"X-Forwarded-For": "198.51.100.1"})
    assert fake.status_code == 429
    counters, _ = ctx.telemetry("webapp").snapshot()
    assert counters["login_failures"] == 3 and counters["logins_locked"] == 2


def test_login_form_needs_its_own_csrf_pair(client, ctx):
    ensure_user(ctx.engine)
    token = _form_token(client.get("/login").text)
    client.cookies.clear()  # another site posting the form has not our cookie
    r = client.post("/login", data={"username": USERNAME, "password": PASSWORD,
                                    "csrf_token": token}, follow_redirects=False)
    assert r.status_code == 403 and SESSION_COOKIE not in client.cookies
    r = client.post("/login", data={"username": USERNAME, "password": PASSWORD,
                                    "csrf_token": "forged"}, follow_redirects=False)
    assert r.status_code == 403


@pytest.mark.parametrize("target", ["//evil.example/", "https://evil.example/x",
                                    "/\\evil.example", "javascript:alert(1)"])
def test_next_never_leaves_the_site(client, ctx, target):
    ensure_user(ctx.engine)
    form = client.get("/login", params={"next": target}).text
    assert "evil" not in form and "javascript" not in form
    r = _login_post(client, USERNAME, PASSWORD, target)
    assert r.status_code == 303 and r.headers["location"] == "/"


def test_csrf_on_state_changing_requests(client, ctx):
    csrf = login(client, ctx.engine)
    missing = client.post("/api/v1/echo", json={"a": 1})
    assert missing.status_code == 403 and "CSRF" in missing.json()["error"]
    wrong = client.post("/api/v1/echo", json={"a": 1}, headers={"X-CSRF-Token": "0" * 64})
    assert wrong.status_code == 403
    ok = client.post("/api/v1/echo", json={"a": 1}, headers={"X-CSRF-Token": csrf})
    assert ok.status_code == 200 and ok.json() == {"body": '{"a":1}'}
    # as a form field; the route still gets the whole body
    form = client.post("/api/v1/echo", data={"csrf_token": csrf, "note": "hi"})
    assert form.json() == {"form": {"csrf_token": csrf, "note": "hi"}}
    upload = client.post("/api/v1/echo", data={"csrf_token": csrf},
                         files={"file": ("x.csv", b"1,2\n3,4\n", "text/csv")})
    assert upload.status_code == 200
    assert upload.json()["form"]["file"] == "1,2\n3,4\n"
    no_token_upload = client.post("/api/v1/echo",
                                  files={"file": ("x.csv", b"1,2\n", "text/csv")})
    assert no_token_upload.status_code == 403
    for method in ("put", "patch", "delete"):
        assert client.request(method, "/api/v1/echo").status_code == 403
    counters, _ = ctx.telemetry("webapp").snapshot()
    assert counters["csrf_refused"] == 6


def test_bearer_tokens_need_no_csrf_and_expire(client, ctx):
    headers = bearer(ctx.engine, "robot", admin=False)
    r = client.post("/api/v1/echo", json={"b": 2}, headers=headers)
    assert r.status_code == 200 and r.json() == {"body": '{"b":2}'}
    me = client.get("/api/v1/whoami", headers=headers).json()
    assert me == {"user": "robot", "admin": False, "via": "token", "csrf": ""}
    _, expired = q.create_token(ctx.engine, "robot", "old", expires=2000.0, now=1000.0)
    r = client.get("/api/v1/whoami", headers={"Authorization": f"Bearer {expired}"})
    assert r.status_code == 401 and "expired" in r.json()["error"]
    assert r.headers["www-authenticate"].startswith("Bearer")
    bad = client.get("/api/v1/whoami", headers={"Authorization": "Bearer " + "x" * 43})
    assert bad.status_code == 401
    counters, _ = ctx.telemetry("webapp").snapshot()
    assert counters["tokens_refused"] == 2


def test_logout_revokes_the_session(client, ctx):
    csrf = login(client, ctx.engine)
    sid = client.cookies[SESSION_COOKIE]
    assert client.post("/logout", follow_redirects=False).status_code == 403  # no token
    out = client.post("/logout", data={"csrf_token": csrf}, follow_redirects=False)
    assert out.status_code == 303 and out.headers["location"].startswith("/login")
    assert SESSION_COOKIE not in client.cookies
    with ctx.engine.connect() as c:
        assert c.execute(sa.select(sa.func.count()).select_from(sessions)).scalar() == 0
    # a copy of the old cookie is worth nothing now
    client.cookies.set(SESSION_COOKIE, sid)
    r = client.get("/api/v1/whoami")
    assert r.status_code == 401
    assert any(c.startswith(f"{SESSION_COOKIE}=") and "max-age=0" in c.lower()
               for c in r.headers.get_list("set-cookie"))


def test_secure_cookies_behind_a_trusted_proxy(tmp_path, sql_url):
    for trust, expect_secure in ((True, True), (False, False)):
        gen = _context(tmp_path / str(trust), sql_url,
                       webapp={"trust_proxy_headers": trust})
        c = next(gen)
        try:
            ensure_user(c.engine)
            client = TestClient(create_app(c))
            r = _login_post(client, USERNAME, PASSWORD, **{"X-Forwarded-Proto": "https"})
            cookie = next(x for x in r.headers.get_list("set-cookie")
                          if x.startswith(SESSION_COOKIE))
            assert ("secure" in cookie.lower()) is expect_secure
        finally:
            gen.close()


def test_auth_can_be_switched_off(tmp_path, sql_url):
    gen = _context(tmp_path, sql_url, WEBAPP_AUTH_ENABLED=False)
    c = next(gen)
    try:
        client = TestClient(create_app(c, [_probe()]))
        assert client.get("/api/v1/whoami").json()["via"] == "open"
        assert client.post("/api/v1/echo", json={}).status_code == 200
    finally:
        gen.close()


def test_sql_down_is_a_503_not_a_traceback(client, ctx):
    headers = bearer(ctx.engine)
    ctx.engine = None  # not connected (yet)
    r = client.get("/api/v1/whoami", headers=headers)
    assert r.status_code == 503 and "SQL" in r.json()["error"]
    page = client.get("/pages/thing", headers={**HTML, **headers})
    assert page.status_code == 503 and page.headers["content-type"].startswith("text/html")


def test_expired_session_sends_the_browser_to_login(client, ctx):
    login(client, ctx.engine)
    with ctx.engine.begin() as c:
        c.execute(sa.update(sessions).values(expires=time.time() - 1))
    r = client.get("/pages/thing", headers=HTML, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/login?next=")
