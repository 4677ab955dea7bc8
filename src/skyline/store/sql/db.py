"""Engines and schema migrations for the SQL event store.

Alembic runs from code: the migrations ship inside the package and Config is built here,
so no alembic.ini has to exist next to an installed Skyline.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.pool import ConnectionPoolEntry

from skyline.core.errors import StoreUnavailable
from skyline.settings.show import MASK, mask_url

WHAT = "SQL database"
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# A database host that drops packets would otherwise hold a start for minutes (libpq has
# no default timeout).
CONNECT_TIMEOUT = 10
# Behind proxies and MySQL's wait_timeout idle connections die silently; pre_ping catches
# most of that, recycling catches the rest before the server does.
POOL_RECYCLE = 3600


def make_engine(url: str, pool_size: int = 5) -> Engine:
    """An engine for `url` with Skyline's per-backend settings.

    Raises StoreUnavailable (URL masked) when the URL is malformed, its driver is missing
    or SQLite's directory cannot be created.
    """
    try:
        u = make_url(url)
    except (sa.exc.ArgumentError, ValueError):
        # The message may repeat the URL, password included.
        raise StoreUnavailable(WHAT, mask_url(url), "not a valid SQLAlchemy URL") from None
    backend = u.get_backend_name()
    kw: dict[str, Any] = {"pool_pre_ping": True}
    connect_args: dict[str, Any] = {}
    if backend == "sqlite":
        _sqlite_parent(u.database, url)
    else:
        kw["pool_size"] = pool_size
        kw["pool_recycle"] = POOL_RECYCLE
    if backend in ("mysql", "mariadb"):
        if "charset" not in u.query:
            # The driver's default (utf8mb3 or latin1) cannot carry every metric name.
            u = u.update_query_dict({"charset": "utf8mb4"})
        connect_args["connect_timeout"] = CONNECT_TIMEOUT
    elif backend == "postgresql" and "connect_timeout" not in u.query:
        connect_args["connect_timeout"] = CONNECT_TIMEOUT
    try:
        engine = sa.create_engine(u, connect_args=connect_args, **kw)
    except ImportError as e:
        extra = {"mysql": "mysql", "mariadb": "mysql", "postgresql": "postgres"}.get(backend)
        hint = f" (pip install 'skyline-anomaly[{extra}]')" if extra else ""
        raise StoreUnavailable(
            WHAT, mask_url(url), f"database driver not installed: {e.name or e}{hint}"
        ) from None
    except sa.exc.NoSuchModuleError:
        raise StoreUnavailable(
            WHAT, mask_url(url), f"unknown database type {u.drivername!r}"
        ) from None
    if backend == "sqlite":
        sa.event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_parent(database: str | None, url: str) -> None:
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    path = Path(database).expanduser()
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # created empty, readable by this user only, before SQLite creates it (its -wal
        # and -shm files take the database file's permissions)
        with contextlib.suppress(FileExistsError):
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except OSError as e:
        raise StoreUnavailable(WHAT, mask_url(url), _one_line(e)) from None


def _sqlite_pragmas(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
    # WAL lets the web app read while panorama writes; SQLite leaves foreign keys off
    # unless asked, per connection.
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
    finally:
        cursor.close()


def _url(engine: Engine) -> str:
    return mask_url(engine.url.render_as_string(hide_password=False))


def _one_line(exc: BaseException, password: str | None = None) -> str:
    """The driver's message, first line only, without the password should a driver echo
    it back."""
    orig = getattr(exc, "orig", None) or exc
    args: tuple[Any, ...] = getattr(orig, "args", ())
    # PyMySQL: (errno, message)
    if len(args) == 2 and isinstance(args[0], int) and isinstance(args[1], str):
        text = args[1]
    else:
        text = str(orig)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    line = lines[0] if lines else type(orig).__name__
    if password:
        line = line.replace(password, MASK)
    return line


@contextmanager
def _connect(engine: Engine) -> Iterator[Connection]:
    """A connection, or StoreUnavailable when none can be opened. Errors raised while the
    connection is in use are not connection failures and pass through unchanged."""
    try:
        conn = engine.connect()
    except (sa.exc.DBAPIError, OSError) as e:
        raise StoreUnavailable(WHAT, _url(engine), _one_line(e, engine.url.password)) from None
    with conn:
        yield conn


def check(engine: Engine) -> None:
    """Raise StoreUnavailable (one-line reason, URL masked) unless the database answers."""
    try:
        with _connect(engine) as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.DBAPIError as e:
        raise StoreUnavailable(WHAT, _url(engine), _one_line(e, engine.url.password)) from None


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def _run(engine: Engine, action: str, revision: str) -> None:
    config = _config()
    with _connect(engine) as conn, conn.begin():
        config.attributes["connection"] = conn
        if action == "upgrade":
            command.upgrade(config, revision)
        else:
            command.downgrade(config, revision)


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply migrations up to `revision`. Atomic only on PostgreSQL: MySQL and SQLite
    (through pysqlite) commit DDL statements one by one."""
    _run(engine, "upgrade", revision)


def downgrade(engine: Engine, revision: str) -> None:
    """Revert migrations down to `revision` ("base" removes every table)."""
    _run(engine, "downgrade", revision)


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at; None for an empty database."""
    with _connect(engine) as conn:
        return MigrationContext.configure(conn).get_current_revision()


def heads() -> list[str]:
    """The head revisions of the shipped migrations (exactly one unless a branch slipped in)."""
    return list(ScriptDirectory.from_config(_config()).get_heads())
