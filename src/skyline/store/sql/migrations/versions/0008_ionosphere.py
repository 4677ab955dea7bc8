"""Ionosphere: operators' feedback on anomalies (ionosphere_feedback), profiles taught from an
anomaly's stored window (ionosphere_profiles: the series compressed, no per-metric tables), and
every match of a candidate against a profile (ionosphere_matches).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MYSQL: dict[str, Any] = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4"}
LABELS = "label IN ('not_anomalous', 'anomalous')"


def _event_id(name: str = "event_id", nullable: bool = False) -> sa.Column[Any]:
    return sa.Column(
        name, sa.String(64).with_variant(
            mysql.VARCHAR(64, collation="utf8mb4_bin"), "mysql", "mariadb"),
        nullable=nullable,
    )


def upgrade() -> None:
    op.create_table(
        "ionosphere_profiles",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("metric_id", sa.Integer(), nullable=False),
        sa.Column("label", sa.String(16), nullable=False),
        _event_id(nullable=True),
        sa.Column("anchor", sa.Double(), nullable=False),
        sa.Column("start", sa.Double(), nullable=False),
        sa.Column("resolution", sa.Double(), nullable=False),
        sa.Column("points", sa.Integer(), nullable=False),
        sa.Column("series", sa.LargeBinary().with_variant(mysql.LONGBLOB(), "mysql",
                                                          "mariadb"), nullable=False),
        sa.Column("features", sa.JSON(), nullable=False),
        sa.Column("features_version", sa.Integer(), nullable=False),
        sa.Column("who", sa.String(255), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("created", sa.Double(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("validated", sa.Boolean(), nullable=False),
        sa.Column("matched_count", sa.Integer(), nullable=False),
        sa.Column("last_matched", sa.Double(), nullable=True),
        sa.Column("parent_id", sa.Integer(), nullable=True),
        sa.Column("disabled_reason", sa.Text(), nullable=False),
        sa.CheckConstraint(LABELS, name=op.f("ck_ionosphere_profiles_label")),
        sa.ForeignKeyConstraint(["metric_id"], ["metrics.id"],
                                name=op.f("fk_ionosphere_profiles_metric_id_metrics")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ionosphere_profiles")),
        **MYSQL,
    )
    op.create_index(op.f("ix_ionosphere_profiles_metric_id_enabled"), "ionosphere_profiles",
                    ["metric_id", "enabled"])
    op.create_index(op.f("ix_ionosphere_profiles_event_id"), "ionosphere_profiles",
                    ["event_id"])
    op.create_table(
        "ionosphere_feedback",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        _event_id(),
        sa.Column("metric_id", sa.Integer(), nullable=False),
        sa.Column("label", sa.String(16), nullable=False),
        sa.Column("who", sa.String(255), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("created", sa.Double(), nullable=False),
        sa.Column("profile_id", sa.Integer(), nullable=True),
        sa.CheckConstraint(LABELS, name=op.f("ck_ionosphere_feedback_label")),
        sa.ForeignKeyConstraint(["metric_id"], ["metrics.id"],
                                name=op.f("fk_ionosphere_feedback_metric_id_metrics")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ionosphere_feedback")),
        **MYSQL,
    )
    op.create_index(op.f("ix_ionosphere_feedback_event_id"), "ionosphere_feedback",
                    ["event_id"])
    op.create_table(
        "ionosphere_matches",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("profile_id", sa.Integer(), nullable=False),
        sa.Column("metric_id", sa.Integer(), nullable=False),
        _event_id(),
        sa.Column("timestamp", sa.Double(), nullable=False),
        sa.Column("method", sa.String(16), nullable=False),
        sa.Column("similarity", sa.Double(), nullable=False),
        sa.Column("figures", sa.JSON(), nullable=False),
        sa.Column("applied", sa.Boolean(), nullable=False),
        sa.Column("created", sa.Double(), nullable=False),
        sa.Column("validated", sa.Boolean(), nullable=True),
        sa.Column("reviewed_by", sa.String(255), nullable=False),
        sa.ForeignKeyConstraint(["profile_id"], ["ionosphere_profiles.id"],
                                name=op.f("fk_ionosphere_matches_profile_id_ionosphere_profiles")),
        sa.ForeignKeyConstraint(["metric_id"], ["metrics.id"],
                                name=op.f("fk_ionosphere_matches_metric_id_metrics")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ionosphere_matches")),
        sa.UniqueConstraint("event_id", "profile_id",
                            name=op.f("uq_ionosphere_matches_event_id")),
        **MYSQL,
    )
    op.create_index(op.f("ix_ionosphere_matches_profile_id_timestamp"), "ionosphere_matches",
                    ["profile_id", "timestamp"])
    op.create_index(op.f("ix_ionosphere_matches_metric_id_timestamp"), "ionosphere_matches",
                    ["metric_id", "timestamp"])


def downgrade() -> None:
    op.drop_table("ionosphere_matches")
    op.drop_table("ionosphere_feedback")
    op.drop_table("ionosphere_profiles")
