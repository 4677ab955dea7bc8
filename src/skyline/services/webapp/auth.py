"""Who is asking: every request to the web app is authenticated by a session cookie or an
`Authorization: Bearer` API token, except the routes that must stay open (flux checks its
own keys; /metrics and /api/v1/health are for monitoring; the login page and static files).

A state-changing request (POST, PUT, PATCH, DELETE) that rides on a session cookie must also
carry the session's CSRF token, as form field `csrf_token` or header `X-CSRF-Token`: a
browser attaches the cookie to requests other sites make it send, never the token. Requests
with a Bearer token carry no ambient credential and need none.

Templates find `request.state.user` (a WebUser, or None on open routes) and
`request.state.csrf_token` (empty without a session).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import sqlalchemy as sa
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from skyline.core.errors import StoreUnavailable
from skyline.runtime.context import Context
from skyline.services.webapp.limits import LoginLimiter
from skyline.store.sql import users as q
from skyline.telemetry import Telemetry

log = logging.getLogger(__name__)

SESSION_COOKIE = "skyline_session"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
LOGIN_PATH = "/login"
# Flux's routes: upstream's and Influx's/OTLP's paths, where their clients post
FLUX_PATHS = frozenset({"/write", "/api/v2/write", "/ping", "/query", "/v1/metrics"})
OPEN_PATHS = frozenset({LOGIN_PATH, "/metrics", "/api/v1/health", "/favicon.ico"})
OPEN_PREFIXES = ("/flux/", "/static/")
# A form body read to find its CSRF token is held in memory; bigger uploads must send the
# token as a header
MAX_FORM_BYTES = 64 * 1024 * 1024
USERS_WAIT = 15.0  # seconds a request waits for the start-up creation of users

ErrorFn = Callable[[Request, int, str], Response]


@dataclass(frozen=True)
class WebUser:
    username: str
    is_admin: bool
    via: str  # session | token | open (WEBAPP_AUTH_ENABLED is false)

    @property
    def name(self) -> str:
        return self.username

    def __str__(self) -> str:
        return self.username


ADMIN_ONLY = "this needs an admin user (viewers read; `skyline user add NAME --admin`)"


def current_user(request: Request) -> WebUser | None:
    user = request.scope.get("state", {}).get("user")
    return user if isinstance(user, WebUser) else None


def require_admin(request: Request) -> WebUser:
    """The logged-in user when an admin; 403 for a viewer. Settings, silences, users and
    tokens are an admin's; everyone logged in reads the rest."""
    user = current_user(request)
    if user is None or not user.is_admin:
        raise HTTPException(403, ADMIN_ONLY)
    return user


def is_flux(path: str) -> bool:
    """Flux's ingest routes, which check flux keys and limit their own bodies."""
    return path in FLUX_PATHS or path.startswith("/flux/")


def is_open(path: str) -> bool:
    """Routes that answer without a login."""
    return path in OPEN_PATHS or path in FLUX_PATHS or path.startswith(OPEN_PREFIXES)


def safe_next(target: str | None) -> str:
    """`target` when it is a path on this site, else "/": a login link must never send
    someone elsewhere (`//evil.example`, `https://...`, `/\\evil`, control characters)."""
    if not target or len(target) > 2000 or not target.startswith("/"):
        return "/"
    if target.startswith("//") or "\\" in target or any(ord(c) < 32 or ord(c) == 127
                                                        for c in target):
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return "/"
    if parts.path in (LOGIN_PATH, "/logout"):
        return "/"
    return target


def _header(scope: Scope, name: bytes) -> str | None:
    for k, v in scope.get("headers", ()):
        if k == name:
            return str(v.decode("latin-1"))
    return None


def is_https(scope: Scope, trust_proxy: bool) -> bool:
    if scope.get("scheme") == "https":
        return True
    if trust_proxy:
        proto = _header(scope, b"x-forwarded-proto")
        # a chain of proxies lists one protocol each; the first is what the client used
        return proto is not None and proto.split(",")[0].strip().lower() == "https"
    return False


