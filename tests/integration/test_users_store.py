"""Users, API tokens and sessions in SQL, on every backend available (SQLite always,
MariaDB and PostgreSQL when SKYLINE_TEST_MYSQL_URL / SKYLINE_TEST_POSTGRES_URL are set)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from argon2 import PasswordHasher
from sqlalchemy.engine import Engine

from skyline.core.errors import InvalidInput, NotFound
from skyline.services.webapp.bootstrap import FIRST_ADMIN, SETTINGS_TOKEN, sync_users
from skyline.settings import load_settings
from skyline.store.sql import make_engine, upgrade
from skyline.store.sql import users as q
from skyline.store.sql.models import api_tokens, sessions, users


@pytest.fixture
def store(sql_url: str) -> Iterator[Engine]:
    engine = make_engine(sql_url)
    upgrade(engine)
    try:
        yield engine
    finally:
        engine.dispose()


def test_users_are_exact_and_unique(store):
    q.create_user(store, "Admin", "password-one", is_admin=True)
    q.create_user(store, "admin", "password-two")  # another user on every backend
    with pytest.raises(InvalidInput, match="exists already"):
        q.create_user(store, "admin", "password-three")
    assert [(u.username, u.is_admin) for u in q.list_users(store)] == [
        ("Admin", True), ("admin", False)]
    assert q.authenticate(store, "Admin", "password-one").username == "Admin"
    assert q.authenticate(store, "admin", "password-one") is None
    assert q.authenticate(store, "nobody", "password-one") is None
    with pytest.raises(NotFound):
        q.get_user(store, "nobody")
    stored = q.stored_hash(store, "admin")
    assert stored.startswith("$argon2id$") and "password-two" not in stored


def test_weak_hash_is_upgraded_at_login(store):
    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash("old-params-1")
    q.create_user(store, "old", password_hash=weak)
    assert q.authenticate(store, "old", "wrong-password") is None
    assert q.stored_hash(store, "old") == weak  # a failed login changes nothing
    assert q.authenticate(store, "old", "old-params-1") is not None
    upgraded = q.stored_hash(store, "old")
    assert upgraded != weak and not q._hasher.check_needs_rehash(upgraded)
    assert q.authenticate(store, "old", "old-params-1") is not None


def test_tokens_verify_expire_and_revoke(store):
    q.create_user(store, "bot", "bot-password-1")
    rec, token = q.create_token(store, "bot", "ci", now=1000.0)
    assert token.startswith(rec.prefix) and rec.prefix.startswith("skyline_")
    with store.connect() as c:
        row = c.execute(sa.select(api_tokens)).one()
    assert row.token_hash == q.sha256(token) and token not in tuple(map(str, row))
    assert q.verify_token(store, token, now=2000.0).username == "bot"
    assert q.list_tokens(store, "bot")[0].last_used == 2000.0
    q.verify_token(store, token, now=2010.0)  # within TOUCH_EVERY: no write
    assert q.list_tokens(store, "bot")[0].last_used == 2000.0
    assert q.verify_token(store, token[:-1] + "x", now=2000.0) is None
    assert q.verify_token(store, "short", now=2000.0) is None
    _, expiring = q.create_token(store, "bot", "short-lived", expires=5000.0, now=1000.0)
    assert q.verify_token(store, expiring, now=4999.0) is not None
    assert q.verify_token(store, expiring, now=5000.0) is None
    with pytest.raises(InvalidInput, match="future"):
        q.create_token(store, "bot", "late", expires=10.0, now=1000.0)
    q.revoke_token(store, rec.id)
    assert q.verify_token(store, token) is None
    with pytest.raises(NotFound):
        q.revoke_token(store, rec.id)
    with pytest.raises(NotFound):
        q.create_token(store, "nobody", "x")


def test_sessions_idle_max_age_logout_and_password_change(store):
    user = q.create_user(store, "web", "web-password-1")
    sid, s = q.create_session(store, user, max_age=1000.0, now=0.0)
    with store.connect() as c:
        assert c.execute(sa.select(sessions.c.id_hash)).scalar() == q.sha256(sid)
    got = q.session_user(store, sid, idle_timeout=100.0, now=70.0)
    assert got is not None and got.user.username == "web" and got.csrf_token == s.csrf_token
    # last seen at 70, so not idle at 160
    assert q.session_user(store, sid, idle_timeout=100.0, now=160.0) is not None
    assert q.session_user(store, sid + "x", idle_timeout=100.0, now=161.0) is None
    # idle too long: gone for good
    assert q.session_user(store, sid, idle_timeout=100.0, now=400.0) is None
    assert q.session_user(store, sid, idle_timeout=1e9, now=401.0) is None
    # past its absolute end however active
    sid2, _ = q.create_session(store, user, max_age=1000.0, now=0.0)
    for t in range(0, 1000, 60):
        assert q.session_user(store, sid2, idle_timeout=100.0, now=float(t)) is not None
    assert q.session_user(store, sid2, idle_timeout=100.0, now=1000.0) is None
    # logout
    sid3, _ = q.create_session(store, user, max_age=1000.0)
    assert q.end_session(store, sid3) and not q.end_session(store, sid3)
    assert q.session_user(store, sid3, idle_timeout=100.0) is None
    # a new password ends every session
    sid4, _ = q.create_session(store, user, max_age=1000.0)
    q.set_password(store, "web", "web-password-2")
    assert q.session_user(store, sid4, idle_timeout=100.0) is None
    assert q.authenticate(store, "web", "web-password-2") is not None


def test_purge_and_remove_user_cascade(store):
    user = q.create_user(store, "gone", "gone-password-1")
    q.create_session(store, user, max_age=10.0, now=0.0)
    q.create_session(store, user, max_age=1e6, now=0.0)
    assert q.purge_sessions(store, idle_timeout=1e9, now=100.0) == 1
    q.create_token(store, "gone", "t")
    q.create_user(store, "stays", "stays-password-1")
    q.remove_user(store, "gone")
    with store.connect() as c:
        for table in (sessions, api_tokens):
            assert c.execute(sa.select(sa.func.count()).select_from(table)).scalar() == 0
        assert c.execute(sa.select(users.c.username)).scalars().all() == ["stays"]


def test_first_start_admin_once(store):
    s = load_settings()
    password = sync_users(store, s)
    assert password is not None and len(password) >= 16
    admin = q.get_user(store, FIRST_ADMIN)
    assert admin.is_admin and admin.origin == "first-start"
    assert q.authenticate(store, FIRST_ADMIN, password) is not None
    assert sync_users(store, s) is None  # a restart: nothing new, nothing shown
    assert q.count_users(store) == 1


def test_no_first_admin_with_seeded_users_or_auth_off(store):
    assert sync_users(store, load_settings(WEBAPP_AUTH_ENABLED=False)) is None
    assert q.count_users(store) == 0
    s = load_settings(WEBAPP_AUTH_USER="ops", WEBAPP_AUTH_USER_PASSWORD="ops-password-1")
    assert sync_users(store, s) is None
    assert [(u.username, u.is_admin, u.origin) for u in q.list_users(store)] == [
        ("ops", True, "settings")]


def test_settings_users_are_kept_in_step(store):
    token_a, token_b = "a" * 40, "b" * 40

    def settings(password: str, tokens: list[str], admin: bool = False):
        return load_settings(webapp={"users": [
            {"username": "ci", "password": password, "admin": admin, "tokens": tokens},
            {"username": "ro", "password_hash": q.hash_password("ro-password-1")}]})

    sync_users(store, settings("ci-password-1", [token_a]))
    assert q.authenticate(store, "ci", "ci-password-1") is not None
    assert q.verify_token(store, token_a).username == "ci"
    assert q.authenticate(store, "ro", "ro-password-1") is not None
    # a changed password, admin flag and token list take effect at the next start
    sync_users(store, settings("ci-password-2", [token_b], admin=True))
    assert q.authenticate(store, "ci", "ci-password-1") is None
    assert q.authenticate(store, "ci", "ci-password-2").is_admin
    assert q.verify_token(store, token_a) is None
    assert q.verify_token(store, token_b).username == "ci"
    assert {t.name for t in q.list_tokens(store, "ci")} == {SETTINGS_TOKEN}
    # tokens made with the CLI are not the settings' to revoke
    _, own = q.create_token(store, "ci", "own")
    sync_users(store, settings("ci-password-2", []))
    assert q.verify_token(store, own) is not None and q.verify_token(store, token_b) is None
