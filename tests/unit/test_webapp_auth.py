"""Pure pieces of the web app's authentication: redirects, proxies, limits, CSRF tokens,
password hashes, and the settings that pre-seed users."""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher
from pydantic import ValidationError

from skyline.core.errors import InvalidInput, SettingsError
from skyline.services.webapp.auth import (
    bearer_token,
    client_address,
    is_https,
    is_open,
    safe_next,
)
from skyline.services.webapp.limits import FORGET_AFTER, MAX_LOCKOUT, LoginLimiter
from skyline.services.webapp.login import LoginCsrf
from skyline.settings import load_settings
from skyline.settings.show import as_dict, as_toml
from skyline.store.sql import users as q


@pytest.mark.parametrize("target, expected", [
    ("/anomalies?metric=a.b", "/anomalies?metric=a.b"),
    ("/", "/"),
    (None, "/"),
    ("", "/"),
    ("//evil.example/x", "/"),
    ("https://evil.example/", "/"),
    ("/\\evil.example", "/"),
    ("\\\\evil.example", "/"),
    ("evil.example", "/"),
    ("/x\r\nSet-Cookie: a=b", "/"),
    ("/%2F%2Fevil", "/%2F%2Fevil"),  # a path on this site, however odd
    ("/login?next=/x", "/"),
    ("/" + "a" * 3000, "/"),
])
def test_safe_next_keeps_only_local_paths(target, expected):
    assert safe_next(target) == expected


def test_open_routes():
    for path in ("/login", "/metrics", "/api/v1/health", "/static/skyline.css", "/write",
                 "/api/v2/write", "/v1/metrics", "/flux/metric_data_post",
                 "/flux/prometheus/write"):
        assert is_open(path), path
    for path in ("/", "/api/v1/anomalies", "/api/v1/healthz", "/logout", "/loginx",
                 "/api/v1/openapi.json", "/metrics/x", "/staticx"):
        assert not is_open(path), path


