"""Users, API tokens and login sessions in SQL.

Passwords are argon2id hashes (argon2-cffi's current parameters; an older hash is replaced
at the next successful login). Tokens and session ids are random strings with 256 bits of
entropy: for those a SHA-256 is as good as a slow hash (nothing to brute-force) and lets a
lookup be one indexed equality. Plain tokens and session ids are returned once, at creation,
and never stored.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from skyline.core.errors import InvalidInput, NotFound
from skyline.settings.webapp import MIN_PASSWORD_LENGTH, MIN_TOKEN_LENGTH, USERNAME_PATTERN
from skyline.store.sql.anomalies import Conn, _tx
from skyline.store.sql.models import api_tokens, sessions, users

TOKEN_PREFIX = "skyline_"
PREFIX_SHOWN = 12  # "skyline_" and 4 random characters: enough to tell tokens apart
MAX_PASSWORD_LENGTH = 1024  # argon2 takes anything; a megabyte "password" is an attack
MAX_TOKEN_NAME = 255
MAX_TOKEN_LENGTH = 512
# a token's or session's last use is written at most this often, not on every request
TOUCH_EVERY = 60.0
ORIGINS = ("cli", "settings", "first-start")

_USERNAME = re.compile(USERNAME_PATTERN)
_hasher = PasswordHasher()  # argon2id
# verified against when a user does not exist, so that answering takes as long as for a
# real user and timing does not tell which names exist
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


@dataclass(frozen=True)
class User:
    id: int
    username: str
    is_admin: bool
    origin: str
    created: float
    password_changed: float

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "username": self.username, "is_admin": self.is_admin,
                "origin": self.origin, "created": self.created,
                "password_changed": self.password_changed}


@dataclass(frozen=True)
class Token:
    id: int
    username: str
    name: str
    prefix: str
    created: float
    last_used: float | None
    expires: float | None

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "username": self.username, "name": self.name,
                "prefix": self.prefix, "created": self.created, "last_used": self.last_used,
                "expires": self.expires}


@dataclass(frozen=True)
class Session:
    user: User
    csrf_token: str
    expires: float


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def csrf_token_for(session_id: str) -> str:
    """The CSRF token of a session: derived from its secret id, so it needs no storage, is
    known only to whoever holds the session, and does not reveal the id (one-way)."""
    return hmac.new(session_id.encode(), b"skyline csrf", hashlib.sha256).hexdigest()


# validation ------------------------------------------------------------------------------
def check_username(username: str) -> str:
    if not _USERNAME.match(username):
        raise InvalidInput(f"user name {username!r}: 1 to 64 letters, digits and _ . @ -, "
                           "starting with a letter or digit")
    return username


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidInput(f"password shorter than {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise InvalidInput(f"password longer than {MAX_PASSWORD_LENGTH} characters")
    return password


def hash_password(password: str) -> str:
    return _hasher.hash(check_password(password))


def generate_password() -> str:
    """A password for people to copy once: 20 URL-safe characters (120 bits)."""
    return secrets.token_urlsafe(15)


# users -------------------------------------------------------------------------------------
def _user(r: Any) -> User:
    return User(int(r.id), r.username, bool(r.is_admin), r.origin, float(r.created),
                float(r.password_changed))


_USER_COLS = (users.c.id, users.c.username, users.c.is_admin, users.c.origin,
              users.c.created, users.c.password_changed)


def count_users(conn: Conn) -> int:
    with _tx(conn) as c:
        return int(c.execute(sa.select(sa.func.count()).select_from(users)).scalar_one())


def list_users(conn: Conn) -> list[User]:
    with _tx(conn) as c:
        return [_user(r) for r in c.execute(sa.select(*_USER_COLS).order_by(users.c.username))]


def get_user(conn: Conn, username: str) -> User:
    with _tx(conn) as c:
        r = c.execute(sa.select(*_USER_COLS).where(users.c.username == username)).first()
    if r is None:
        raise NotFound(f"no user named {username!r} (see `skyline user list`)")
    return _user(r)


def create_user(conn: Conn, username: str, password: str | None = None, *,
                password_hash: str | None = None, is_admin: bool = False,
                origin: str = "cli", now: float | None = None) -> User:
    """A new user with `password` (or an argon2 `password_hash` made elsewhere);
    InvalidInput when the name is taken or refused."""
    check_username(username)
    if (password is None) == (password_hash is None):
        raise ValueError("give exactly one of password and password_hash")
    assert origin in ORIGINS
    h = password_hash if password_hash is not None else hash_password(password or "")
    t = time.time() if now is None else now
    with _tx(conn) as c:
        if c.execute(sa.select(users.c.id).where(users.c.username == username)).first():
            raise InvalidInput(f"user {username!r} exists already")
        try:
            with c.begin_nested():
                res = c.execute(sa.insert(users).values(
                    username=username, password_hash=h, is_admin=is_admin, origin=origin,
                    created=t, password_changed=t))
        except sa.exc.IntegrityError:  # created meanwhile by another process
            raise InvalidInput(f"user {username!r} exists already") from None
        pk = res.inserted_primary_key
        assert pk is not None
        return User(int(pk[0]), username, is_admin, origin, t, t)


def set_password(conn: Conn, username: str, password: str | None = None, *,
                 password_hash: str | None = None, now: float | None = None) -> None:
    """Change a user's password and end every session of theirs (whoever learnt the old
    password may be logged in). API tokens stay: they are revoked one by one."""
    if (password is None) == (password_hash is None):
        raise ValueError("give exactly one of password and password_hash")
    h = password_hash if password_hash is not None else hash_password(password or "")
    t = time.time() if now is None else now
    with _tx(conn) as c:
        uid = get_user(c, username).id
        c.execute(sa.update(users).where(users.c.id == uid)
                  .values(password_hash=h, password_changed=t))
        c.execute(sa.delete(sessions).where(sessions.c.user_id == uid))


def set_admin(conn: Conn, username: str, is_admin: bool) -> None:
    with _tx(conn) as c:
        uid = get_user(c, username).id
        c.execute(sa.update(users).where(users.c.id == uid).values(is_admin=is_admin))


def remove_user(conn: Conn, username: str) -> None:
    """Remove a user with their tokens and sessions."""
    with _tx(conn) as c:
        uid = get_user(c, username).id
        # explicit rather than ON DELETE CASCADE alone: SQLite enforces foreign keys only
        # on connections that turned them on
        c.execute(sa.delete(sessions).where(sessions.c.user_id == uid))
        c.execute(sa.delete(api_tokens).where(api_tokens.c.user_id == uid))
        c.execute(sa.delete(users).where(users.c.id == uid))


def password_matches(conn: Conn, username: str, password: str) -> bool:
    """Whether `password` is this user's (False for an unknown user). Only for keeping
    settings-managed users in step; logins go through authenticate()."""
    with _tx(conn) as c:
        stored = c.execute(sa.select(users.c.password_hash)
                           .where(users.c.username == username)).scalar()
    return stored is not None and _verify(stored, password)


def stored_hash(conn: Conn, username: str) -> str | None:
    with _tx(conn) as c:
        h = c.execute(sa.select(users.c.password_hash)
                      .where(users.c.username == username)).scalar()
    return None if h is None else str(h)


def _verify(stored: str, password: str) -> bool:
    try:
        return _hasher.verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def authenticate(conn: Conn, username: str, password: str) -> User | None:
    """The user when `password` is theirs, else None. Takes the same time for unknown
    names, and upgrades a hash made with older argon2 parameters."""
    if len(password) > MAX_PASSWORD_LENGTH or not _USERNAME.match(username):
        _verify(_DUMMY_HASH, password[:MAX_PASSWORD_LENGTH])
        return None
    with _tx(conn) as c:
        r = c.execute(sa.select(*_USER_COLS, users.c.password_hash)
                      .where(users.c.username == username)).first()
    if r is None:
        _verify(_DUMMY_HASH, password)
        return None
    if not _verify(r.password_hash, password):
        return None
    if _hasher.check_needs_rehash(r.password_hash):
        with _tx(conn) as c:
            c.execute(sa.update(users).where(users.c.id == r.id)
                      .values(password_hash=_hasher.hash(password)))
    return _user(r)


# API tokens ---------------------------------------------------------------------------------
def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def create_token(conn: Conn, username: str, name: str = "", expires: float | None = None,
                 *, token: str | None = None, now: float | None = None) -> tuple[Token, str]:
    """A new API token for `username`: (its record, the token itself, shown only now).
    `token` stores a given token instead of a random one (settings-seeded tokens)."""
    t = time.time() if now is None else now
    if len(name) > MAX_TOKEN_NAME:
        raise InvalidInput(f"token name longer than {MAX_TOKEN_NAME} characters")
    if expires is not None and expires <= t:
        raise InvalidInput("a token must expire in the future")
    plain = token if token is not None else new_token()
    if len(plain) < MIN_TOKEN_LENGTH:
        raise InvalidInput(f"a token needs at least {MIN_TOKEN_LENGTH} characters")
    prefix = plain[:PREFIX_SHOWN]
    with _tx(conn) as c:
        uid = get_user(c, username).id
        res = c.execute(sa.insert(api_tokens).values(
            user_id=uid, name=name, token_hash=sha256(plain), prefix=prefix, created=t,
            last_used=None, expires=expires))
        pk = res.inserted_primary_key
        assert pk is not None
        return Token(int(pk[0]), username, name, prefix, t, None, expires), plain


def _token(r: Any) -> Token:
    return Token(int(r.id), r.username, r.name, r.prefix, float(r.created),
                 None if r.last_used is None else float(r.last_used),
                 None if r.expires is None else float(r.expires))


def list_tokens(conn: Conn, username: str | None = None) -> list[Token]:
    stmt = (sa.select(api_tokens.c.id, users.c.username, api_tokens.c.name,
                      api_tokens.c.prefix, api_tokens.c.created, api_tokens.c.last_used,
                      api_tokens.c.expires)
            .join(users, users.c.id == api_tokens.c.user_id).order_by(api_tokens.c.id))
    with _tx(conn) as c:
        if username is not None:
            stmt = stmt.where(api_tokens.c.user_id == get_user(c, username).id)
        return [_token(r) for r in c.execute(stmt)]


def revoke_token(conn: Conn, token_id: int) -> None:
    with _tx(conn) as c:
        if c.execute(sa.delete(api_tokens).where(api_tokens.c.id == token_id)).rowcount == 0:
            raise NotFound(f"no API token with id {token_id} (see `skyline user list`)")


def has_token(conn: Conn, token: str) -> bool:
    with _tx(conn) as c:
        return c.execute(sa.select(api_tokens.c.id)
                         .where(api_tokens.c.token_hash == sha256(token))).first() is not None


def revoke_tokens_named(conn: Conn, username: str, name: str, keep: set[str]) -> int:
    """Revoke `username`'s tokens called `name` whose hash is not in `keep`."""
    with _tx(conn) as c:
        uid = get_user(c, username).id
        stmt = sa.delete(api_tokens).where(api_tokens.c.user_id == uid,
                                           api_tokens.c.name == name)
        if keep:
            stmt = stmt.where(api_tokens.c.token_hash.not_in(sorted(keep)))
        return int(c.execute(stmt).rowcount)


