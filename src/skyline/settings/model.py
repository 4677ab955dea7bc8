"""Every setting Skyline reads, with its type, default and meaning.

Upstream Skyline's names stay top-level UPPERCASE; settings new to this project live in one
lower-case table per component. docs/settings.md is checked against this module by a test.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from skyline.core.errors import PatternError
from skyline.core.patterns import validate as validate_pattern
from skyline.settings.alerts import (
    AlertersSettings,
    AlertRule,
    check_channel_ready,
    check_rules,
)
from skyline.settings.analyzer import (
    DEFAULT_ALGORITHMS,
    AnalyzerSettings,
    CustomAlgorithmSettings,
    check_analyzer,
)
from skyline.settings.boundary import BoundaryAlerterOpts, BoundaryRule
from skyline.settings.ionosphere import IonosphereSettings
from skyline.settings.luminosity import LuminositySettings
from skyline.settings.mirage import MirageSettings
from skyline.settings.thunder import ThunderCheck, ThunderOpts, validate_checks
from skyline.settings.vista import VistaFetch, VistaSettings
from skyline.settings.webapp import MIN_PASSWORD_LENGTH, USERNAME_PATTERN, WebappSettings

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


class HorizonSettings(_Section):
    """[horizon]: the TCP/UDP listeners (Graphite plaintext and pickle, msgpack, StatsD); their
    address is HORIZON_IP, the pickle and msgpack ports PICKLE_PORT and UDP_PORT."""

    plaintext_port: int = Field(
        2003, ge=0, le=65535,
        description="TCP port of the Graphite plaintext listener (name value timestamp lines); "
        "0 turns it off.",
    )
    plaintext_udp_port: int = Field(
        2003, ge=0, le=65535,
        description="UDP port of the Graphite plaintext listener (whole lines per datagram); "
        "0 turns it off.",
    )
    statsd_port: int = Field(
        8125, ge=0, le=65535, description="UDP port of the StatsD listener; 0 turns it off."
    )
    max_frame_bytes: int = Field(
        4_194_304, ge=1024, le=268_435_456,
        description="Largest Graphite pickle frame accepted, in bytes; a larger one is counted "
        "and its connection closed.",
    )
    max_line_bytes: int = Field(
        16_384, ge=256, le=1_048_576,
        description="Longest Graphite plaintext line accepted, in bytes; a longer one is "
        "skipped to its end and counted.",
    )
    max_connections: int = Field(
        1024, ge=1, le=1_000_000,
        description="Most TCP connections open at once per listener; more are closed at once "
        "and counted.",
    )
    idle_timeout: float = Field(
        300.0, gt=0, le=86400,
        description="Seconds a TCP connection may send nothing before it is closed and "
        "counted (relays reconnect when they next have data).",
    )
    max_buffered_bytes: int = Field(
        67_108_864, ge=65_536, le=17_179_869_184,
        description="Bytes of unfinished lines and frames all connections of one TCP "
        "listener may hold together; a connection whose partial data would pass it is closed "
        "and counted.",
    )
    drain_timeout: float = Field(
        5.0, ge=0, le=300,
        description="At shutdown, seconds to go on reading connections after telling the "
        "senders (a TCP half-close) so that nothing they wrote is lost; those still sending "
        "then are closed.",
    )
    udp_receive_buffer: int = Field(
        8_388_608, ge=65_536, le=1_073_741_824,
        description="Kernel receive buffer (SO_RCVBUF) asked for each UDP listener, so "
        "bursts wait in the kernel instead of being dropped; the kernel may grant less "
        "(net.core.rmem_max). Kernel drops are counted (<listener>_kernel_drops).",
    )


class StatsdSettings(_Section):
    """[statsd]: aggregation of StatsD input into metrics, as Etsy's statsd does."""

    flush_interval: float = Field(
        10.0, ge=1, le=3600,
        description="Seconds over which StatsD input is aggregated; each flush writes one point "
        "per aggregate, stamped with the flush time.",
    )
    prefix: str = Field(
        "stats", pattern=r"^[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)*$",
        description="Namespace put before every StatsD metric: <prefix>.counters.<name>.count, "
        "<prefix>.gauges.<name>, <prefix>.timers.<name>.mean, <prefix>.sets.<name>.count.",
    )
    percentiles: list[float] = Field(
        default_factory=lambda: [90.0],
        description="Percentiles computed for timers and histograms (count_p, mean_p, upper_p, "
        "sum_p over the lowest p% of the values; 99.9 is named 99_9).",
    )
    delete_idle: bool = Field(
        False,
        description="Write nothing for a name that received nothing in an interval; false (as "
        "statsd's default): counters, timers and sets write zeros, gauges their last value.",
    )
    forget_after: float = Field(
        3600.0, gt=0, le=30 * 86400,
        description="Seconds after which a name that received nothing is forgotten (no more "
        "zeros or last values written for it), so one-off names do not live for ever.",
    )
    max_names: int = Field(
        100_000, ge=100, le=10_000_000,
        description="Most StatsD names aggregated at once; new names beyond it are refused "
        "and counted (bad input cannot grow memory without bound).",
    )

    @field_validator("percentiles")
    @classmethod
    def _percentiles(cls, v: list[float]) -> list[float]:
        for p in v:
            if not 0 < p <= 100:
                raise ValueError(f"percentile {p} is not in (0, 100]")
        return v


