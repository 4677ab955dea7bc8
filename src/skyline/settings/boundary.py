"""Boundary's settings: the BOUNDARY_METRICS rules and BOUNDARY_ALERTER_OPTS.

A rule is upstream's tuple `(pattern, algorithm, EXPIRATION_TIME, MIN_AVERAGE,
MIN_AVERAGE_SECONDS, TRIGGER_VALUE, ALERT_THRESHOLD, 'alerter1|alerter2', [EXCLUDES])` (a list
in TOML or JSON), read as it is, or a readable `[[BOUNDARY_METRICS]]` table. An upstream
tuple's pattern and excludes are upstream patterns (a substring, dotted elements in any order,
or a regex at the start of the name) and are converted as docs/settings.md shows; a table's
are ours (glob or re:regex).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from skyline.core.errors import PatternError
from skyline.core.patterns import from_upstream
from skyline.core.patterns import validate as validate_pattern
from skyline.settings.alerts import CHANNELS, REPLACED_CHANNELS

BOUNDARY_ALGORITHMS = ("less_than", "greater_than", "detect_drop_off_cliff")
_TUPLE_FIELDS = ("pattern", "algorithm", "expiration", "min_average", "min_average_seconds",
                 "trigger_value", "alert_threshold", "channels", "excludes")
# upstream BOUNDARY_ALERTER_OPTS defaults (earthgecko settings.py)
_DEFAULT_EXPIRATION = {"smtp": 60, "pagerduty": 1800, "slack": 1800}
_DEFAULT_LIMIT = {"smtp": 100, "pagerduty": 15, "slack": 30}


def _check_pattern(v: str) -> str:
    try:
        validate_pattern(v)
    except PatternError as e:
        raise ValueError(str(e)) from None
    return v


def _check_channel(v: str) -> str:
    if v in CHANNELS:
        return v
    hint = REPLACED_CHANNELS.get(v.split("-", 1)[0]) or REPLACED_CHANNELS.get(v)
    raise ValueError(f"unknown channel {v!r}: {hint}" if hint
                     else f"unknown channel {v!r}: one of {', '.join(CHANNELS)}")


class BoundaryRule(BaseModel):
    """One BOUNDARY_METRICS rule: metrics matching `pattern` (and no `excludes` pattern) are
    checked with `algorithm` every Boundary run."""

    model_config = ConfigDict(extra="forbid", validate_default=True)

    pattern: str = Field(description="Namespace pattern (glob or re:regex).")
    name: str = Field(
        "", max_length=200,
        description="What alerts and the UI call the rule; default: its pattern (an upstream "
        "tuple's pattern as written).")
    algorithm: Literal["less_than", "greater_than", "detect_drop_off_cliff"] = Field(
        description="less_than, greater_than or detect_drop_off_cliff (docs/boundary.md).")
    expiration: int = Field(
        3600, ge=0, le=30 * 86400,
        description="Upstream's EXPIRATION_TIME: while the rule stays broken, one more alert "
        "per this many seconds; also the alert de-duplication time per channel.")
    min_average: float = Field(
        0.0, ge=0,
        description="MIN_AVERAGE: detect_drop_off_cliff ignores a metric whose mean over the "
        "last min_average_seconds is below this (0: no minimum).")
    min_average_seconds: int = Field(
        0, ge=0, le=30 * 86400, description="MIN_AVERAGE_SECONDS (see min_average).")
    trigger_value: float = Field(
        0.0, description="TRIGGER_VALUE: the threshold of less_than and greater_than.")
    alert_threshold: int = Field(
        1, ge=0, le=1000,
        description="ALERT_THRESHOLD: consecutive detections (one per new point) before the "
        "rule alerts; 0 and 1 alert on the first. The incident recovers after as many "
        "consecutive checks that pass.")
    channels: list[str] = Field(
        default_factory=list,
        description="Alert channels of this rule (upstream's 'smtp|slack'); empty: the event "
        "is stored and shown, never alerted.")
    excludes: list[str] = Field(
        default_factory=list, description="EXCLUDES: patterns of metrics this rule skips.")
    smooth: Literal["", "mean", "median"] = Field(
        "", description="Check the moving mean or median of the last smooth_points points "
                        "instead of the last value (less_than, greater_than); empty: none.")
    smooth_points: int = Field(
        0, ge=0, le=10_000, description="Points of the moving mean or median.")

    @model_validator(mode="before")
    @classmethod
    def _from_tuple(cls, data: Any) -> Any:
        """Upstream's tuple (a list in TOML or JSON) becomes the table, its patterns
        converted from upstream's reading."""
        if not isinstance(data, list | tuple):
            return data
        if not 8 <= len(data) <= 9:
            raise ValueError(f"an upstream BOUNDARY_METRICS tuple has 8 or 9 elements "
                             f"(pattern, algorithm, EXPIRATION_TIME, MIN_AVERAGE, "
                             f"MIN_AVERAGE_SECONDS, TRIGGER_VALUE, ALERT_THRESHOLD, "
                             f"'alerter1|alerter2', [EXCLUDES]), not {len(data)}")
        out = dict(zip(_TUPLE_FIELDS, data, strict=False))
        if not isinstance(out["pattern"], str) or not out["pattern"]:
            raise ValueError("the pattern of a BOUNDARY_METRICS tuple must be a string")
        out["name"] = out["pattern"]
        out["pattern"] = from_upstream(out["pattern"])
        ch = out["channels"]
        if not isinstance(ch, str):
            raise ValueError("the alerters of a BOUNDARY_METRICS tuple are a string such as "
                             "'smtp|slack'")
        out["channels"] = [c.strip() for c in ch.split("|") if c.strip()]
        ex = out.get("excludes", [])
        if not isinstance(ex, list) or not all(isinstance(e, str) for e in ex):
            raise ValueError("the EXCLUDES of a BOUNDARY_METRICS tuple are a list of strings")
        out["excludes"] = [from_upstream(e) for e in ex]
        return out

    @field_validator("pattern")
    @classmethod
    def _pattern(cls, v: str) -> str:
        return _check_pattern(v)

    @field_validator("excludes")
    @classmethod
    def _excludes(cls, v: list[str]) -> list[str]:
        return [_check_pattern(p) for p in v]

    @field_validator("channels")
    @classmethod
    def _channels(cls, v: list[str]) -> list[str]:
        out: list[str] = []
        for c in v:
            if _check_channel(c) not in out:
                out.append(c)
        return out

    @model_validator(mode="after")
    def _smoothing(self) -> BoundaryRule:
        if bool(self.smooth) != (self.smooth_points > 1):
            raise ValueError("smooth (mean or median) and smooth_points (2 or more) go "
                             "together")
        if self.smooth and self.algorithm == "detect_drop_off_cliff":
            raise ValueError("detect_drop_off_cliff judges the raw points; smoothing is for "
                             "less_than and greater_than")
        return self

    @property
    def label(self) -> str:
        return self.name or self.pattern

    def describe(self) -> str:
        """The rule in one line, as the UI and alerts quote it."""
        if self.algorithm == "detect_drop_off_cliff":
            what = "drop-off cliff"
        else:
            op = "<" if self.algorithm == "less_than" else ">"
            what = f"value {op} {self.trigger_value:g}"
            if self.smooth:
                what = f"moving {self.smooth} of {self.smooth_points} points {what[6:]}"
        return f"{self.label}: {what}"