def verify_token(conn: Conn, token: str, now: float | None = None) -> User | None:
    """The user a token belongs to, or None for an unknown, revoked or expired token."""
    if not MIN_TOKEN_LENGTH <= len(token) <= MAX_TOKEN_LENGTH:
        return None
    t = time.time() if now is None else now
    h = sha256(token)
    with _tx(conn) as c:
        r = c.execute(sa.select(*_USER_COLS, api_tokens.c.id.label("token_id"),
                                api_tokens.c.token_hash, api_tokens.c.last_used,
                                api_tokens.c.expires)
                      .join(api_tokens, api_tokens.c.user_id == users.c.id)
                      .where(api_tokens.c.token_hash == h)).first()
        # the database found it by equality; compare again in constant time so a timing
        # difference in its index search is all an attacker could ever measure
        if r is None or not hmac.compare_digest(r.token_hash, h):
            return None
        if r.expires is not None and r.expires <= t:
            return None
        if r.last_used is None or t - r.last_used >= TOUCH_EVERY:
            c.execute(sa.update(api_tokens).where(api_tokens.c.id == r.token_id)
                      .values(last_used=t))
    return _user(r)


# sessions ---------------------------------------------------------------------------------------
def create_session(conn: Conn, user: User, max_age: float,
                   now: float | None = None) -> tuple[str, Session]:
    """A new session for `user`: (the session id for the cookie, the session)."""
    t = time.time() if now is None else now
    sid = secrets.token_urlsafe(32)
    with _tx(conn) as c:
        c.execute(sa.insert(sessions).values(user_id=user.id, id_hash=sha256(sid), created=t,
                                             last_seen=t, expires=t + max_age))
    return sid, Session(user, csrf_token_for(sid), t + max_age)