def client_address(scope: Scope, trust_proxy: bool) -> str:
    if trust_proxy:
        forwarded = _header(scope, b"x-forwarded-for")
        if forwarded:
            # the last entry is the one our proxy added; earlier ones the client may forge
            return forwarded.split(",")[-1].strip()[:64] or "unknown"
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def bearer_token(scope: Scope) -> str | None:
    value = _header(scope, b"authorization")
    if value is None:
        return None
    scheme, _, token = value.strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


# Prometheus clients (Grafana's data source, promtool, vmalert) are often set up with HTTP
# basic auth only: under these prefixes an API token is also taken as the basic password
BASIC_TOKEN_PREFIXES = ("/prometheus/",)


def api_token(scope: Scope) -> str | None:
    """The API token a request carries: `Authorization: Bearer <token>`, or, under
    BASIC_TOKEN_PREFIXES, basic auth with the token as the password (any user name)."""
    token = bearer_token(scope)
    if token is not None or not str(scope.get("path", "")).startswith(BASIC_TOKEN_PREFIXES):
        return token
    value = _header(scope, b"authorization")
    if value is None:
        return None
    scheme, _, encoded = value.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return ""  # present but unreadable: refused as an invalid token
    return decoded.partition(":")[2]


class Auth:
    """What the middleware and the login routes share."""

    def __init__(self, ctx: Context, error: ErrorFn, wants_json: Callable[[Request], bool]):
        s = ctx.settings
        self.ctx = ctx
        self.enabled = s.WEBAPP_AUTH_ENABLED
        self.web = s.webapp
        self.error = error
        self.wants_json = wants_json
        self.limiter = LoginLimiter(s.webapp.login_max_failures, s.webapp.login_lockout)
        self.tel: Telemetry = ctx.telemetry("webapp")
        # password checks (argon2: ~50 ms of CPU and 64 MiB each) in their own few threads,
        # never the loop's shared pool that the ingest flush uses; beyond `_checks_max`
        # waiting, a login answers 503 at once
        self._hasher = ThreadPoolExecutor(s.webapp.login_concurrency,
                                          thread_name_prefix="webapp-login")
        self._checks = 0
        self._checks_max = 10 * s.webapp.login_concurrency
        # set by the service while it creates the settings' users at start, so that a
        # request arriving meanwhile waits for them rather than being refused
        self.users_ready: asyncio.Event | None = None

    async def wait_for_users(self) -> None:
        if self.users_ready is not None and not self.users_ready.is_set():
            try:
                await asyncio.wait_for(self.users_ready.wait(), USERS_WAIT)
            except TimeoutError:
                raise StoreUnavailable("SQL database", "(users not set up yet)",
                                       "starting") from None

    async def check_password(self, username: str, password: str) -> q.User | None:
        if self._checks >= self._checks_max:
            self.tel.incr("logins_busy")
            raise HTTPException(503, "too many logins at once; try again shortly")
        self._checks += 1
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._hasher, q.authenticate, self.engine,
                                              username, password)
        finally:
            self._checks -= 1

    @property
    def engine(self) -> Any:
        if self.ctx.engine is None:
            raise StoreUnavailable("SQL database", "(not connected yet)", "starting")
        return self.ctx.engine

    def secure(self, scope: Scope) -> bool:
        return self.web.secure_cookies or is_https(scope, self.web.trust_proxy_headers)

    def address(self, scope: Scope) -> str:
        return client_address(scope, self.web.trust_proxy_headers)

    async def session(self, scope: Scope) -> q.Session | None:
        sid = Request(scope).cookies.get(SESSION_COOKIE)
        if not sid:
            return None
        return await asyncio.to_thread(q.session_user, self.engine, sid,
                                       self.web.session_idle_timeout)

    def set_session_cookie(self, response: Response, scope: Scope, sid: str) -> None:
        response.set_cookie(SESSION_COOKIE, sid, max_age=int(self.web.session_max_age),
                            path="/", httponly=True, samesite="lax", secure=self.secure(scope))

    def clear_session_cookie(self, response: Response, scope: Scope) -> None:
        response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax",
                               secure=self.secure(scope))


async def _read_body(receive: Receive, limit: int) -> tuple[list[Message], bool]:
    """The request's body messages, and False when it exceeds `limit` bytes."""
    messages: list[Message] = []
    size = 0
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            return messages, True
        size += len(message.get("body", b""))
        if size > limit:
            return messages, False
        if not message.get("more_body", False):
            return messages, True


