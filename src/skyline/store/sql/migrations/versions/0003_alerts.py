"""Alerting: silences, the alert delivery queue and the alert log.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MYSQL: dict[str, Any] = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4"}


def _id() -> sa.Column[Any]:
    return sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                     autoincrement=True, nullable=False)


def _event_id() -> sa.Column[Any]:
    # exact comparison on MySQL too, as anomalies.event_id
    return sa.Column(
        "event_id",
        sa.String(64).with_variant(mysql.VARCHAR(64, collation="utf8mb4_bin"), "mysql", "mariadb"),
        nullable=False,
    )


def upgrade() -> None:
    op.create_table(
        "silences",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("pattern", sa.Text(), nullable=False),
        sa.Column("created", sa.Double(), nullable=False),
        sa.Column("expires", sa.Double(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("who", sa.String(255), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_silences")),
        **MYSQL,
    )
    op.create_index(op.f("ix_silences_expires"), "silences", ["expires"])
    op.create_table(
        "alert_deliveries",
        _id(),
        _event_id(),
        sa.Column("channel", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("metric", sa.Text(), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("created", sa.Double(), nullable=False),
        sa.Column("next_attempt", sa.Double(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("claimed_until", sa.Double(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_deliveries")),
        sa.UniqueConstraint("event_id", "channel", "kind",
                            name=op.f("uq_alert_deliveries_event_id")),
        **MYSQL,
    )
    op.create_index(op.f("ix_alert_deliveries_channel_status_next"), "alert_deliveries",
                    ["channel", "status", "next_attempt"])
    op.create_index(op.f("ix_alert_deliveries_created"), "alert_deliveries", ["created"])
    op.create_table(
        "alert_log",
        _id(),
        sa.Column("delivery_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                  nullable=True),
        _event_id(),
        sa.Column("channel", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("metric", sa.Text(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("duration", sa.Double(), nullable=False),
        sa.Column("created", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_log")),
        **MYSQL,
    )
    op.create_index(op.f("ix_alert_log_created"), "alert_log", ["created"])
    op.create_index(op.f("ix_alert_log_event_id"), "alert_log", ["event_id"])


def downgrade() -> None:
    op.drop_table("alert_log")
    op.drop_table("alert_deliveries")
    op.drop_table("silences")
