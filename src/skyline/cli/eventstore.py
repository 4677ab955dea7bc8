"""The SQL event store as CLI commands open it."""

from __future__ import annotations

from typing import Any

from skyline.settings import Settings


def open_event_store(s: Settings) -> Any:
    """An engine on the event store, migrated when the settings say services migrate."""
    from skyline.store.sql import db as sqldb

    engine = sqldb.make_engine(s.database_url, s.database.pool_size)
    sqldb.check(engine)
    if s.database.upgrade_on_start:
        sqldb.upgrade(engine)
    return engine