def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay


async def _form_token(scope: Scope, receive: Receive) -> tuple[str | None, Receive, bool]:
    """The csrf_token form field of an urlencoded or multipart body, and a receive that
    gives the app the same body again; the bool is False when the body was too large."""
    ctype = (_header(scope, b"content-type") or "").lower()
    if not ctype.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        return None, receive, True
    messages, ok = await _read_body(receive, MAX_FORM_BYTES)
    if not ok:
        return None, _replay(messages, receive), False
    form = await Request(scope, _replay(messages, receive)).form()
    try:
        value = form.get(CSRF_FIELD)
        token = value if isinstance(value, str) else None
    finally:
        for v in form.values():
            if isinstance(v, UploadFile):
                await v.close()
    return token, _replay(messages, receive), True


class AuthMiddleware:
    """Plain ASGI, so that a form body read for its CSRF token can be handed on intact."""

    def __init__(self, app: ASGIApp, auth: Auth):
        self.app = app
        self.auth = auth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        auth = self.auth
        state = scope.setdefault("state", {})
        state["user"], state["csrf_token"] = None, ""
        if not auth.enabled:
            state["user"] = WebUser("anonymous", True, "open")
            await self.app(scope, receive, send)
            return
        if is_open(scope["path"]):
            await self.app(scope, receive, send)
            return
        try:
            response, receive = await self._check(scope, receive, state)
        except (StoreUnavailable, sa.exc.SQLAlchemyError) as e:
            if isinstance(e, sa.exc.SQLAlchemyError):
                log.error("cannot check a login: %s", str(e).splitlines()[0])
            auth.tel.incr("auth_store_errors")
            response = auth.error(Request(scope), 503,
                                  "cannot check your login: the SQL database is unreachable")
        if response is not None:
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def _check(self, scope: Scope, receive: Receive,
                     state: dict[str, Any]) -> tuple[Response | None, Receive]:
        """None when the request may go on (state filled in), else the refusal."""
        auth = self.auth
        request = Request(scope)
        if auth.ctx.engine is not None:
            await auth.wait_for_users()
        token = api_token(scope)
        if token is not None:
            user = await asyncio.to_thread(q.verify_token, auth.engine, token)
            if user is None:
                auth.tel.incr("tokens_refused")
                return self._unauthorized(request, "invalid or expired API token"), receive
            auth.tel.incr("token_requests")
            state["user"] = WebUser(user.username, user.is_admin, "token")
            return None, receive
        session = await auth.session(scope)
        if session is None:
            auth.tel.incr("unauthenticated")
            if auth.wants_json(request):
                response = self._unauthorized(
                    request, "log in first: a session cookie or an Authorization: Bearer "
                    "API token (`skyline user token NAME`)")
            else:
                target = scope["path"] + (f"?{scope['query_string'].decode('latin-1')}"
                                          if scope.get("query_string") else "")
                if scope["method"] not in SAFE_METHODS:
                    target = "/"  # a form posted after the session ended: start afresh
                response = RedirectResponse(f"{LOGIN_PATH}?next={quote(safe_next(target))}",
                                            status_code=303)
            if request.cookies.get(SESSION_COOKIE):
                auth.clear_session_cookie(response, scope)  # ended or unknown: drop it
            return response, receive
        state["user"] = WebUser(session.user.username, session.user.is_admin, "session")
        state["csrf_token"] = session.csrf_token
        if scope["method"] in SAFE_METHODS:
            return None, receive
        given = _header(scope, CSRF_HEADER.encode())
        if given is None:
            given, receive, ok = await _form_token(scope, receive)
            if not ok:
                auth.tel.incr("csrf_refused")
                return auth.error(request, 413, "form too large to check its CSRF token; "
                                  "send it as header X-CSRF-Token"), receive
        if given is None or not hmac.compare_digest(given.encode(),
                                                    session.csrf_token.encode()):
            auth.tel.incr("csrf_refused")
            return auth.error(request, 403, "missing or wrong CSRF token: reload the page "
                              "and try again"), receive
        return None, receive

    def _unauthorized(self, request: Request, message: str) -> Response:
        response = self.auth.error(request, 401, message)
        response.headers["WWW-Authenticate"] = 'Bearer realm="skyline"'
        return response