def session_user(conn: Conn, session_id: str, idle_timeout: float,
                 now: float | None = None) -> Session | None:
    """The live session with this id, or None (unknown, logged out, idle too long or past
    its end). Marks it used."""
    t = time.time() if now is None else now
    h = sha256(session_id)
    with _tx(conn) as c:
        r = c.execute(sa.select(*_USER_COLS, sessions.c.id.label("session_id"),
                                sessions.c.id_hash, sessions.c.last_seen, sessions.c.expires)
                      .join(sessions, sessions.c.user_id == users.c.id)
                      .where(sessions.c.id_hash == h)).first()
        if r is None or not hmac.compare_digest(r.id_hash, h):
            return None
        if r.expires <= t or t - r.last_seen >= idle_timeout:
            c.execute(sa.delete(sessions).where(sessions.c.id == r.session_id))
            return None
        if t - r.last_seen >= TOUCH_EVERY:
            c.execute(sa.update(sessions).where(sessions.c.id == r.session_id)
                      .values(last_seen=t))
    return Session(_user(r), csrf_token_for(session_id), float(r.expires))


def end_session(conn: Conn, session_id: str) -> bool:
    """Log out: the session is gone from the database, whatever the browser keeps."""
    with _tx(conn) as c:
        return bool(c.execute(sa.delete(sessions)
                              .where(sessions.c.id_hash == sha256(session_id))).rowcount)


def purge_sessions(conn: Conn, idle_timeout: float, now: float | None = None) -> int:
    """Delete sessions that have ended; returns how many."""
    t = time.time() if now is None else now
    with _tx(conn) as c:
        res = c.execute(sa.delete(sessions).where(
            sa.or_(sessions.c.expires <= t, sessions.c.last_seen <= t - idle_timeout)))
        return int(res.rowcount)
