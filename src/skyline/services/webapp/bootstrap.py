"""Users at the web app's start: those the settings name, kept in step with them, and on a
first start with nobody to log in as, an `admin` with a random password shown once."""

from __future__ import annotations

import logging

from pydantic import SecretStr
from sqlalchemy.engine import Engine

from skyline.core.errors import InvalidInput, NotFound
from skyline.settings import Settings
from skyline.settings.webapp import SeedUser
from skyline.store.sql import users as q

log = logging.getLogger(__name__)

FIRST_ADMIN = "admin"
SETTINGS_TOKEN = "settings"  # name of the API tokens the settings give


def seed_users(settings: Settings) -> list[SeedUser]:
    seeds = list(settings.webapp.users)
    if settings.WEBAPP_AUTH_USER and settings.WEBAPP_AUTH_USER_PASSWORD is not None:
        # upstream's one web user, who could do everything
        seeds.append(SeedUser(username=settings.WEBAPP_AUTH_USER,
                              password=SecretStr(
                                  settings.WEBAPP_AUTH_USER_PASSWORD.get_secret_value()),
                              admin=True))
    return seeds


def _sync(engine: Engine, seed: SeedUser) -> None:
    password = seed.password.get_secret_value() if seed.password is not None else None
    given_hash = seed.password_hash.get_secret_value() if seed.password_hash else None
    try:
        user = q.get_user(engine, seed.username)
    except NotFound:
        try:
            q.create_user(engine, seed.username, password, password_hash=given_hash,
                          is_admin=seed.admin, origin="settings")
            log.info("created web user %r from the settings", seed.username)
        except InvalidInput:  # another instance starting at the same moment made it
            pass
    else:
        if password is not None:
            if not q.password_matches(engine, seed.username, password):
                q.set_password(engine, seed.username, password)
                log.info("web user %r: password set from the settings", seed.username)
        elif q.stored_hash(engine, seed.username) != given_hash:
            q.set_password(engine, seed.username, password_hash=given_hash)
            log.info("web user %r: password hash set from the settings", seed.username)
        if user.is_admin != seed.admin:
            q.set_admin(engine, seed.username, seed.admin)
    tokens = [t.get_secret_value() for t in seed.tokens]
    for token in tokens:
        if not q.has_token(engine, token):
            q.create_token(engine, seed.username, SETTINGS_TOKEN, token=token)
    # a token taken out of the settings stops working
    q.revoke_tokens_named(engine, seed.username, SETTINGS_TOKEN, {q.sha256(t) for t in tokens})


def sync_users(engine: Engine, settings: Settings) -> str | None:
    """Create or update the settings' users; on a first start with no user at all, create
    `admin` and return its password (the only time it is known), else None."""
    seeds = seed_users(settings)
    for seed in seeds:
        _sync(engine, seed)
    if seeds or not settings.WEBAPP_AUTH_ENABLED or q.count_users(engine):
        return None
    password = q.generate_password()
    try:
        q.create_user(engine, FIRST_ADMIN, password, is_admin=True, origin="first-start")
    except InvalidInput:  # another instance starting at the same moment made it
        return None
    return password
