"""Emptying a test database on a shared server (CI's MariaDB/PostgreSQL)."""

from __future__ import annotations

import sqlalchemy as sa


def reset_database(url: str) -> None:
    engine = sa.create_engine(url)
    try:
        meta = sa.MetaData()
        meta.reflect(engine)
        meta.drop_all(engine)
    finally:
        engine.dispose()