def _scope(headers: dict[str, str], scheme: str = "http", client: str = "10.0.0.9"):
    return {"type": "http", "scheme": scheme, "client": (client, 5555),
            "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()]}


def test_https_and_client_address_believe_a_proxy_only_when_told():
    forwarded = _scope({"X-Forwarded-Proto": "https, http",
                        "X-Forwarded-For": "6.6.6.6, 203.0.113.7"})
    assert not is_https(forwarded, trust_proxy=False)
    assert is_https(forwarded, trust_proxy=True)
    assert client_address(forwarded, trust_proxy=False) == "10.0.0.9"
    # the client may forge the first entries; the last is the proxy's own
    assert client_address(forwarded, trust_proxy=True) == "203.0.113.7"
    assert is_https(_scope({}, scheme="https"), trust_proxy=False)
    assert client_address(_scope({}), trust_proxy=True) == "10.0.0.9"


def test_bearer_token_parsing():
    assert bearer_token(_scope({"Authorization": "Bearer abc"})) == "abc"
    assert bearer_token(_scope({"Authorization": "bearer   abc "})) == "abc"
    assert bearer_token(_scope({"Authorization": "Basic abc"})) is None
    assert bearer_token(_scope({})) is None


def test_limiter_locks_a_pair_and_doubles():
    lim = LoginLimiter(max_failures=3, lockout=60)
    t = 1000.0
    assert lim.failed("bob", "1.2.3.4", t) == 0
    assert lim.failed("bob", "1.2.3.4", t) == 0
    assert lim.failed("bob", "1.2.3.4", t) == 60
    assert lim.locked_for("bob", "1.2.3.4", t + 30) == pytest.approx(30)
    assert lim.locked_for("bob", "5.6.7.8", t + 30) == 0  # another address may try
    assert lim.locked_for("alice", "1.2.3.4", t + 30) == 0  # another name too
    assert lim.locked_for("bob", "1.2.3.4", t + 61) == 0
    assert lim.failed("bob", "1.2.3.4", t + 61) == 120
    assert lim.failed("bob", "1.2.3.4", t + 200) == 240
    for _ in range(40):
        last = lim.failed("bob", "1.2.3.4", t + 300)
    assert last == MAX_LOCKOUT


def test_limiter_success_and_time_forget():
    lim = LoginLimiter(max_failures=3, lockout=60)
    lim.failed("bob", "a", 0)
    lim.failed("bob", "a", 0)
    lim.succeeded("bob", "a")
    assert lim.failed("bob", "a", 1) == 0  # count restarted
    lim.failed("bob", "a", 2)
    assert lim.failed("bob", "a", 3 + FORGET_AFTER + 1) == 0  # forgotten after an hour


def test_limiter_locks_an_address_sweeping_names():
    lim = LoginLimiter(max_failures=2, lockout=60)
    for i in range(19):
        lim.failed(f"user{i}", "9.9.9.9", 0)
    assert lim.locked_for("someone-new", "9.9.9.9", 1) == 0
    assert lim.failed("user19", "9.9.9.9", 1) == 60
    assert lim.locked_for("someone-new", "9.9.9.9", 2) > 0
    lim.succeeded("someone-new", "9.9.9.9")
    assert lim.locked_for("someone-new", "9.9.9.9", 2) > 0


def test_login_csrf_pairs():
    a, b = LoginCsrf(), LoginCsrf()
    cookie, form = a.new()
    assert a.valid(cookie, form)
    assert not b.valid(cookie, form)  # another process's key (a restart)
    assert not a.valid(cookie, form[:-1] + ("0" if form[-1] != "0" else "1"))
    assert not a.valid(None, form) and not a.valid(cookie, None)
    other_cookie, _ = a.new()
    assert not a.valid(other_cookie, form)


def test_session_csrf_token_is_derived_and_one_way():
    t1, t2 = q.csrf_token_for("session-one"), q.csrf_token_for("session-two")
    assert t1 == q.csrf_token_for("session-one") and t1 != t2
    assert "session-one" not in t1 and len(t1) == 64


def test_password_rules_and_hashes():
    with pytest.raises(InvalidInput, match="shorter"):
        q.hash_password("short")
    with pytest.raises(InvalidInput, match="longer"):
        q.hash_password("x" * 2000)
    h = q.hash_password("correct horse")
    assert h.startswith("$argon2id$")
    assert q._verify(h, "correct horse") and not q._verify(h, "wrong horse")
    assert not q._verify("not a hash", "correct horse")
    assert len(q.generate_password()) == 20
    assert q.new_token().startswith("skyline_") and len(q.new_token()) > 40
    for bad in ("", "-x", "a b", "a/b", "x" * 65, "é"):
        with pytest.raises(InvalidInput):
            q.check_username(bad)
    assert q.check_username("ops.team@example-1") == "ops.team@example-1"


def test_old_argon2_parameters_need_a_rehash():
    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash("pw-12345678")
    assert q._verify(weak, "pw-12345678")
    assert q._hasher.check_needs_rehash(weak)
    assert not q._hasher.check_needs_rehash(q.hash_password("pw-12345678"))


def test_seeded_users_in_settings():
    s = load_settings(webapp={"users": [
        {"username": "ci", "password": "ci-password-1", "admin": True,
         "tokens": ["t" * 40]},
        {"username": "ro", "password_hash": q.hash_password("ro-password-1")},
    ]}, WEBAPP_AUTH_USER="ops", WEBAPP_AUTH_USER_PASSWORD="ops-password-1")
    text = as_toml(s) + str(as_dict(s))
    for secret in ("ci-password-1", "t" * 40, "$argon2id$", "ops-password-1"):
        assert secret not in text
    assert [u.username for u in s.webapp.users] == ["ci", "ro"]


@pytest.mark.parametrize("users, error", [
    ([{"username": "a"}], "exactly one of password and password_hash"),
    ([{"username": "a", "password": "p" * 10, "password_hash": "$argon2id$x"}],
     "exactly one"),
    ([{"username": "a", "password": "short"}], "shorter than 8"),
    ([{"username": "a", "password_hash": "$2b$12$bcrypt"}], "not an argon2 hash"),
    ([{"username": "a", "password": "p" * 10, "tokens": ["short"]}], "token number 1"),
    ([{"username": "a b", "password": "p" * 10}], "username"),
    ([{"username": "a", "password": "p" * 10}, {"username": "a", "password": "p" * 10}],
     "listed twice"),
])
def test_bad_seeded_users_are_refused(users, error):
    with pytest.raises((SettingsError, ValidationError), match=error):
        load_settings(webapp={"users": users})


def test_upstream_auth_user_needs_its_password():
    with pytest.raises((SettingsError, ValidationError), match="go together"):
        load_settings(WEBAPP_AUTH_USER="ops")
    with pytest.raises((SettingsError, ValidationError), match="go together"):
        load_settings(WEBAPP_AUTH_USER_PASSWORD="ops-password-1")
    assert load_settings().WEBAPP_AUTH_ENABLED is True
