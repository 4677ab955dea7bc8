"""Alembic environment for the SQL event store.

Skyline drives Alembic from code (skyline.store.sql.db), handing over an open connection
in `config.attributes["connection"]`, so the engine settings (SQLite pragmas, MySQL
charset, pool) are the ones the services use. Offline mode (`--sql`) takes
`sqlalchemy.url` from the config instead.
"""

from __future__ import annotations

from alembic import context

from skyline.store.sql.models import metadata

config = context.config


def run_offline() -> None:
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("offline migrations need the sqlalchemy.url option")
    context.configure(url=url, target_metadata=metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        raise RuntimeError(
            "run migrations through skyline.store.sql.db (or `skyline db upgrade`), "
            "which passes the connection in config.attributes"
        )
    context.configure(connection=connection, target_metadata=metadata)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
