"""Tables of the SQL event store.

The migrations in `migrations/versions` are written by hand and are what creates the
schema; these classes describe the same tables for queries, and a test compares the two on
every backend so they cannot drift apart.
"""

from __future__ import annotations

import hashlib
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Deterministic constraint names: a later migration has to name a constraint to alter or
# drop it, and the backends' own generated names differ.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# MySQL's default character set may be latin1 (or 3-byte utf8), which cannot hold every
# metric name; InnoDB is the engine with foreign keys and transactions.
MYSQL_TABLE_ARGS: dict[str, Any] = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4"}

ANOMALY_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # INTEGER PK = SQLite rowid
# MySQL's default collations compare case-insensitively; event ids must be unique exactly as
# on the other backends.
EVENT_ID = sa.String(64).with_variant(
    mysql.VARCHAR(64, collation="utf8mb4_bin"), "mysql", "mariadb"
)
ALGORITHM_NAME = sa.String(255).with_variant(
    mysql.VARCHAR(255, collation="utf8mb4_bin"), "mysql", "mariadb"
)
# BLOB holds only 64 KiB on MySQL; a compressed window of a long (mirage) series exceeds it.
WINDOW = sa.LargeBinary().with_variant(mysql.LONGBLOB(), "mysql", "mariadb")


def name_hash(name: str) -> str:
    """The unique key of a metric name. Names (labels included) are longer than MySQL can
    index, and MySQL collations would call `CPU` and `cpu` the same name; a hex digest is
    short, exact and the same on every backend."""
    return hashlib.sha256(name.encode("utf-8")).hexdigest()


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)


class Metric(Base):
    __tablename__ = "metrics"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    name_hash: Mapped[str] = mapped_column(sa.CHAR(64), unique=True)
    name: Mapped[str] = mapped_column(sa.Text)
    created: Mapped[float] = mapped_column(sa.Double)

    __table_args__ = (
        # namespace patterns: a range over the literal prefix (byte order on PostgreSQL
        # whatever the collation; MySQL indexes only a prefix of TEXT)
        sa.Index("ix_metrics_name", "name", mysql_length=255,
                 postgresql_ops={"name": "text_pattern_ops"}),
        MYSQL_TABLE_ARGS,
    )


