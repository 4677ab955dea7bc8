from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import redis
from sqlalchemy.engine import Engine

from skyline.settings import load_settings
from skyline.store.redis_client import redis_session
from skyline.store.sql import make_engine, upgrade
from tests.conftest import skip_or_fail
from tests.integration.webapp_data import web  # noqa: F401  (fixture for the web app tests)


@pytest.fixture(params=["embedded", "external"])
def redis_client(request: pytest.FixtureRequest, tmp_path) -> Iterator[redis.Redis]:
    """A Redis client on the embedded server (always) and on the external server named by
    SKYLINE_TEST_REDIS_URL (when set, as in CI; its database is flushed)."""
    if request.param == "embedded":
        with redis_session(load_settings(DATA_DIR=tmp_path / "var")) as h:
            yield h.client
        return
    url = os.environ.get("SKYLINE_TEST_REDIS_URL")
    if not url:
        skip_or_fail("SKYLINE_TEST_REDIS_URL is not set")
    client = redis.Redis.from_url(url)
    client.flushdb()
    try:
        yield client
    finally:
        client.flushdb()
        client.close()


@pytest.fixture
def engine(tmp_path) -> Iterator[Engine]:
    """A migrated SQLite database of the test's own (tests across the SQL servers use
    sql_url from tests/conftest.py)."""
    eng = make_engine(f"sqlite:///{tmp_path / 'skyline.db'}")
    upgrade(eng)
    yield eng
    eng.dispose()
