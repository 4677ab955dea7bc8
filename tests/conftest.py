"""Shared test helpers: free ports, system-test skipping, database URLs."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import pytest

REQUIRE_SYSTEM = os.environ.get("SKYLINE_REQUIRE_SYSTEM_TESTS") == "1"


def skip_or_fail(reason: str) -> None:
    """Skip a test that lacks a system binary or service; fail instead under CI
    (SKYLINE_REQUIRE_SYSTEM_TESTS=1), so CI always runs every test."""
    if REQUIRE_SYSTEM:
        pytest.fail(f"required by SKYLINE_REQUIRE_SYSTEM_TESTS=1 but unavailable: {reason}")
    pytest.skip(reason)


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(autouse=True, scope="session")
def _private_state_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """`skyline run` records its data directory under $XDG_STATE_HOME (skyline.cli.datadir):
    the tests' runs record theirs in a directory of this session, never the user's."""
    old = os.environ.get("XDG_STATE_HOME")
    os.environ["XDG_STATE_HOME"] = str(tmp_path_factory.mktemp("xdg-state"))
    yield
    if old is None:
        os.environ.pop("XDG_STATE_HOME", None)
    else:
        os.environ["XDG_STATE_HOME"] = old


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Removes every SKYLINE_* variable but the test harness's own (SKYLINE_TEST_*,
    SKYLINE_REQUIRE_*), so settings come from defaults and what the test passes."""
    for k in list(os.environ):
        if k.upper().startswith("SKYLINE_") and not k.upper().startswith(
                ("SKYLINE_TEST_", "SKYLINE_REQUIRE_")):
            monkeypatch.delenv(k)


@pytest.fixture
def port() -> int:
    return free_port()


def _sql_params() -> list:
    params = [pytest.param("sqlite", id="sqlite")]
    for name in ("mysql", "postgres"):
        params.append(pytest.param(name, id=name))
    return params


SQL_ENV = {"mysql": "SKYLINE_TEST_MYSQL_URL", "postgres": "SKYLINE_TEST_POSTGRES_URL"}


@pytest.fixture(params=_sql_params())
def sql_url(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:
    """An empty database on every SQL backend available: SQLite always, MariaDB and
    PostgreSQL when SKYLINE_TEST_MYSQL_URL / SKYLINE_TEST_POSTGRES_URL are set."""
    kind = request.param
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'skyline.db'}"
        return
    url = os.environ.get(SQL_ENV[kind])
    if not url:
        skip_or_fail(f"{SQL_ENV[kind]} is not set")
    from tests.sqlreset import reset_database

    reset_database(url)
    yield url
    reset_database(url)