class Anomaly(Base):
    __tablename__ = "anomalies"
    __table_args__ = (
        sa.CheckConstraint("status IN ('anomalous', 'recovered', 'vetoed', 'new_level')",
                           name="status"),
        # newest first, keyset-paginated on (timestamp, id); metric_id so that pattern
        # checks along this walk need no table row
        sa.Index("ix_anomalies_timestamp_id_metric_id", "timestamp", "id", "metric_id"),
        # one metric's anomalies in (timestamp, id) order; also the index MySQL wants for
        # the foreign key
        sa.Index("ix_anomalies_metric_id_timestamp_id", "metric_id", "timestamp", "id"),
        MYSQL_TABLE_ARGS,
    )

    id: Mapped[int] = mapped_column(ANOMALY_ID, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(EVENT_ID, unique=True)
    metric_id: Mapped[int] = mapped_column(sa.ForeignKey("metrics.id"))
    timestamp: Mapped[float] = mapped_column(sa.Double)
    value: Mapped[float] = mapped_column(sa.Double)
    score: Mapped[float] = mapped_column(sa.Double)
    triggered: Mapped[list[str]] = mapped_column(sa.JSON)
    results: Mapped[list[dict[str, Any]]] = mapped_column(sa.JSON)
    window: Mapped[bytes] = mapped_column(WINDOW)
    source: Mapped[str] = mapped_column(sa.String(64))
    status: Mapped[str] = mapped_column(sa.String(16))
    created: Mapped[float] = mapped_column(sa.Double)
    # the analysis pipeline (migration 0006): each stage's verdict, the band the detector
    # expected, the incident's start; NULL for events stored before it
    stages: Mapped[list[dict[str, Any]] | None] = mapped_column(sa.JSON, nullable=True)
    band_low: Mapped[float | None] = mapped_column(sa.Double, nullable=True)
    band_high: Mapped[float | None] = mapped_column(sa.Double, nullable=True)
    since: Mapped[float | None] = mapped_column(sa.Double, nullable=True)


class AnomalyAlgorithm(Base):
    """The algorithms an anomaly triggered, one row each (anomalies.triggered holds the same
    list), with the anomaly's timestamp so one algorithm's anomalies page newest first from
    the index alone."""

    __tablename__ = "anomaly_algorithms"
    __table_args__ = (
        sa.Index("ix_anomaly_algorithms_algorithm_timestamp_anomaly_id",
                 "algorithm", "timestamp", "anomaly_id"),
        MYSQL_TABLE_ARGS,
    )

    anomaly_id: Mapped[int] = mapped_column(ANOMALY_ID, sa.ForeignKey("anomalies.id"),
                                            primary_key=True)
    algorithm: Mapped[str] = mapped_column(ALGORITHM_NAME, primary_key=True)
    timestamp: Mapped[float] = mapped_column(sa.Double)


metadata = Base.metadata
metrics = metadata.tables["metrics"]
anomalies = metadata.tables["anomalies"]
anomaly_algorithms = metadata.tables["anomaly_algorithms"]


RUN_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


class AnalyzerRun(Base):
    """One analyzer pass: how long it took, what it saw, what it found."""

    __tablename__ = "analyzer_runs"
    __table_args__ = (sa.Index("ix_analyzer_runs_started", "started"), MYSQL_TABLE_ARGS)

    id: Mapped[int] = mapped_column(RUN_ID, primary_key=True, autoincrement=True)
    instance: Mapped[str] = mapped_column(sa.String(255))
    started: Mapped[float] = mapped_column(sa.Double)
    duration: Mapped[float] = mapped_column(sa.Double)
    metrics: Mapped[int] = mapped_column(sa.Integer)  # in the index
    analysed: Mapped[int] = mapped_column(sa.Integer)  # given an opinion
    anomalies: Mapped[int] = mapped_column(sa.Integer)
    exceptions: Mapped[dict[str, int]] = mapped_column(sa.JSON)  # TooShort, Stale, ...
    stages: Mapped[dict[str, float]] = mapped_column(sa.JSON)  # seconds per stage/algorithm


ALERT_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


class Silence(Base):
    """Alerts for metrics matching `pattern` are not sent until `expires`."""

    __tablename__ = "silences"
    __table_args__ = (sa.Index("ix_silences_expires", "expires"), MYSQL_TABLE_ARGS)

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    pattern: Mapped[str] = mapped_column(sa.Text)
    created: Mapped[float] = mapped_column(sa.Double)
    expires: Mapped[float] = mapped_column(sa.Double)  # "until" is reserved in MySQL
    reason: Mapped[str] = mapped_column(sa.Text)
    who: Mapped[str] = mapped_column(sa.String(255))


class AlertDelivery(Base):
    """The delivery queue: one row per (event, channel, kind) to send, retried until sent
    or too old. Rows stay after delivery (status sent/expired) until alerters.history_days."""

    __tablename__ = "alert_deliveries"
    __table_args__ = (
        # at-least-once stream delivery must not queue an alert twice
        sa.UniqueConstraint("event_id", "channel", "kind"),
        # each channel worker asks: my pending rows that are due
        sa.Index("ix_alert_deliveries_channel_status_next", "channel", "status", "next_attempt"),
        sa.Index("ix_alert_deliveries_created", "created"),
        MYSQL_TABLE_ARGS,
    )

    id: Mapped[int] = mapped_column(ALERT_ID, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(EVENT_ID)
    channel: Mapped[str] = mapped_column(sa.String(32))
    kind: Mapped[str] = mapped_column(sa.String(16))  # alert | update | resolve | test
    metric: Mapped[str] = mapped_column(sa.Text)
    payload: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    created: Mapped[float] = mapped_column(sa.Double)
    next_attempt: Mapped[float] = mapped_column(sa.Double)
    attempts: Mapped[int] = mapped_column(sa.Integer)
    status: Mapped[str] = mapped_column(sa.String(16))  # pending | sent | expired
    claimed_until: Mapped[float] = mapped_column(sa.Double)
    last_error: Mapped[str] = mapped_column(sa.Text)


class AlertLog(Base):
    """Every delivery attempt and every alert not sent (rate limit, expiry), for people
    asking "why did I (not) get this alert"."""

    __tablename__ = "alert_log"
    __table_args__ = (
        sa.Index("ix_alert_log_created", "created"),
        sa.Index("ix_alert_log_event_id", "event_id"),
        MYSQL_TABLE_ARGS,
    )

    id: Mapped[int] = mapped_column(ALERT_ID, primary_key=True, autoincrement=True)
    delivery_id: Mapped[int | None] = mapped_column(ALERT_ID, nullable=True)
    event_id: Mapped[str] = mapped_column(EVENT_ID)
    channel: Mapped[str] = mapped_column(sa.String(32))
    kind: Mapped[str] = mapped_column(sa.String(16))
    metric: Mapped[str] = mapped_column(sa.Text)
    attempt: Mapped[int] = mapped_column(sa.Integer)
    status: Mapped[str] = mapped_column(sa.String(16))  # sent | error | rate_limited | expired
    error: Mapped[str] = mapped_column(sa.Text)
    duration: Mapped[float] = mapped_column(sa.Double)
    created: Mapped[float] = mapped_column(sa.Double)


silences = metadata.tables["silences"]
alert_deliveries = metadata.tables["alert_deliveries"]
alert_log = metadata.tables["alert_log"]


# users of the web app ------------------------------------------------------------------------
# MySQL's default collation would make "Admin" and "admin" one user; exact everywhere
USERNAME = sa.String(64).with_variant(
    mysql.VARCHAR(64, collation="utf8mb4_bin"), "mysql", "mariadb"
)


class User(Base):
    """A person who logs in to the web app; `origin` says who made it (cli, settings,
    first-start), so `skyline user list` can tell settings-managed users apart."""

    __tablename__ = "users"
    __table_args__ = MYSQL_TABLE_ARGS

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(USERNAME, unique=True)
    password_hash: Mapped[str] = mapped_column(sa.String(255))  # argon2id, PHC string
    is_admin: Mapped[bool] = mapped_column(sa.Boolean)
    origin: Mapped[str] = mapped_column(sa.String(16))
    created: Mapped[float] = mapped_column(sa.Double)
    password_changed: Mapped[float] = mapped_column(sa.Double)


class ApiToken(Base):
    """A Bearer token for the API. Only a SHA-256 of the token is kept: tokens are random
    with 256 bits of entropy, so a slow hash adds nothing and a fast one keeps lookups
    to one indexed equality."""

    __tablename__ = "api_tokens"
    __table_args__ = (sa.Index("ix_api_tokens_user_id", "user_id"), MYSQL_TABLE_ARGS)

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(sa.String(255))
    token_hash: Mapped[str] = mapped_column(sa.CHAR(64), unique=True)
    prefix: Mapped[str] = mapped_column(sa.String(16))  # shown in lists, to recognise one
    created: Mapped[float] = mapped_column(sa.Double)
    last_used: Mapped[float | None] = mapped_column(sa.Double, nullable=True)
    expires: Mapped[float | None] = mapped_column(sa.Double, nullable=True)


class LoginSession(Base):
    """A browser session; the cookie holds the id, the table only its SHA-256, so a copy
    of the database logs nobody in."""

    __tablename__ = "sessions"
    __table_args__ = (
        sa.Index("ix_sessions_user_id", "user_id"),
        sa.Index("ix_sessions_expires", "expires"),
        MYSQL_TABLE_ARGS,
    )

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"))
    id_hash: Mapped[str] = mapped_column(sa.CHAR(64), unique=True)
    created: Mapped[float] = mapped_column(sa.Double)
    last_seen: Mapped[float] = mapped_column(sa.Double)
    expires: Mapped[float] = mapped_column(sa.Double)  # absolute end, however active


users = metadata.tables["users"]
api_tokens = metadata.tables["api_tokens"]
sessions = metadata.tables["sessions"]


# luminosity ----------------------------------------------------------------------------------
# MySQL compares strings case-insensitively by default; incident ids are exact everywhere
INCIDENT_ID = sa.String(32).with_variant(
    mysql.VARCHAR(32, collation="utf8mb4_bin"), "mysql", "mariadb"
)


class LuminosityCorrelation(Base):
    """A metric that moved with an anomaly (upstream's `luminosity` table): Pearson's
    coefficient at lag 0, the best coefficient over the lags and that lag (seconds; > 0: the
    metric moved after the anomalous one), how far it moved from its own baseline (robust
    z), the ranking score and rank, and whether it had an anomaly of its own near the time."""

    __tablename__ = "luminosity_correlations"
    __table_args__ = (
        sa.Index("ix_luminosity_correlations_metric_id_timestamp", "metric_id", "timestamp"),
        sa.Index("ix_luminosity_correlations_created", "created"),
        MYSQL_TABLE_ARGS,
    )

    event_id: Mapped[str] = mapped_column(EVENT_ID, primary_key=True)  # the anomaly's
    metric_id: Mapped[int] = mapped_column(sa.ForeignKey("metrics.id"), primary_key=True)
    timestamp: Mapped[float] = mapped_column(sa.Double)  # the anomaly's
    rank: Mapped[int] = mapped_column(sa.Integer)
    coefficient: Mapped[float] = mapped_column(sa.Double)
    shifted_coefficient: Mapped[float] = mapped_column(sa.Double)
    shift_seconds: Mapped[float] = mapped_column(sa.Double)
    change: Mapped[float] = mapped_column(sa.Double)
    score: Mapped[float] = mapped_column(sa.Double)
    anomalous: Mapped[bool] = mapped_column(sa.Boolean)
    created: Mapped[float] = mapped_column(sa.Double)


class Incident(Base):
    """An incident: one or more metrics' incidents that began close together and are related;
    its origin is the earliest member. Open until every member has ended."""

    __tablename__ = "incidents"
    __table_args__ = (
        sa.CheckConstraint("status IN ('open', 'closed')", name="status"),
        sa.Index("ix_incidents_status_started", "status", "started"),
        sa.Index("ix_incidents_started", "started"),
        MYSQL_TABLE_ARGS,
    )

    id: Mapped[str] = mapped_column(INCIDENT_ID, primary_key=True)
    origin_metric_id: Mapped[int] = mapped_column(sa.ForeignKey("metrics.id"))
    origin_event_id: Mapped[str] = mapped_column(EVENT_ID)
    started: Mapped[float] = mapped_column(sa.Double)
    last_joined: Mapped[float] = mapped_column(sa.Double)  # the newest member's start
    ended: Mapped[float | None] = mapped_column(sa.Double, nullable=True)
    status: Mapped[str] = mapped_column(sa.String(16))
    members: Mapped[int] = mapped_column(sa.Integer)
    open_members: Mapped[int] = mapped_column(sa.Integer)
    updated: Mapped[float] = mapped_column(sa.Double)


class IncidentMember(Base):
    """One metric's incident inside an incident: when it began, when it ended (recovered or
    new level; NULL while open), and why it was grouped (origin, correlated, prefix, map)."""

    __tablename__ = "incident_members"
    __table_args__ = (
        sa.Index("ix_incident_members_metric_id_ended", "metric_id", "ended"),
        sa.Index("ix_incident_members_event_id", "event_id"),
        MYSQL_TABLE_ARGS,
    )

    incident_id: Mapped[str] = mapped_column(INCIDENT_ID, sa.ForeignKey("incidents.id"),
                                             primary_key=True)
    metric_id: Mapped[int] = mapped_column(sa.ForeignKey("metrics.id"), primary_key=True)
    event_id: Mapped[str] = mapped_column(EVENT_ID)
    since: Mapped[float] = mapped_column(sa.Double)
    joined: Mapped[float] = mapped_column(sa.Double)
    ended: Mapped[float | None] = mapped_column(sa.Double, nullable=True)
    relation: Mapped[str] = mapped_column(sa.String(16))
    coefficient: Mapped[float | None] = mapped_column(sa.Double, nullable=True)
    shift_seconds: Mapped[float | None] = mapped_column(sa.Double, nullable=True)


luminosity_correlations = metadata.tables["luminosity_correlations"]
incidents = metadata.tables["incidents"]
incident_members = metadata.tables["incident_members"]


# ionosphere ----------------------------------------------------------------------------------
IONOSPHERE_LABELS = "label IN ('not_anomalous', 'anomalous')"


class IonosphereProfile(Base):
    """A stretch of a metric's series an operator labelled (not_anomalous / anomalous), on a
    regular grid (start, resolution, points) compressed in `series`; taught from the anomaly
    `event_id` at `anchor`. parent_id: the profile it was learnt from (NULL: taught)."""

    __tablename__ = "ionosphere_profiles"
    __table_args__ = (
        sa.CheckConstraint(IONOSPHERE_LABELS, name="label"),
        sa.Index("ix_ionosphere_profiles_metric_id_enabled", "metric_id", "enabled"),
        sa.Index("ix_ionosphere_profiles_event_id", "event_id"),
        MYSQL_TABLE_ARGS,
    )

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    metric_id: Mapped[int] = mapped_column(sa.ForeignKey("metrics.id"))
    label: Mapped[str] = mapped_column(sa.String(16))
    event_id: Mapped[str | None] = mapped_column(EVENT_ID, nullable=True)
    anchor: Mapped[float] = mapped_column(sa.Double)
    start: Mapped[float] = mapped_column(sa.Double)
    resolution: Mapped[float] = mapped_column(sa.Double)
    points: Mapped[int] = mapped_column(sa.Integer)
    series: Mapped[bytes] = mapped_column(WINDOW)
    features: Mapped[dict[str, float]] = mapped_column(sa.JSON)
    features_version: Mapped[int] = mapped_column(sa.Integer)
    who: Mapped[str] = mapped_column(sa.String(255))
    note: Mapped[str] = mapped_column(sa.Text)
    created: Mapped[float] = mapped_column(sa.Double)
    enabled: Mapped[bool] = mapped_column(sa.Boolean)
    validated: Mapped[bool] = mapped_column(sa.Boolean)
    matched_count: Mapped[int] = mapped_column(sa.Integer)
    last_matched: Mapped[float | None] = mapped_column(sa.Double, nullable=True)
    parent_id: Mapped[int | None] = mapped_column(sa.Integer, nullable=True)
    disabled_reason: Mapped[str] = mapped_column(sa.Text)


class IonosphereFeedback(Base):
    """An operator's word on an anomaly: not anomalous, or a real anomaly."""

    __tablename__ = "ionosphere_feedback"
    __table_args__ = (
        sa.CheckConstraint(IONOSPHERE_LABELS, name="label"),
        sa.Index("ix_ionosphere_feedback_event_id", "event_id"),
        MYSQL_TABLE_ARGS,
    )

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(EVENT_ID)
    metric_id: Mapped[int] = mapped_column(sa.ForeignKey("metrics.id"))
    label: Mapped[str] = mapped_column(sa.String(16))
    who: Mapped[str] = mapped_column(sa.String(255))
    note: Mapped[str] = mapped_column(sa.Text)
    created: Mapped[float] = mapped_column(sa.Double)
    profile_id: Mapped[int | None] = mapped_column(sa.Integer, nullable=True)


class IonosphereMatch(Base):
    """A candidate (event_id) matched a profile: applied (the veto was in force) or shadow;
    validated NULL until an operator reviews it (False: a wrong match)."""

    __tablename__ = "ionosphere_matches"
    __table_args__ = (
        sa.UniqueConstraint("event_id", "profile_id"),
        sa.Index("ix_ionosphere_matches_profile_id_timestamp", "profile_id", "timestamp"),
        sa.Index("ix_ionosphere_matches_metric_id_timestamp", "metric_id", "timestamp"),
        MYSQL_TABLE_ARGS,
    )

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    profile_id: Mapped[int] = mapped_column(sa.ForeignKey("ionosphere_profiles.id"))
    metric_id: Mapped[int] = mapped_column(sa.ForeignKey("metrics.id"))
    event_id: Mapped[str] = mapped_column(EVENT_ID)
    timestamp: Mapped[float] = mapped_column(sa.Double)
    method: Mapped[str] = mapped_column(sa.String(16))
    similarity: Mapped[float] = mapped_column(sa.Double)
    figures: Mapped[dict[str, float]] = mapped_column(sa.JSON)
    applied: Mapped[bool] = mapped_column(sa.Boolean)
    created: Mapped[float] = mapped_column(sa.Double)
    validated: Mapped[bool | None] = mapped_column(sa.Boolean, nullable=True)
    reviewed_by: Mapped[str] = mapped_column(sa.String(255))


ionosphere_profiles = metadata.tables["ionosphere_profiles"]
ionosphere_feedback = metadata.tables["ionosphere_feedback"]
ionosphere_matches = metadata.tables["ionosphere_matches"]