_KAFKA_TOPIC = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
#: consumer properties the at-least-once consumer owns
_KAFKA_OWN_OPTIONS = frozenset(("bootstrap.servers", "group.id", "enable.auto.commit",
                                "enable.auto.offset.store", "sasl.password"))


class FluxSettings(_Section):
    """[flux]: HTTP ingest (Skyline JSON API, Prometheus remote_write, Influx line protocol,
    OTLP) on the web app's port."""

    max_body_bytes: int = Field(
        10_485_760, ge=1024, le=1_073_741_824,
        description="Largest request body accepted, in bytes, both as sent and after "
        "decompression (gzip, snappy); larger requests are refused with 413.",
    )
    max_preauth_body_bytes: int = Field(
        65_536, ge=1024, le=10_485_760,
        description="Largest body (as sent and decompressed) of a JSON POST that carries its "
        "key only inside the body: it must be read before the key is known, so it is kept "
        "small; send the key in a header to post more.",
    )
    max_gzip_members: int = Field(
        64, ge=1, le=100_000,
        description="Most gzip members in one body (`gzip -c a b` makes two; clients send "
        "one); more answer 400, so a body of empty members cannot cost a decompressor each.",
    )
    parse_processes: int = Field(
        1, ge=0, le=16,
        description="Processes that parse large bodies (JSON, Influx line protocol, "
        "remote_write; 256 KiB and up), so parsing never holds the web app's interpreter "
        "(its UI, API and alerters); started on the first large body. 0: parse them in "
        "threads of the web app's process.",
    )
    tenant_header: str = Field(
        "X-Scope-OrgID",
        description="HTTP header whose value, when a request has it, becomes one more "
        "namespace element after the key's prefix (prefix.tenant.name); empty: ignored.",
    )
    otlp_resource_attributes: list[str] = Field(
        default_factory=lambda: ["service.name", "service.namespace", "deployment.environment",
                                 "host.name"],
        description="OTLP resource attributes kept as labels of every series of the resource "
        "(dots become underscores: service.name -> service_name); the others are dropped.",
    )
    otlp_max_series: int = Field(
        1_000_000, ge=1000,
        description="Most OTLP cumulative sums whose last value is remembered to turn them "
        "into deltas; beyond it the least recently updated are forgotten.",
    )

    kafka_brokers: str = Field(
        "",
        description="Kafka bootstrap servers (host:port,...) flux consumes flux.kafka_topics "
        "from (needs the `kafka` extra: pip install 'skyline-anomaly[kafka]'); empty: no "
        "Kafka ingest. See docs/protocols.md#kafka.",
    )
    kafka_topics: dict[str, Literal["plaintext", "json", "influx"]] = Field(
        default_factory=dict,
        description="Topic -> the format of its messages: plaintext (Graphite lines), json "
        "(a Skyline JSON body: {\"metrics\": [...]} or one metric) or influx (line protocol "
        "at flux.kafka_influx_precision).",
    )
    kafka_group: str = Field(
        "skyline", min_length=1, max_length=255,
        description="Kafka consumer group: Skylines with the same group share the topics' "
        "partitions; offsets are committed for it only once the points are stored.",
    )
    kafka_influx_precision: Literal["ns", "us", "ms", "s"] = Field(
        "ns", description="Unit of the timestamps in influx topics.")
    kafka_max_messages: int = Field(
        5000, ge=1, le=100_000,
        description="Most messages read and submitted as one batch.",
    )
    kafka_options: dict[str, str] = Field(
        default_factory=dict,
        description="More librdkafka consumer properties (security.protocol, sasl.mechanism, "
        "sasl.username, ssl.ca.location, session.timeout.ms, ...); put the SASL password in "
        "flux.kafka_password.",
    )
    kafka_password: SecretStr | None = Field(
        None, json_schema_extra={"mask": "all"},
        description="SASL password for the Kafka brokers (librdkafka's sasl.password).")

    @field_validator("kafka_topics")
    @classmethod
    def _kafka_topics(cls, v: dict[str, str]) -> dict[str, str]:
        for topic in v:
            if not _KAFKA_TOPIC.match(topic):
                raise ValueError(f"{topic!r} is not a Kafka topic name (1 to 249 of "
                                 "A-Z a-z 0-9 . _ -)")
        return v

    @field_validator("kafka_options")
    @classmethod
    def _kafka_options(cls, v: dict[str, str]) -> dict[str, str]:
        for key in v:
            if key in _KAFKA_OWN_OPTIONS:
                raise ValueError(f"{key} is set by Skyline itself (at-least-once delivery "
                                 "needs it); see docs/protocols.md#kafka")
        return v

    @model_validator(mode="after")
    def _kafka_needs_topics(self) -> FluxSettings:
        if self.kafka_brokers.strip() and not self.kafka_topics:
            raise ValueError("flux.kafka_brokers is set but flux.kafka_topics is empty")
        return self


