"""The analysis pipeline's events: statuses vetoed and new_level, each stage's verdict, the
band the detector expected and the incident's start.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD = "status IN ('anomalous', 'recovered')"
NEW = "status IN ('anomalous', 'recovered', 'vetoed', 'new_level')"


@contextmanager
def _rebuilding_anomalies() -> Iterator[None]:
    """SQLite rebuilds the table to change a CHECK constraint (batch mode), and dropping the
    old copy would orphan anomaly_algorithms' rows (a foreign key violation that no PRAGMA can
    lift inside the transaction): they wait in a temporary table meanwhile."""
    sqlite = op.get_bind().dialect.name == "sqlite"
    if sqlite:
        op.execute("CREATE TEMP TABLE _skyline_anomaly_algorithms AS "
                   "SELECT * FROM anomaly_algorithms")
        op.execute("DELETE FROM anomaly_algorithms")
    yield
    if sqlite:
        op.execute("INSERT INTO anomaly_algorithms SELECT * FROM _skyline_anomaly_algorithms")
        op.execute("DROP TABLE _skyline_anomaly_algorithms")


def upgrade() -> None:
    with _rebuilding_anomalies(), op.batch_alter_table("anomalies") as b:
        b.drop_constraint(op.f("ck_anomalies_status"), type_="check")
        b.create_check_constraint(op.f("ck_anomalies_status"), NEW)
        b.add_column(sa.Column("stages", sa.JSON(), nullable=True))
        b.add_column(sa.Column("band_low", sa.Double(), nullable=True))
        b.add_column(sa.Column("band_high", sa.Double(), nullable=True))
        b.add_column(sa.Column("since", sa.Double(), nullable=True))


def downgrade() -> None:
    op.execute("DELETE FROM anomaly_algorithms WHERE anomaly_id IN (SELECT id FROM anomalies "
               "WHERE status IN ('vetoed', 'new_level'))")
    op.execute("DELETE FROM anomalies WHERE status IN ('vetoed', 'new_level')")
    with _rebuilding_anomalies(), op.batch_alter_table("anomalies") as b:
        b.drop_column("since")
        b.drop_column("band_high")
        b.drop_column("band_low")
        b.drop_column("stages")
        b.drop_constraint(op.f("ck_anomalies_status"), type_="check")
        b.create_check_constraint(op.f("ck_anomalies_status"), OLD)