class BoundaryAlerterOpts(BaseModel):
    """Upstream's BOUNDARY_ALERTER_OPTS: per channel, at most alerter_limit Boundary alerts
    per alerter_expiration_time seconds (on top of the channel's own rate_limit)."""

    model_config = ConfigDict(extra="forbid", validate_default=True)

    alerter_expiration_time: dict[str, int] = Field(
        default_factory=lambda: dict(_DEFAULT_EXPIRATION),
        description="Seconds of each channel's Boundary rate window.")
    alerter_limit: dict[str, int] = Field(
        default_factory=lambda: dict(_DEFAULT_LIMIT),
        description="Most Boundary alerts per channel per window; a channel not listed has "
        "no Boundary limit.")

    @field_validator("alerter_expiration_time", "alerter_limit")
    @classmethod
    def _known(cls, v: dict[str, int]) -> dict[str, int]:
        for name, n in v.items():
            _check_channel(name)
            if not isinstance(n, int) or n < 1:
                raise ValueError(f"{name}: {n!r} must be a whole number of at least 1")
        return v

    def limit(self, channel: str) -> tuple[int, int] | None:
        """(limit, window seconds) of a channel, or None when it has no Boundary limit."""
        n = self.alerter_limit.get(channel)
        if n is None:
            return None
        return n, self.alerter_expiration_time.get(channel, 60)
