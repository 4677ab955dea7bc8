"""Indexes for the web app's anomaly queries, and the triggered algorithms as rows.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27

- `anomaly_algorithms`: one row per (anomaly, triggered algorithm) with the anomaly's
  timestamp, indexed on (algorithm, timestamp, anomaly_id). Filtering on the JSON column
  `triggered` could only scan; this index walks one algorithm's anomalies newest first.
  `anomalies.triggered` stays the record (events are read back from it); existing rows are
  copied over here.
- `ix_metrics_name`: namespace patterns narrow metric names by their literal prefix, a range
  on this index. PostgreSQL gets text_pattern_ops (byte order whatever the database's
  collation, so the range holds every name with the prefix); MySQL can index only a prefix
  of a TEXT column.
- `ix_anomalies_metric_id_timestamp_id` replaces (metric_id, timestamp): PostgreSQL can then
  page one metric's anomalies on (timestamp, id) from the index alone (SQLite and InnoDB
  append the row id to every index anyway).
- `ix_anomalies_timestamp_id_metric_id` replaces (timestamp, id): a pattern matching many
  metrics is checked on the metric ids of the rows a page walks, and reading those from the
  index instead of the (wide) table rows is several times faster.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MYSQL: dict[str, Any] = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4"}
COPY_BATCH = 5000


def upgrade() -> None:
    op.create_table(
        "anomaly_algorithms",
        sa.Column("anomaly_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                  nullable=False),
        # exact (binary) comparison on MySQL too, like event ids
        sa.Column("algorithm", sa.String(255).with_variant(
            mysql.VARCHAR(255, collation="utf8mb4_bin"), "mysql", "mariadb"), nullable=False),
        sa.Column("timestamp", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("anomaly_id", "algorithm", name=op.f("pk_anomaly_algorithms")),
        sa.ForeignKeyConstraint(["anomaly_id"], ["anomalies.id"],
                                name=op.f("fk_anomaly_algorithms_anomaly_id_anomalies")),
        **MYSQL,
    )
    op.create_index(op.f("ix_anomaly_algorithms_algorithm_timestamp_anomaly_id"),
                    "anomaly_algorithms", ["algorithm", "timestamp", "anomaly_id"])
    _copy_triggered()
    op.create_index(op.f("ix_metrics_name"), "metrics", ["name"], mysql_length=255,
                    postgresql_ops={"name": "text_pattern_ops"})
    # the new index first: MySQL needs one on metric_id for the foreign key at all times
    op.create_index(op.f("ix_anomalies_metric_id_timestamp_id"), "anomalies",
                    ["metric_id", "timestamp", "id"])
    op.drop_index(op.f("ix_anomalies_metric_id_timestamp"), table_name="anomalies")
    op.create_index(op.f("ix_anomalies_timestamp_id_metric_id"), "anomalies",
                    ["timestamp", "id", "metric_id"])
    op.drop_index(op.f("ix_anomalies_timestamp_id"), table_name="anomalies")


def _copy_triggered() -> None:
    """One row per stored anomaly and triggered algorithm, in id order and bounded batches
    (JSON is decoded here: the backends' JSON table functions differ)."""
    bind = op.get_bind()
    a = sa.table("anomalies", sa.column("id", sa.BigInteger()),
                 sa.column("timestamp", sa.Double()), sa.column("triggered", sa.JSON()))
    aa = sa.table("anomaly_algorithms", sa.column("anomaly_id", sa.BigInteger()),
                  sa.column("algorithm", sa.String()), sa.column("timestamp", sa.Double()))
    last = -1
    while True:
        rows = bind.execute(sa.select(a.c.id, a.c.timestamp, a.c.triggered)
                            .where(a.c.id > last).order_by(a.c.id).limit(COPY_BATCH)).all()
        if not rows:
            return
        last = int(rows[-1].id)
        values = []
        for r in rows:
            triggered = r.triggered
            if isinstance(triggered, str | bytes):  # a driver that hands JSON back as text
                triggered = json.loads(triggered)
            for name in dict.fromkeys(triggered or ()):
                values.append({"anomaly_id": int(r.id), "algorithm": str(name),
                               "timestamp": float(r.timestamp)})
        if values:
            bind.execute(aa.insert(), values)


def downgrade() -> None:
    op.create_index(op.f("ix_anomalies_timestamp_id"), "anomalies", ["timestamp", "id"])
    op.drop_index(op.f("ix_anomalies_timestamp_id_metric_id"), table_name="anomalies")
    op.create_index(op.f("ix_anomalies_metric_id_timestamp"), "anomalies",
                    ["metric_id", "timestamp"])
    op.drop_index(op.f("ix_anomalies_metric_id_timestamp_id"), table_name="anomalies")
    op.drop_index(op.f("ix_metrics_name"), table_name="metrics")
    op.drop_table("anomaly_algorithms")