# a key's namespace prefix: dotted elements of the metric-name charset (skyline.ingest.names)
_PREFIX = re.compile(r"^[A-Za-z0-9_\-:+%/=@]+(\.[A-Za-z0-9_\-:+%/=@]+)*$")
_MIN_KEY_LENGTH = 16


class PanoramaSettings(_Section):
    """[panorama]: storing anomaly events in SQL."""

    claim_idle: float = Field(
        60.0, gt=0, le=86400,
        description="Seconds an event may stay unacknowledged (its consumer died, or the "
        "database was down) before a panorama takes it over and stores it again.",
    )
    retention_days: float = Field(
        0, ge=0,
        description="Days anomalies are kept in SQL; older ones are deleted in batches. "
        "0: kept for ever.",
    )
    retention_batch: int = Field(
        1000, ge=1, le=100_000,
        description="Anomalies deleted per statement, so a first clean-up of a large table "
        "never holds a long lock.",
    )
    retention_interval: float = Field(
        3600.0, gt=0, le=86400, description="Seconds between two retention passes."
    )


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_NESTED,
        case_sensitive=False,
        extra="forbid",
        validate_default=True,
    )
    # where load_settings found each setting: source -> dotted paths it set (settings/origins)
    _origins: dict[str, frozenset[str]] = PrivateAttr(default_factory=dict)
    _config_file: str | None = PrivateAttr(default=None)

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
    HORIZON_IP: str = Field(
        "127.0.0.1", min_length=1,
        description="Address Horizon's TCP and UDP listeners (Graphite plaintext and pickle, "
        "msgpack, StatsD) listen on; 0.0.0.0 for every interface.",
    )
    PICKLE_PORT: int = Field(
        2024, ge=0, le=65535,
        description="TCP port of the Graphite pickle listener (what carbon-relay sends with "
        "DESTINATION_PROTOCOL = pickle); 0 turns it off.",
    )
    UDP_PORT: int = Field(
        2025, ge=0, le=65535,
        description="UDP port of the msgpack listener ([name, [timestamp, value]] per "
        "datagram); 0 turns it off.",
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
    FLUX_API_KEYS: dict[str, str] = Field(
        default_factory=dict,
        json_schema_extra={"secret_keys": True},
        description="Flux keys and the namespace prefix of each ({key: prefix}): the prefix "
        "and a dot are put before every metric name posted with that key; an empty prefix "
        "adds nothing. Keys are secrets of at least 16 characters.",
    )
    FLUX_ALLOW_ANONYMOUS: bool = Field(
        False,
        description="Accept flux requests that carry no key (their names get no prefix); a "
        "wrong key is still refused.",
    )
    FLUX_MAX_METRICS_PER_POST: int = Field(
        450, ge=1, le=1_000_000,
        description="Most metrics in one flux JSON POST; more is refused with 413.",
    )
    ANALYZER_ENABLED: bool = Field(
        True,
        description="Analyse metrics; false: the analyzer runs (heartbeat, self-metrics) but "
        "analyses nothing, as upstream's hot standby.",
    )
    ANALYZER_PROCESSES: int = Field(
        1, ge=1, le=64,
        description="Analyzer worker processes; each fetches and analyses its share of the "
        "metrics over its own Redis connection.",
    )
    ANALYZER_OPTIMUM_RUN_DURATION: float = Field(
        60.0, gt=0, le=86400,
        description="Seconds between the starts of two analyzer runs. A run that takes longer "
        "is reported (log and the overruns counter) and the next one starts when it ends; "
        "runs never overlap.",
    )
    MAX_ANALYZER_PROCESS_RUNTIME: float = Field(
        180.0, gt=0, le=86400,
        description="Seconds a worker may spend on its share of one run before it is killed "
        "and replaced; its metrics are not analysed in that run.",
    )
    ALGORITHMS: list[str] = Field(
        default_factory=lambda: list(DEFAULT_ALGORITHMS),
        description="The algorithms of the ensemble, in the order they run: built-ins "
        "(docs/algorithms.md) and skyline.algorithms entry points.",
    )
    CONSENSUS: int = Field(
        6, ge=1,
        description="Algorithms that must say anomalous for a metric to be anomalous "
        "(algorithms that cannot judge a series abstain and count neither way).",
    )
    ANOMALY_SCORE_THRESHOLD: float = Field(
        0.7063, gt=0, le=1,
        description="With analyzer.detector \"score\", and with \"learning\" (the default) for a "
        "metric learnt for less than a day: a metric is anomalous "
        "when its anomaly score reaches this. The score is z / (1 + z) for z the standard "
        "deviations by which the last point leaves the range of the window's earlier points, "
        "or its step exceeds the largest earlier step (range_excess, docs/algorithms.md); "
        "0.7063 (z 2.4) is the threshold NAB's standard profile chose (docs/benchmarks.md).",
    )
    STALE_PERIOD: int = Field(
        500, ge=0,
        description="Seconds without a new point after which a metric is Stale and not "
        "analysed until points arrive again.",
    )
    MIN_TOLERABLE_LENGTH: int = Field(
        100, ge=1,
        description="Fewest points (at the analysis resolution) a series needs to be analysed; "
        "shorter ones are TooShort.",
    )
    MAX_TOLERABLE_BOREDOM: int = Field(
        100, ge=1,
        description="A series whose last this many points hold only BOREDOM_SET_SIZE distinct "
        "values is Boring and not analysed.",
    )
    BOREDOM_SET_SIZE: int = Field(
        1, ge=1, description="Distinct values that make the last MAX_TOLERABLE_BOREDOM Boring."
    )
    EXPIRATION_TIME: int = Field(
        3600, ge=0, le=30 * 86400,
        description="While a metric stays anomalous the analyzer emits one event for it per "
        "this many seconds (of the metric's own time); a recovered event closes it.",
    )
    MONOTONIC_METRIC_NAMESPACES: list[str] = Field(
        default_factory=list,
        description="Patterns of counters always analysed as their non-negative derivative "
        "(others are detected).",
    )
    NON_DERIVATIVE_MONOTONIC_METRICS: list[str] = Field(
        default_factory=list,
        description="Patterns of metrics never analysed as a derivative, even when they look "
        "like counters.",
    )
    CUSTOM_ALGORITHMS: dict[str, CustomAlgorithmSettings] = Field(
        default_factory=dict,
        description="Custom algorithms by function name, with upstream's fields "
        "(algorithm_source, algorithm_parameters, namespaces, consensus, "
        "max_execution_time, ...); each runs in a separate process (docs/analyzer.md).",
    )

    BOUNDARY_METRICS: list[BoundaryRule] = Field(
        default_factory=list,
        description="Boundary's rules: upstream's tuples (pattern, algorithm, "
        "EXPIRATION_TIME, MIN_AVERAGE, MIN_AVERAGE_SECONDS, TRIGGER_VALUE, ALERT_THRESHOLD, "
        "'alerter1|alerter2', [EXCLUDES]) or [[BOUNDARY_METRICS]] tables (docs/boundary.md). "
        "Per metric and algorithm the last matching rule applies. Empty: Boundary idles.",
    )
    BOUNDARY_ENABLE_ALERTS: bool = Field(
        True,
        description="Send Boundary's alerts (with ENABLE_ALERTS); false: its events are still "
        "stored and shown.",
    )
    BOUNDARY_OPTIMUM_RUN_DURATION: float = Field(
        60.0, gt=0, le=86400,
        description="Seconds between the starts of two Boundary runs; runs never overlap.",
    )
    BOUNDARY_ALERTER_OPTS: BoundaryAlerterOpts = Field(
        default_factory=BoundaryAlerterOpts,
        description="Per-channel limit of Boundary alerts: alerter_limit alerts per "
        "alerter_expiration_time seconds ({channel: n} tables; upstream's defaults).",
    )

    THUNDER_CHECKS: dict[str, dict[str, ThunderCheck]] = Field(
        default_factory=dict,
        description="Thunder's checks by app and check name (docs/thunder.md), each with "
        "run, expiry, channels (or upstream's alert_via_*) and its parameters; a check not "
        "listed runs with its defaults.",
    )
    THUNDER_OPTS: ThunderOpts = Field(
        default_factory=ThunderOpts,
        description="Thunder's channels (or upstream's alert_via_*), check interval and "
        "down_after.",
    )
    ALERT_ON_STALE_METRICS: list[str] = Field(
        default_factory=list,
        description="Namespace patterns Thunder watches for stale metrics: one event when "
        "metrics of a namespace stop sending for ALERT_ON_STALE_PERIOD (or their "
        "CUSTOM_STALE_PERIOD), one when they are back.",
    )
    ALERT_ON_STALE_PERIOD: int = Field(
        300, ge=1, le=30 * 86400,
        description="Seconds without a point after which a metric of ALERT_ON_STALE_METRICS "
        "is stale.",
    )
    CUSTOM_STALE_PERIOD: dict[str, int] = Field(
        default_factory=dict,
        description="Pattern -> seconds: the stale period of the metrics it matches (the first "
        "matching pattern wins) instead of STALE_PERIOD in Boundary's Stale pre-check; "
        "Thunder alerts after three quarters of it, as upstream.",
    )
    DO_NOT_ALERT_ON_STALE_METRICS: list[str] = Field(
        default_factory=list,
        description="Patterns of metrics never reported stale.",
    )

    VISTA_FETCH_METRICS: list[VistaFetch] = Field(
        default_factory=list,
        description="Remote Graphite targets and Prometheus queries Vista pulls: "
        "[[VISTA_FETCH_METRICS]] tables of source, url, query, metric, frequency, step, "
        "namespace_prefix, user, password, token, timeout, or upstream's tuples "
        "(docs/vista.md). Empty: Vista idles.",
    )
    VISTA_GRAPHITE_BATCH_SIZE: int = Field(
        20, ge=1, le=1000,
        description="Most plain Graphite paths of one remote fetched in one render request.",
    )
    VISTA_DO_NOT_SUBMIT_CURRENT_MINUTE: bool = Field(
        True,
        description="Never store a fetched point of the current, incomplete minute (it is "
        "fetched again, complete, next time).",
    )

    LUMINOSITY_ENABLED: bool = Field(
        True, description="Run Luminosity: related metrics of anomalies, and incidents.",
    )
    CORRELATE_ALERTS_ONLY: bool = Field(
        True,
        description="Correlate only the anomalies of metrics that an ALERTS rule matches "
        "(incidents group every metric either way).",
    )
    LUMINOSITY_CORRELATE_ALL: bool = Field(
        False, description="Correlate every anomaly (overrides CORRELATE_ALERTS_ONLY).",
    )
    LUMINOSITY_CORRELATE_NAMESPACES_ONLY: list[str] = Field(
        default_factory=list,
        description="Namespace patterns: an anomalous metric matching one is correlated only "
        "with the metrics matching the same pattern.",
    )
    LUMINOSITY_CORRELATION_MAPS: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Named lists of namespace patterns: an anomalous metric in a map is "
        "correlated only with the map's metrics, and metrics of one map are related for "
        "incident grouping.",
    )
    LUMINOSITY_RELATED_TIME_PERIOD: int = Field(
        240, ge=0, le=86400,
        description="Seconds either side of an anomaly within which a related metric's own "
        "incident began for it to be flagged anomalous.",
    )
    LUMINOL_CROSS_CORRELATION_THRESHOLD: float = Field(
        0.9, gt=0, le=1,
        description="Smallest absolute (lag-shifted) Pearson coefficient of a related metric.",
    )

    MIRAGE_ANALYSIS_RESOLUTION: int = Field(
        600, ge=10, le=86400,
        description="Seconds per bucket of the long history Mirage judges (mirage.history_days "
        "of each metric, kept by the roomba).",
    )
    MIRAGE_CHECK_REPETITIVE_DAILY_PEAKS: int = Field(
        3, ge=0, le=30,
        description="The Mirage stage vetoes an anomaly when at least this many earlier days "
        "had a similar peak at the same time of day and this one is within their range "
        "(needs more than 5.25 days of history); 0: off.",
    )
    MIRAGE_PERIODIC_CHECK: bool = Field(
        False,
        description="Mirage also judges the newest point of metrics matching "
        "MIRAGE_PERIODIC_CHECK_NAMESPACES every MIRAGE_PERIODIC_CHECK_INTERVAL seconds, "
        "when the analyzer did not flag it (needs mirage in analyzer.stages and a "
        "second-order resolution for those metrics); anomalous on its hours -> an anomaly.",
    )
    MIRAGE_PERIODIC_CHECK_INTERVAL: int = Field(
        3600, ge=60, le=604800,
        description="Seconds (of the metric's own time) between two periodic Mirage checks "
        "of a metric.",
    )
    MIRAGE_PERIODIC_CHECK_NAMESPACES: list[str] = Field(
        default_factory=list,
        description="Namespace patterns of the metrics MIRAGE_PERIODIC_CHECK covers.",
    )
    MIRAGE_ALWAYS_METRICS: list[str] = Field(
        default_factory=list,
        description="Namespace patterns of metrics whose newest point Mirage judges at every "
        "analysis, flagged by the analyzer or not (same conditions as MIRAGE_PERIODIC_CHECK).",
    )
    MIRAGE_AUTOFILL_TOOSHORT: bool = Field(
        False,
        description="When a metric whose [[mirage.namespaces]] names a remote source has too "
        "little long history of its own, the Mirage stage writes what the remote gave into "
        "the metric's long history once (older buckets only), so later checks need no fetch.",
    )

    # new top-level names of the foundation ------------------------------------------------
    DATA_DIR: Path = Field(
        Path("var"),
        description="Directory for the embedded Redis data and socket and the default SQLite "
        "database; relative paths are relative to the working directory. Left at the default, "
        "commands other than run use ./var when it holds data, else the directory the last "
        "`skyline run` recorded ($XDG_STATE_HOME/skyline/instance.json).",
    )
    REDIS_URL: SecretStr | None = Field(
        None,
        description="External Redis (redis://, rediss:// or unix://): a standalone server, or "
        "any node of a Redis Cluster (detected at start, the other nodes discovered; boundary, "
        "luminosity, thunder and vista refuse to start on one: docs/scaling.md). Unset: Skyline runs an embedded Redis under DATA_DIR.",
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
    PANORAMA_EXPIRY_TIME: int = Field(
        900, ge=0, le=30 * 86400,
        description="Panorama stores at most one anomalous event per metric and source per "
        "this many seconds (upstream's sampling); 0: every event.",
    )
    ENABLE_ALERTS: bool = Field(
        True, description="Send alerts; false: anomalies are still stored, no channel is used."
    )
    ALERTS: list[AlertRule] = Field(
        default_factory=list,
        description="Alert rules, [[ALERTS]] tables of pattern, channel, expiration and "
        "options; per channel the first matching rule applies (docs/alerts.md).",
    )
    WEBAPP_PUBLIC_URL: str = Field(
        "",
        description="Base URL people reach the web app at, for links in alerts "
        "(https://skyline.example.com); empty: http://WEBAPP_IP:WEBAPP_PORT.",
    )
    INSTANCE_NAME: str = Field(
        "", description="Name of this Skyline instance in self-metrics; empty: the host name."
    )
    WEBAPP_AUTH_ENABLED: bool = Field(
        True,
        description="Require a login (session or API token) for the web app and API; false "
        "lets anyone who reaches WEBAPP_PORT read and change everything (logged loudly). "
        "Flux routes, /metrics and /api/v1/health never need one.",
    )
    WEBAPP_AUTH_USER: str = Field(
        "", pattern=r"^$|" + USERNAME_PATTERN,
        description="Upstream's single web user: with WEBAPP_AUTH_USER_PASSWORD, an admin "
        "created at start and kept at that password (more users: [webapp] users).",
    )
    WEBAPP_AUTH_USER_PASSWORD: SecretStr | None = Field(
        None, json_schema_extra={"mask": "all"},
        description="Password of WEBAPP_AUTH_USER.",
    )
    WEBAPP_USER_TIMEZONE: bool = Field(
        False,
        description="Pages show times in each browser's own time zone instead of UTC (the "
        "default); either way a person can switch in the page footer, remembered per browser.",
    )

    # component tables -------------------------------------------------------------------------
    redis: RedisSettings = Field(default_factory=RedisSettings, description="[redis] table.")
    database: DatabaseSettings = Field(
        default_factory=DatabaseSettings, description="[database] table."
    )
    roomba: RoombaSettings = Field(default_factory=RoombaSettings, description="[roomba] table.")
    ingest: IngestSettings = Field(default_factory=IngestSettings, description="[ingest] table.")
    panorama: PanoramaSettings = Field(
        default_factory=PanoramaSettings, description="[panorama] table."
    )
    telemetry: TelemetrySettings = Field(
        default_factory=TelemetrySettings, description="[telemetry] table."
    )
    flux: FluxSettings = Field(default_factory=FluxSettings, description="[flux] table.")
    horizon: HorizonSettings = Field(
        default_factory=HorizonSettings, description="[horizon] table."
    )
    statsd: StatsdSettings = Field(default_factory=StatsdSettings, description="[statsd] table.")
    alerters: AlertersSettings = Field(
        default_factory=AlertersSettings, description="[alerters] table."
    )
    analyzer: AnalyzerSettings = Field(
        default_factory=AnalyzerSettings, description="[analyzer] table."
    )
    webapp: WebappSettings = Field(
        default_factory=WebappSettings, description="[webapp] table."
    )
    vista: VistaSettings = Field(default_factory=VistaSettings, description="[vista] table.")
    mirage: MirageSettings = Field(
        default_factory=MirageSettings, description="[mirage] table."
    )
    luminosity: LuminositySettings = Field(
        default_factory=LuminositySettings, description="[luminosity] table."
    )
    ionosphere: IonosphereSettings = Field(
        default_factory=IonosphereSettings, description="[ionosphere] table."
    )

    @field_validator("SKIP_LIST", "DO_NOT_SKIP_LIST", "LUMINOSITY_CORRELATE_NAMESPACES_ONLY",
                     "MIRAGE_PERIODIC_CHECK_NAMESPACES", "MIRAGE_ALWAYS_METRICS",
                     "ALERT_ON_STALE_METRICS", "DO_NOT_ALERT_ON_STALE_METRICS")
    @classmethod
    def _patterns(cls, v: list[str]) -> list[str]:
        for p in v:
            try:
                validate_pattern(p)
            except PatternError as e:
                raise ValueError(str(e)) from None
        return v

    @field_validator("CUSTOM_STALE_PERIOD")
    @classmethod
    def _custom_stale(cls, v: dict[str, int]) -> dict[str, int]:
        for p, seconds in v.items():
            try:
                validate_pattern(p)
            except PatternError as e:
                raise ValueError(str(e)) from None
            if seconds < 1:
                raise ValueError(f"{p}: {seconds} must be at least 1 second")
        return v

    @field_validator("THUNDER_CHECKS")
    @classmethod
    def _thunder_checks(cls, v: dict[str, dict[str, ThunderCheck]]
                        ) -> dict[str, dict[str, ThunderCheck]]:
        return validate_checks(v)

    @field_validator("LUMINOSITY_CORRELATION_MAPS")
    @classmethod
    def _maps(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        for name, patterns in v.items():
            for p in patterns:
                try:
                    validate_pattern(p)
                except PatternError as e:
                    raise ValueError(f"map {name!r}: {e}") from None
        return v

    @model_validator(mode="after")
    def _alert_rules(self) -> Settings:
        check_rules(self.ALERTS, self.alerters)
        for i, r in enumerate(self.BOUNDARY_METRICS):
            for c in r.channels:
                check_channel_ready(f"BOUNDARY_METRICS.{i}.channels of rule {i + 1} (pattern "
                                    f"{r.pattern!r})", c, {}, self.alerters)
        for c in self.THUNDER_OPTS.channels:
            check_channel_ready("THUNDER_OPTS.channels", c, {}, self.alerters)
        for app, checks in self.THUNDER_CHECKS.items():
            for name, chk in checks.items():
                for c in chk.channels or []:
                    check_channel_ready(f"THUNDER_CHECKS.{app}.{name}.channels", c, {},
                                        self.alerters)
        return self

    @field_validator("WEBAPP_PUBLIC_URL")
    @classmethod
    def _public_url(cls, v: str) -> str:
        if v and not re.match(r"^https?://[^/\s]+", v):
            raise ValueError("must start with http:// or https://")
        return v.rstrip("/")

    @model_validator(mode="after")
    def _analyzer(self) -> Settings:
        check_analyzer(self)
        return self

    @model_validator(mode="after")
    def _watermarks(self) -> Settings:
        if self.ingest.low_watermark >= self.ingest.high_watermark:
            raise ValueError("ingest.low_watermark must be below ingest.high_watermark")
        if self.ingest.high_watermark > self.redis.write_buffer_max_points:
            raise ValueError(
                "ingest.high_watermark must not exceed redis.write_buffer_max_points")
        return self

    @field_validator("FLUX_API_KEYS")
    @classmethod
    def _flux_keys(cls, v: dict[str, str]) -> dict[str, str]:
        for i, (key, prefix) in enumerate(v.items(), 1):
            # the key itself never goes into a message: it is a secret
            if len(key) < _MIN_KEY_LENGTH or any(c.isspace() for c in key):
                raise ValueError(f"key number {i} must be at least {_MIN_KEY_LENGTH} "
                                 "characters without spaces")
            if prefix and not _PREFIX.match(prefix):
                raise ValueError(f"prefix {prefix!r} of key number {i} is not a dotted "
                                 "metric namespace")
        return v

    @model_validator(mode="after")
    def _auth_user(self) -> Settings:
        pw = self.WEBAPP_AUTH_USER_PASSWORD
        if bool(self.WEBAPP_AUTH_USER) != (pw is not None):
            raise ValueError("WEBAPP_AUTH_USER and WEBAPP_AUTH_USER_PASSWORD go together")
        if pw is not None and len(pw.get_secret_value()) < MIN_PASSWORD_LENGTH:
            raise ValueError(f"WEBAPP_AUTH_USER_PASSWORD is shorter than {MIN_PASSWORD_LENGTH} "
                             "characters")
        if any(u.username == self.WEBAPP_AUTH_USER for u in self.webapp.users):
            raise ValueError(f"user {self.WEBAPP_AUTH_USER!r} is both WEBAPP_AUTH_USER and in "
                             "webapp.users")
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
    def public_url(self) -> str:
        """Where links in alerts point."""
        if self.WEBAPP_PUBLIC_URL:
            return self.WEBAPP_PUBLIC_URL
        host = self.WEBAPP_IP if self.WEBAPP_IP not in ("0.0.0.0", "::") else "127.0.0.1"
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.WEBAPP_PORT}"

    @property
    def instance(self) -> str:
        if self.INSTANCE_NAME:
            return self.INSTANCE_NAME
        import socket

        return socket.gethostname()
