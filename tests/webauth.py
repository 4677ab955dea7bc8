"""Authenticating in tests: a real user and API token in the test's database, or a real
login through the form, never auth switched off."""

from __future__ import annotations

import re
from typing import Any

from skyline.core.errors import NotFound
from skyline.store.sql import users as q

USERNAME = "tester"
PASSWORD = "tester-password-123"
# for `skyline run` subprocesses: a user the settings create, with this API token
TOKEN = "skyline_test_token_0123456789abcdefghijklmnop"
SEED_USERS_JSON = (f'[{{"username": "{USERNAME}", "password": "{PASSWORD}", "admin": true, '
                   f'"tokens": ["{TOKEN}"]}}]')
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def ensure_user(engine: Any, username: str = USERNAME, password: str = PASSWORD,
                admin: bool = True) -> q.User:
    try:
        return q.get_user(engine, username)
    except NotFound:
        return q.create_user(engine, username, password, is_admin=admin)


def bearer(engine: Any, username: str = USERNAME, admin: bool = True) -> dict[str, str]:
    """Headers with a fresh API token of `username` (created when missing)."""
    ensure_user(engine, username, admin=admin)
    _record, token = q.create_token(engine, username, "test")
    return {"Authorization": f"Bearer {token}"}


_FORM_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


def login(client: Any, engine: Any, username: str = USERNAME, password: str = PASSWORD,
          next_: str = "/") -> str:
    """Log `client` (a TestClient or httpx.Client keeping cookies) in through the login
    form, as a browser does; returns the session's CSRF token for state-changing requests."""
    ensure_user(engine, username, password)
    page = client.get("/login", params={"next": next_})
    assert page.status_code == 200, page.text
    match = _FORM_TOKEN.search(page.text)
    assert match is not None, "no csrf_token in the login form"
    r = client.post("/login", data={"username": username, "password": password,
                                    "next": next_, "csrf_token": match.group(1)},
                    follow_redirects=False)
    assert r.status_code == 303, r.text
    return q.csrf_token_for(client.cookies["skyline_session"])
