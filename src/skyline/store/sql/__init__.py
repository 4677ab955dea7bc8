"""The SQL event store: anomaly events kept for as long as people want to look at them.

SQLAlchemy 2 Core tables (declared with the typed ORM style so mypy sees the columns) and
Alembic migrations shipped inside the package, so `skyline db upgrade` needs no ini file.
"""

from skyline.store.sql.anomalies import (
    get_anomaly,
    latest_anomalies,
    metric_anomalies,
    metric_id,
    save_anomaly,
)
from skyline.store.sql.db import (
    check,
    current_revision,
    downgrade,
    heads,
    make_engine,
    upgrade,
)
from skyline.store.sql.runs import RunStats, latest_runs, save_run

__all__ = [
    "RunStats",
    "check",
    "current_revision",
    "downgrade",
    "get_anomaly",
    "heads",
    "latest_anomalies",
    "latest_runs",
    "make_engine",
    "metric_anomalies",
    "metric_id",
    "save_anomaly",
    "save_run",
    "upgrade",
]
