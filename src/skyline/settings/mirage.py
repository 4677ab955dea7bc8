"""Mirage's settings: the [mirage] table (the long history and the second-opinion stage)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from skyline.core.errors import PatternError
from skyline.core.patterns import validate as validate_pattern


class MirageNamespace(BaseModel):
    """One [[mirage.namespaces]] table: metrics matching `pattern` are re-judged by the
    Mirage stage on `hours` of history."""

    model_config = ConfigDict(extra="forbid", validate_default=True)

    pattern: str = Field(description="Namespace pattern (glob or re:regex).")
    hours: float = Field(
        168.0, ge=25, le=720,
        description="Hours of history Mirage judges these metrics on (upstream's "
        "SECOND_ORDER_RESOLUTION_HOURS).")
    source: Literal["", "graphite", "prometheus"] = Field(
        "",
        description="Where Mirage reads these metrics' long history: empty, Skyline's own; "
        "graphite (render API, JSON) or prometheus (query_range) at `url`, merged with the "
        "recent points Skyline holds (docs/mirage.md, \"Remote history\").")
    url: str = Field(
        "", description="Base URL of the remote (http://prometheus:9090, "
        "https://graphite.example.com/graphite); needed with a source.")
    query: str = Field(
        "{metric}",
        description="Graphite target or PromQL query of one metric; {metric} is replaced by "
        "the metric's name (without strip_prefix). Skyline's labelled names (name{k=\"v\"}) "
        "are PromQL selectors as they are.")
    strip_prefix: str = Field(
        "", description="Prefix taken off the metric's name before it goes into the query "
        "(e.g. the namespace_prefix Vista or the ingest put in front).")
    user: str = Field("", description="HTTP basic auth user of the remote.")
    password: SecretStr | None = Field(None, json_schema_extra={"mask": "all"},
                                       description="HTTP basic auth password of the remote.")
    token: SecretStr | None = Field(None, json_schema_extra={"mask": "all"},
                                    description="Bearer token for the remote.")
    timeout: float | None = Field(
        None, gt=0, le=600,
        description="Seconds for one answer of the remote; default mirage.remote_timeout "
        "(never more than what is left of the stage budget).")

    @field_validator("pattern")
    @classmethod
    def _pattern(cls, v: str) -> str:
        try:
            validate_pattern(v)
        except PatternError as e:
            raise ValueError(str(e)) from None
        return v

    @model_validator(mode="after")
    def _remote(self) -> MirageNamespace:
        if self.source:
            if not re.match(r"^https?://[^/\s]+", self.url):
                raise ValueError("a remote source needs a url starting with http:// or "
                                 "https://")
            if "{metric}" not in self.query:
                raise ValueError("query must contain {metric}")
            self.url = self.url.rstrip("/")
        elif self.url:
            raise ValueError("url is set without a source (graphite or prometheus)")
        return self


class MirageSettings(BaseModel):
    """[mirage]: the long history Skyline keeps of every metric, and the Mirage stage."""

    model_config = ConfigDict(extra="forbid", validate_default=True)

    history_days: float = Field(
        7.0, ge=0, le=30,
        description="Days of long history (MIRAGE_ANALYSIS_RESOLUTION buckets of count, sum, "
        "min and max) kept beside each metric's FULL_DURATION series; 0: none is kept.",
    )
    history_batch: float = Field(
        3600.0, ge=0, le=86400,
        description="Seconds of points beyond FULL_DURATION + ROOMBA_GRACE_TIME the roomba "
        "lets gather before it moves them into the long history at once (fewer rewrites of "
        "the history; the raw series holds up to this much more).",
    )
    namespaces: list[MirageNamespace] = Field(
        default_factory=list,
        description="[[mirage.namespaces]] tables of pattern and hours: the metrics the Mirage "
        "stage re-judges and on how many hours of history (the first match wins; then the "
        "second_order_resolution_hours of the first ALERTS rule that matches and has one).",
    )
    min_history_hours: float = Field(
        48.0, ge=1, le=720,
        description="Fewest hours of history a metric needs for the Mirage stage to judge it; "
        "with less it abstains.",
    )
    peak_window: float = Field(
        3600.0, ge=0, le=43200,
        description="Seconds either side of the same time of day on earlier days in which "
        "MIRAGE_CHECK_REPETITIVE_DAILY_PEAKS looks for a similar peak.",
    )
    remote_timeout: float = Field(
        5.0, gt=0, le=600,
        description="Default seconds for one answer of a remote history source (a namespace's "
        "timeout overrides it); a fetch never outlasts the stage budget either.",
    )
    remote_max_concurrent: int = Field(
        4, ge=1, le=64,
        description="Remote history fetches one analyzer process runs at once.",
    )
    remote_max_body_bytes: int = Field(
        16 * 1024 * 1024, ge=1024, le=1024**3,
        description="Largest answer read from a remote history source; a larger one is "
        "abandoned (the stage abstains for that metric).",
    )
    remote_cache_seconds: float = Field(
        3600.0, ge=0, le=86400,
        description="Seconds a metric's remote history is reused by an analyzer process "
        "before it is fetched again (only its part older than the points Skyline holds is "
        "used, so an hour-old copy loses nothing); 0: fetched for every candidate.",
    )
