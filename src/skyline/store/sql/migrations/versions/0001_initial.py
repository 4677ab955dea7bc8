"""Initial schema: metrics and anomalies.

Revision ID: 0001
Revises:
Create Date: 2024-01-01

Written by hand rather than generated: a migration is a frozen record of the schema at one
revision, so it names its own types instead of importing them from models.py (which moves
on with later revisions).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Same reasons as in models.py: full Unicode metric names, and foreign keys.
MYSQL: dict[str, Any] = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4"}


def upgrade() -> None:
    # op.f(): these names are final; the target metadata's naming convention must not
    # rewrite them.
    op.create_table(
        "metrics",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name_hash", sa.CHAR(64), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("created", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_metrics")),
        sa.UniqueConstraint("name_hash", name=op.f("uq_metrics_name_hash")),
        **MYSQL,
    )
    op.create_table(
        "anomalies",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "event_id",
            sa.String(64).with_variant(
                mysql.VARCHAR(64, collation="utf8mb4_bin"), "mysql", "mariadb"
            ),
            nullable=False,
        ),
        sa.Column("metric_id", sa.Integer(), nullable=False),
        sa.Column("timestamp", sa.Double(), nullable=False),
        sa.Column("value", sa.Double(), nullable=False),
        sa.Column("score", sa.Double(), nullable=False),
        sa.Column("triggered", sa.JSON(), nullable=False),
        sa.Column("results", sa.JSON(), nullable=False),
        sa.Column(
            "window",
            sa.LargeBinary().with_variant(mysql.LONGBLOB(), "mysql", "mariadb"),
            nullable=False,
        ),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_anomalies")),
        sa.UniqueConstraint("event_id", name=op.f("uq_anomalies_event_id")),
        sa.ForeignKeyConstraint(
            ["metric_id"], ["metrics.id"], name=op.f("fk_anomalies_metric_id_metrics")
        ),
        sa.CheckConstraint(
            "status IN ('anomalous', 'recovered')", name=op.f("ck_anomalies_status")
        ),
        **MYSQL,
    )
    op.create_index(op.f("ix_anomalies_timestamp_id"), "anomalies", ["timestamp", "id"])
    op.create_index(
        op.f("ix_anomalies_metric_id_timestamp"), "anomalies", ["metric_id", "timestamp"]
    )


def downgrade() -> None:
    # Dropping a table drops its indexes; dropping the indexes first would fail on MySQL,
    # which needs one of them for the foreign key.
    op.drop_table("anomalies")
    op.drop_table("metrics")
