"""GET/POST /login and POST /logout.

The login form has no session to bind a CSRF token to, so it uses a signed double submit:
a random value in a short-lived cookie and its HMAC (under a key only this process knows)
in the form. Another site can make a browser post the form but can neither read nor, without
the key, forge the pair; a form rendered before a restart fails once and is shown again.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import html
import logging
import secrets
import time
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from skyline import __version__
from skyline.services.webapp.auth import (
    CSRF_FIELD,
    LOGIN_PATH,
    SESSION_COOKIE,
    Auth,
    safe_next,
)
from skyline.store.sql import users as q

log = logging.getLogger(__name__)

LOGIN_CSRF_COOKIE = "skyline_login_csrf"
LOGIN_CSRF_MAX_AGE = 3600
MAX_FIELD = 4096  # longer user names or passwords are refused before any work


class LoginCsrf:
    def __init__(self) -> None:
        self._key = secrets.token_bytes(32)

    def _sign(self, nonce: str) -> str:
        return hmac.new(self._key, nonce.encode(), hashlib.sha256).hexdigest()

    def new(self) -> tuple[str, str]:
        """(cookie value, form value)."""
        nonce = secrets.token_urlsafe(24)
        return nonce, self._sign(nonce)

    def valid(self, cookie: str | None, form: str | None) -> bool:
        if not cookie or not form:
            return False
        return hmac.compare_digest(self._sign(cookie).encode(), form.encode())


def _page(form_token: str, next_: str, message: str = "", username: str = "") -> str:
    h = html.escape
    note = f'<p class="msg" role="alert">{h(message)}</p>' if message else ""
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>Skyline: log in</title>
<style>body{{font-family:system-ui,sans-serif;display:flex;justify-content:center;
margin-top:12vh;color:#222}} form{{width:18rem}} label{{display:block;margin:.8rem 0 .2rem}}
input{{width:100%;padding:.4rem;box-sizing:border-box}} button{{margin-top:1.2rem;
padding:.5rem 1.2rem}} .msg{{color:#b00}} small{{color:#777}}</style></head><body>
<form method="post" action="{LOGIN_PATH}"><h1>Skyline</h1>{note}
<input type="hidden" name="{CSRF_FIELD}" value="{h(form_token)}">
<input type="hidden" name="next" value="{h(next_)}">
<label for="username">User name</label>
<input id="username" name="username" autocomplete="username" required autofocus
 value="{h(username)}">
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required>
<button type="submit">Log in</button>
<p><small>Skyline {h(__version__)}</small></p></form></body></html>"""


def router(auth: Auth) -> APIRouter:
    r = APIRouter(include_in_schema=False)
    csrf = LoginCsrf()

    def form(request: Request, next_: str, status: int = 200, message: str = "",
             username: str = "", headers: dict[str, str] | None = None) -> Response:
        cookie, token = csrf.new()
        response = HTMLResponse(_page(token, next_, message, username), status_code=status,
                                headers=headers)
        response.set_cookie(LOGIN_CSRF_COOKIE, cookie, max_age=LOGIN_CSRF_MAX_AGE,
                            path=LOGIN_PATH, httponly=True, samesite="lax",
                            secure=auth.secure(request.scope))
        response.headers["Cache-Control"] = "no-store"
        return response

    @r.get(LOGIN_PATH)
    async def login_page(request: Request, next: str | None = None) -> Response:  # noqa: A002
        target = safe_next(next)
        if auth.enabled and request.cookies.get(SESSION_COOKIE) and auth.ctx.engine is not None \
                and await auth.session(request.scope) is not None:
            return RedirectResponse(target, status_code=303)
        return form(request, target)

    @r.post(LOGIN_PATH)
    async def login(request: Request) -> Response:
        data = await request.form()
        fields = {k: data.get(k) for k in ("username", "password", "next", CSRF_FIELD)}
        text = {k: v if isinstance(v, str) else "" for k, v in fields.items()}
        target = safe_next(text["next"])
        if not auth.enabled:
            return RedirectResponse(target, status_code=303)
        username, password = text["username"].strip(), text["password"]
        if not csrf.valid(request.cookies.get(LOGIN_CSRF_COOKIE), text[CSRF_FIELD]):
            auth.tel.incr("csrf_refused")
            return form(request, target, 403, "The login form had expired; please log in "
                        "again.", username[:64])
        if not username or not password or len(username) > MAX_FIELD or \
                len(password) > MAX_FIELD:
            return form(request, target, 400, "Give a user name and a password.",
                        username[:64])
        address = auth.address(request.scope)
        wait = auth.limiter.begin(username, address, time.time())
        if wait > 0:
            auth.tel.incr("logins_locked")
            return form(request, target, 429, f"Too many failed logins: try again in "
                        f"{_seconds(wait)}.", username[:64],
                        headers={"Retry-After": str(int(wait) + 1)})
        try:
            await auth.wait_for_users()
            user = await auth.check_password(username, password)
        except BaseException:
            auth.limiter.abandoned(username, address)
            raise
        if user is None:
            auth.tel.incr("login_failures")
            locked = auth.limiter.failed(username, address, time.time())
            log.warning("failed login for %r from %s%s", username[:64], address,
                        f"; locked for {_seconds(locked)}" if locked else "")
            return form(request, target, 401, "Wrong user name or password.", username[:64])
        auth.limiter.succeeded(username, address)
        sid, _session = await asyncio.to_thread(q.create_session, auth.engine, user,
                                                auth.web.session_max_age)
        await asyncio.to_thread(q.purge_sessions, auth.engine, auth.web.session_idle_timeout)
        auth.tel.incr("logins")
        log.info("user %r logged in from %s", user.username, address)
        response = RedirectResponse(target, status_code=303)
        auth.set_session_cookie(response, request.scope, sid)
        response.delete_cookie(LOGIN_CSRF_COOKIE, path=LOGIN_PATH)
        return response

    @r.post("/logout")
    async def logout(request: Request) -> Response:
        # the middleware has checked the session and its CSRF token
        sid = request.cookies.get(SESSION_COOKIE)
        if sid and auth.enabled:
            await asyncio.to_thread(q.end_session, auth.engine, sid)
            auth.tel.incr("logouts")
        response = RedirectResponse(f"{LOGIN_PATH}?next={quote('/')}", status_code=303)
        auth.clear_session_cookie(response, request.scope)
        return response

    return r


def _seconds(s: float) -> str:
    s = int(s) + 1
    return f"{s} s" if s < 120 else f"{s // 60} min"
