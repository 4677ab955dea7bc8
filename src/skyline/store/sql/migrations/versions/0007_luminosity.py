"""Luminosity: the metrics that moved with an anomaly (luminosity_correlations), and incidents
that group several metrics' incidents (incidents, incident_members).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MYSQL: dict[str, Any] = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4"}


def _exact(name: str, length: int = 64) -> sa.Column[Any]:
    # ids compare exactly on MySQL too, as anomalies.event_id
    return sa.Column(
        name, sa.String(length).with_variant(
            mysql.VARCHAR(length, collation="utf8mb4_bin"), "mysql", "mariadb"),
        nullable=False,
    )


def upgrade() -> None:
    op.create_table(
        "luminosity_correlations",
        _exact("event_id"),
        sa.Column("metric_id", sa.Integer(), nullable=False),
        sa.Column("timestamp", sa.Double(), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column("coefficient", sa.Double(), nullable=False),
        sa.Column("shifted_coefficient", sa.Double(), nullable=False),
        sa.Column("shift_seconds", sa.Double(), nullable=False),
        sa.Column("change", sa.Double(), nullable=False),
        sa.Column("score", sa.Double(), nullable=False),
        sa.Column("anomalous", sa.Boolean(), nullable=False),
        sa.Column("created", sa.Double(), nullable=False),
        sa.ForeignKeyConstraint(["metric_id"], ["metrics.id"],
                                name=op.f("fk_luminosity_correlations_metric_id_metrics")),
        sa.PrimaryKeyConstraint("event_id", "metric_id", name=op.f("pk_luminosity_correlations")),
        **MYSQL,
    )
    op.create_index(op.f("ix_luminosity_correlations_metric_id_timestamp"),
                    "luminosity_correlations", ["metric_id", "timestamp"])
    op.create_index(op.f("ix_luminosity_correlations_created"), "luminosity_correlations",
                    ["created"])
    op.create_table(
        "incidents",
        _exact("id", 32),
        sa.Column("origin_metric_id", sa.Integer(), nullable=False),
        _exact("origin_event_id"),
        sa.Column("started", sa.Double(), nullable=False),
        sa.Column("last_joined", sa.Double(), nullable=False),
        sa.Column("ended", sa.Double(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("members", sa.Integer(), nullable=False),
        sa.Column("open_members", sa.Integer(), nullable=False),
        sa.Column("updated", sa.Double(), nullable=False),
        sa.CheckConstraint("status IN ('open', 'closed')", name=op.f("ck_incidents_status")),
        sa.ForeignKeyConstraint(["origin_metric_id"], ["metrics.id"],
                                name=op.f("fk_incidents_origin_metric_id_metrics")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incidents")),
        **MYSQL,
    )
    op.create_index(op.f("ix_incidents_status_started"), "incidents", ["status", "started"])
    op.create_index(op.f("ix_incidents_started"), "incidents", ["started"])
    op.create_table(
        "incident_members",
        _exact("incident_id", 32),
        sa.Column("metric_id", sa.Integer(), nullable=False),
        _exact("event_id"),
        sa.Column("since", sa.Double(), nullable=False),
        sa.Column("joined", sa.Double(), nullable=False),
        sa.Column("ended", sa.Double(), nullable=True),
        sa.Column("relation", sa.String(16), nullable=False),
        sa.Column("coefficient", sa.Double(), nullable=True),
        sa.Column("shift_seconds", sa.Double(), nullable=True),
        sa.ForeignKeyConstraint(["incident_id"], ["incidents.id"],
                                name=op.f("fk_incident_members_incident_id_incidents")),
        sa.ForeignKeyConstraint(["metric_id"], ["metrics.id"],
                                name=op.f("fk_incident_members_metric_id_metrics")),
        sa.PrimaryKeyConstraint("incident_id", "metric_id", name=op.f("pk_incident_members")),
        **MYSQL,
    )
    op.create_index(op.f("ix_incident_members_metric_id_ended"), "incident_members",
                    ["metric_id", "ended"])
    op.create_index(op.f("ix_incident_members_event_id"), "incident_members", ["event_id"])


def downgrade() -> None:
    op.drop_table("incident_members")
    op.drop_table("incidents")
    op.drop_table("luminosity_correlations")
