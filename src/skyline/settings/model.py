"""Every setting Skyline reads, with its type, default and meaning.

Upstream Skyline's names stay top-level UPPERCASE; settings new to this project live in one
lower-case table per component. docs/settings.md is checked against this module by a test.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from skyline.core.errors import PatternError
from skyline.core.patterns import validate as validate_pattern

ENV_PREFIX = "SKYLINE_"
ENV_NESTED = "__"
_REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
_SQL_SCHEMES = {"sqlite", "mysql", "mariadb", "postgresql", "postgres"}


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class RedisSettings(_Section):
    """[redis]: the hot store."""

    socket_name: str = Field(
        "redis.sock",
        description="File name, inside DATA_DIR, of the embedded Redis server's unix socket.",
    )
    read_chunk_size: int = Field(
        1000, ge=1, le=100_000,
        description="Series fetched per pipelined round trip when reading many metrics.",
    )
    write_batch_size: int = Field(
        10_000, ge=1, le=1_000_000,
        description="Points sent per pipelined round trip by the write path.",
    )
    write_buffer_max_points: int = Field(
        5_000_000, ge=1000,
        description="Points the write path keeps in memory while Redis is unreachable; "
        "beyond this new points are refused and counted, accepted ones are never dropped.",
    )
    retry_max_backoff: float = Field(
        30.0, gt=0, le=3600,
        description="Longest wait, in seconds, between reconnection attempts when Redis or the "
        "SQL database is down.",
    )
    connect_timeout: float = Field(
        5.0, gt=0, le=300,
        description="Seconds to wait for a Redis connection or reply before treating it as down.",
    )
    anomaly_stream_maxlen: int = Field(
        100_000, ge=1000,
        description="Approximate number of anomaly events kept in the Redis stream.",
    )


class DatabaseSettings(_Section):
    """[database]: the SQL event store."""

    upgrade_on_start: bool = Field(
        True, description="Apply pending schema migrations when a service starts."
    )
    pool_size: int = Field(5, ge=1, le=100, description="SQL connection pool size (not SQLite).")


class RoombaSettings(_Section):
    """[roomba]: trimming of the hot store (upstream's roomba)."""

    interval: float = Field(
        60.0, gt=0, le=86400, description="Seconds between the starts of two trimming passes."
    )
    max_keys_per_pass: int = Field(
        20_000, ge=1,
        description="Most series one pass trims; the next pass continues where it stopped.",
    )
    batch_size: int = Field(
        500, ge=1, le=100_000, description="Series read and rewritten per round trip."
    )


class TelemetrySettings(_Section):
    """[telemetry]: Skyline's own counters (self-metrics) and heartbeats."""

    flush_interval: float = Field(
        10.0, gt=0, le=3600,
        description="Seconds between flushes of each component's counters to Redis.",
    )
    series_interval: float = Field(
        60.0, gt=0, le=86400,
        description="Seconds between writes of the counters as skyline.<component>.<counter> "
        "series, so Skyline analyses itself.",
    )
    series_prefix: str = Field(
        "skyline", min_length=1, description="First element of the self-metric series names."
    )
    heartbeat_ttl: int = Field(
        120, ge=10, description="Seconds a component's heartbeat stays valid in Redis."
    )


class IngestSettings(_Section):
    """[ingest]: the write path shared by every protocol (horizon and flux)."""

    max_age: int | None = Field(
        None, ge=1,
        description="Oldest accepted timestamp, in seconds before now; unset: FULL_DURATION "
        "(anything older would be trimmed at once).",
    )
    max_future: int = Field(
        300, ge=0, le=86400,
        description="Newest accepted timestamp, in seconds after now (clock skew allowance).",
    )
    max_name_length: int = Field(
        1024, ge=16, le=65536,
        description="Longest metric name accepted, not counting a {label} part.",
    )
    max_labels_length: int = Field(
        4096, ge=16, le=65536, description="Longest {label=\"value\",...} part of a name."
    )
    flush_interval: float = Field(
        1.0, gt=0, le=60,
        description="Longest time, in seconds, an accepted point waits in memory before it "
        "is written to the hot store.",
    )
    high_watermark: int = Field(
        1_000_000, ge=1000,
        description="Buffered points above which TCP listeners stop reading (backpressure) "
        "and UDP packets are dropped and counted.",
    )
    low_watermark: int = Field(
        500_000, ge=100, description="Buffered points below which paused listeners resume."
    )
    known_metrics_refresh: float = Field(
        60.0, gt=0,
        description="Seconds between reloads of the metric index used by the cardinality "
        "guards.",
    )


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_NESTED,
        case_sensitive=False,
        extra="forbid",
        validate_default=True,
    )

    # upstream names --------------------------------------------------------------------
    FULL_DURATION: int = Field(
        86400, ge=600, le=30 * 86400,
        description="Seconds of history kept in the hot store and analysed for every metric.",
    )
    ROOMBA_GRACE_TIME: int = Field(
        600, ge=0, le=86400,
        description="Seconds kept beyond FULL_DURATION before a point is trimmed.",
    )
    WEBAPP_IP: str = Field(
        "127.0.0.1", min_length=1,
        description="Address the web app (UI, API, flux) listens on.",
    )
    WEBAPP_PORT: int = Field(
        1500, ge=0, le=65535,
        description="Port of the web app (UI, API, flux routes, /metrics); 0 turns it off.",
    )

    SKIP_LIST: list[str] = Field(
        default_factory=list,
        description="Namespace patterns of metrics that are not stored or analysed.",
    )
    DO_NOT_SKIP_LIST: list[str] = Field(
        default_factory=list,
        description="Namespace patterns kept even when a SKIP_LIST pattern matches.",
    )
    MAX_METRICS: int = Field(
        1_000_000, ge=0,
        description="Most distinct metrics the hot store accepts; points of new names beyond "
        "it are refused and counted, existing metrics keep flowing. 0: no limit.",
    )
    MAX_NEW_METRICS_PER_MINUTE: int = Field(
        100_000, ge=0,
        description="Most new metric names accepted per minute; beyond it points of new "
        "names are refused and counted. 0: no limit.",
    )

    # new top-level names of the foundation ------------------------------------------------
    DATA_DIR: Path = Field(
        Path("var"),
        description="Directory for the embedded Redis data and socket and the default SQLite "
        "database; relative paths are relative to the working directory.",
    )
    REDIS_URL: SecretStr | None = Field(
        None,
        description="External Redis (redis://, rediss:// or unix://). Unset: Skyline runs an "
        "embedded Redis under DATA_DIR.",
    )
    DATABASE_URL: SecretStr | None = Field(
        None,
        description="SQLAlchemy URL of the event store (mysql+pymysql://, "
        "postgresql+psycopg://, sqlite:///). Unset: sqlite under DATA_DIR/skyline.db.",
    )
    LOG_LEVEL: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field(
        "INFO", description="Lowest level of log record written to stderr."
    )
    LOG_FORMAT: Literal["text", "json"] = Field(
        "text", description="Log lines as human text or one JSON object per line."
    )
    INSTANCE_NAME: str = Field(
        "", description="Name of this Skyline instance in self-metrics; empty: the host name."
    )

    # component tables -------------------------------------------------------------------------
    redis: RedisSettings = Field(default_factory=RedisSettings, description="[redis] table.")
    database: DatabaseSettings = Field(
        default_factory=DatabaseSettings, description="[database] table."
    )
    roomba: RoombaSettings = Field(default_factory=RoombaSettings, description="[roomba] table.")
    ingest: IngestSettings = Field(default_factory=IngestSettings, description="[ingest] table.")
    telemetry: TelemetrySettings = Field(
        default_factory=TelemetrySettings, description="[telemetry] table."
    )

    @field_validator("SKIP_LIST", "DO_NOT_SKIP_LIST")
    @classmethod
    def _patterns(cls, v: list[str]) -> list[str]:
        for p in v:
            try:
                validate_pattern(p)
            except PatternError as e:
                raise ValueError(str(e)) from None
        return v

    @model_validator(mode="after")
    def _watermarks(self) -> Settings:
        if self.ingest.low_watermark >= self.ingest.high_watermark:
            raise ValueError("ingest.low_watermark must be below ingest.high_watermark")
        if self.ingest.high_watermark > self.redis.write_buffer_max_points:
            raise ValueError(
                "ingest.high_watermark must not exceed redis.write_buffer_max_points")
        return self

    @field_validator("REDIS_URL")
    @classmethod
    def _redis_url(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and not v.get_secret_value().startswith(_REDIS_SCHEMES):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return v

    @field_validator("DATABASE_URL")
    @classmethod
    def _database_url(cls, v: SecretStr | None) -> SecretStr | None:
        if v is None:
            return v
        scheme = v.get_secret_value().split("://", 1)[0]
        if "://" not in v.get_secret_value() or scheme.split("+")[0] not in _SQL_SCHEMES:
            raise ValueError(
                "must be an SQLAlchemy URL: sqlite:///PATH, mysql+pymysql://... "
                "or postgresql+psycopg://..."
            )
        return v

    # derived values ---------------------------------------------------------------------------
    @property
    def data_dir(self) -> Path:
        return self.DATA_DIR.expanduser().resolve()

    @property
    def retention(self) -> int:
        """Seconds of points the hot store keeps."""
        return self.FULL_DURATION + self.ROOMBA_GRACE_TIME

    @property
    def database_url(self) -> str:
        if self.DATABASE_URL is not None:
            return self.DATABASE_URL.get_secret_value()
        return f"sqlite:///{self.data_dir / 'skyline.db'}"

    @property
    def ingest_max_age(self) -> int:
        return self.ingest.max_age if self.ingest.max_age is not None else self.FULL_DURATION

    @property
    def instance(self) -> str:
        if self.INSTANCE_NAME:
            return self.INSTANCE_NAME
        import socket

        return socket.gethostname()
