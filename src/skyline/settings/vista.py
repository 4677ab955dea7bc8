"""Vista's settings: the remote metrics to pull (VISTA_FETCH_METRICS) and the [vista] table."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

# a namespace prefix: dotted elements of the metric-name charset (skyline.ingest.names)
_PREFIX = re.compile(r"^[A-Za-z0-9_\-:+%/=@]+(\.[A-Za-z0-9_\-:+%/=@]+)*$")
_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
#: labels the remote_write sender sets itself
_WRITE_OWN_LABELS = {"metric", "source", "status"}
# upstream's tuple: (remote_host, source, frequency, remote_target, graphite_target, uri,
# namespace_prefix, api_key, token, user, password, (populate_at_resolutions...))
_TUPLE_FIELDS = ("url", "source", "frequency", "query", "metric", "uri", "namespace_prefix",
                 "api_key", "token", "user", "password", "populate_at_resolutions")


class VistaFetch(BaseModel):
    """One remote query Vista pulls: a [[VISTA_FETCH_METRICS]] table, or upstream's tuple."""

    model_config = ConfigDict(extra="forbid", validate_default=True)

    source: Literal["graphite", "prometheus"] = Field(
        description="graphite (render API, JSON) or prometheus (query_range).")
    url: str = Field(
        description="Base URL of the remote, with a path prefix if it is served under one "
        "(http://prometheus:9090, https://graphite.example.com/graphite).")
    query: str = Field(
        min_length=1,
        description="Graphite target (a path, a glob, or a function) or PromQL expression.")
    metric: str = Field(
        "",
        description="Name the series is stored as: for Graphite, when the target gives one "
        "series (default: the series' own name); for Prometheus, when the result has no "
        "__name__ (an expression); its labels are kept.")
    frequency: float = Field(60.0, ge=10, le=86400, description="Seconds between fetches.")
    step: float | None = Field(
        None, gt=0, le=86400,
        description="Prometheus' query_range step in seconds; default: the frequency.")
    namespace_prefix: str = Field(
        "", description="Dotted prefix put with a dot before every name fetched.")
    user: str = Field("", description="HTTP basic auth user.")
    password: SecretStr | None = Field(None, json_schema_extra={"mask": "all"},
                                       description="HTTP basic auth password.")
    token: SecretStr | None = Field(None, json_schema_extra={"mask": "all"},
                                    description="Bearer token (Authorization header).")
    timeout: float | None = Field(
        None, gt=0, le=600, description="Seconds for one whole answer; default vista.timeout.")

    @model_validator(mode="before")
    @classmethod
    def _from_tuple(cls, data: Any) -> Any:
        """Upstream's tuple (a list in TOML or JSON) becomes the table."""
        if not isinstance(data, list | tuple):
            return data
        if not 4 <= len(data) <= len(_TUPLE_FIELDS):
            raise ValueError(f"an upstream VISTA_FETCH_METRICS tuple has 4 to "
                             f"{len(_TUPLE_FIELDS)} elements, not {len(data)}")
        raw = dict(zip(_TUPLE_FIELDS, data, strict=False))
        out: dict[str, Any] = {}
        for k, v in raw.items():
            # upstream's placeholders for "none": None, 'None', ''
            if v is None or v == "None" or v == "":
                continue
            if k in ("uri", "api_key", "populate_at_resolutions"):
                continue  # Skyline builds the URL itself; see docs/vista.md
            out[k] = v
        return out

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not re.match(r"^https?://[^/\s]+", v):
            raise ValueError("must start with http:// or https://")
        return v.rstrip("/")

    @field_validator("namespace_prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        v = v.strip(".")
        if v and not _PREFIX.match(v):
            raise ValueError(f"{v!r} is not a dotted metric namespace")
        return v

    @model_validator(mode="after")
    def _auth(self) -> VistaFetch:
        if self.user and self.token is not None:
            raise ValueError("use either user/password (basic) or token (bearer), not both")
        if self.password is not None and not self.user:
            raise ValueError("password without user")
        return self

    @property
    def key(self) -> str:
        """What identifies this fetch in Vista's bookkeeping (its last fetched time)."""
        return f"{self.source} {self.url} {self.query} {self.namespace_prefix} {self.metric}"


class VistaSettings(BaseModel):
    """[vista]: pulling metrics from remote Graphite and Prometheus servers
    (VISTA_FETCH_METRICS lists what to pull), and sending anomaly scores and events to a
    remote_write receiver."""

    model_config = ConfigDict(extra="forbid", validate_default=True)

    max_concurrent: int = Field(
        8, ge=1, le=256, description="Most fetches in flight at once, over every remote.")
    max_per_remote: int = Field(
        2, ge=1, le=64,
        description="Most fetches in flight at once to one remote, so that a slow remote holds "
        "only its own share of the fetch slots.")
    timeout: float = Field(
        10.0, gt=0, le=600,
        description="Seconds a remote has to send its whole answer (connect, headers and "
        "body); beyond it the fetch fails as a timeout.")
    max_body_bytes: int = Field(
        16_777_216, ge=1024, le=1_073_741_824,
        description="Largest answer read from a remote, in bytes; a larger one is abandoned "
        "and counted (too_large).")
    backfill: int | None = Field(
        None, ge=60,
        description="Seconds of history fetched the first time a query is pulled, and at most "
        "when Vista was behind; unset: FULL_DURATION.")
    max_backoff: float = Field(
        300.0, ge=1, le=86400,
        description="Longest wait, in seconds, before a remote that failed is tried again "
        "(the wait doubles from 1 s with each failure).")
    remote_write_url: str = Field(
        "",
        description="A Prometheus remote_write endpoint (VictoriaMetrics' "
        "http://host:8428/api/v1/write, Prometheus' http://host:9090/api/v1/write with "
        "--web.enable-remote-write-receiver, Mimir, Thanos receive) that Vista sends every "
        "anomaly score (skyline_anomaly_score{metric=...}) and anomaly event "
        "(skyline_anomaly{metric=...,source=...,status=...}) to (docs/vista.md). Empty: "
        "nothing is sent.")
    remote_write_user: str = Field("", description="HTTP basic auth user for remote_write_url.")
    remote_write_password: SecretStr | None = Field(
        None, json_schema_extra={"mask": "all"},
        description="HTTP basic auth password for remote_write_url.")
    remote_write_token: SecretStr | None = Field(
        None, json_schema_extra={"mask": "all"},
        description="Bearer token for remote_write_url.")
    remote_write_interval: float = Field(
        30.0, ge=1, le=3600, description="Seconds between two sends of what is new.")
    remote_write_labels: dict[str, str] = Field(
        default_factory=dict,
        description="Labels added to every series sent (e.g. {skyline = \"prod\"}); not "
        "__name__, metric, source or status.")
    remote_write_scores: bool = Field(
        True, description="Send the anomaly score series (skyline_anomaly_score).")
    remote_write_events: bool = Field(
        True, description="Send anomaly events as a series (skyline_anomaly).")
    remote_write_backfill: int = Field(
        3600, ge=0, le=604800,
        description="Seconds of scores and events sent when nothing was sent before (a "
        "first start, or a metric first scored).")
    remote_write_max_samples: int = Field(
        10_000, ge=1, le=1_000_000, description="Most samples in one remote_write request.")

    @field_validator("remote_write_url")
    @classmethod
    def _write_url(cls, v: str) -> str:
        if v and not re.match(r"^https?://[^/\s]+", v):
            raise ValueError("must start with http:// or https://")
        return v

    @field_validator("remote_write_labels")
    @classmethod
    def _write_labels(cls, v: dict[str, str]) -> dict[str, str]:
        for name in v:
            if not _LABEL.match(name) or name.startswith("__"):
                raise ValueError(f"{name!r} is not a label name ([a-zA-Z_][a-zA-Z0-9_]*, "
                                 "not starting with __)")
            if name in _WRITE_OWN_LABELS:
                raise ValueError(f"{name!r} is set by Skyline on every series sent")
        return v

    @model_validator(mode="after")
    def _write_auth(self) -> VistaSettings:
        if self.remote_write_user and self.remote_write_token is not None:
            raise ValueError("remote_write: use either user/password (basic) or token "
                             "(bearer), not both")
        if self.remote_write_password is not None and not self.remote_write_user:
            raise ValueError("remote_write_password without remote_write_user")
        return self
