"""Thunder's settings: THUNDER_CHECKS (per app and check: run, expiry, channels and the
check's parameters) and THUNDER_OPTS, with upstream's names (docs/thunder.md).

Every check runs with its defaults unless THUNDER_CHECKS says otherwise, so an empty
THUNDER_CHECKS watches everything. Upstream's `alert_via_smtp`, `alert_via_slack`,
`alert_via_pagerduty` (and `alert_via_<channel>` for ours) are read as the check's channels.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from skyline.settings.alerts import CHANNELS

#: the components Thunder watches by their heartbeat ("<app>.up")
COMPONENTS = ("webapp", "horizon", "roomba", "analyzer", "boundary", "panorama", "alerters",
              "flux", "luminosity", "vista")
#: app -> the checks it has
CHECKS: dict[str, tuple[str, ...]] = {
    **{c: ("up",) for c in COMPONENTS},
    "redis": ("up",),
    "database": ("up",),
    "analyzer": ("up", "run_time", "stale_metrics"),
    "horizon": ("up", "metrics_received"),
    "alerters": ("up", "delivery"),
}


class ThunderCheck(BaseModel):
    """One check of THUNDER_CHECKS: whether it runs, how it alerts, and its parameters (each
    parameter is read by the check docs/thunder.md names beside it)."""

    model_config = ConfigDict(extra="forbid", validate_default=True)

    run: bool = Field(True, description="Run this check.")
    expiry: int = Field(
        900, ge=0, le=30 * 86400,
        description="Seconds after a check's alert during which the same check tripping "
        "again (a flapping component) is stored and shown but not alerted again.")
    channels: list[str] | None = Field(
        None, description="Channels this check alerts on; unset: THUNDER_OPTS.channels.")
    after_overruns: int = Field(
        5, ge=1, le=1000,
        description="analyzer.run_time: consecutive analyzer runs longer than "
        "ANALYZER_OPTIMUM_RUN_DURATION before the check trips.")
    significant_change_percentage: float = Field(
        50.0, gt=0, le=100,
        description="horizon.metrics_received: the drop (percent) of points received per "
        "second that trips the check.")
    significant_change_window: int = Field(
        600, ge=10, le=86400,
        description="horizon.metrics_received: seconds over which the rate is measured.")
    significant_change_over: int = Field(
        3600, ge=60, le=7 * 86400,
        description="horizon.metrics_received: compared with the same window this many "
        "seconds earlier (3600: an hour ago; 86400: the same time yesterday).")
    failing_deliveries: int = Field(
        3, ge=1, le=100_000,
        description="alerters.delivery: alerts of one channel waiting for a retry after a "
        "failed attempt (or given up in the last hour) that trip the check.")

    @model_validator(mode="before")
    @classmethod
    def _alert_via(cls, data: Any) -> Any:
        """Upstream's alert_via_<channel> booleans become `channels`."""
        if not isinstance(data, dict) or not any(str(k).startswith("alert_via_") for k in data):
            return data
        out = {k: v for k, v in data.items() if not str(k).startswith("alert_via_")}
        via = [str(k)[len("alert_via_"):] for k, v in data.items()
               if str(k).startswith("alert_via_") and v]
        out["channels"] = list(dict.fromkeys([*(out.get("channels") or []), *via]))
        return out

    @field_validator("channels")
    @classmethod
    def _channels(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return v
        for c in v:
            if c not in CHANNELS:
                raise ValueError(f"unknown channel {c!r}: one of {', '.join(CHANNELS)}")
        return list(dict.fromkeys(v))


class ThunderOpts(BaseModel):
    """Upstream's THUNDER_OPTS: where Thunder's alerts go, and how it runs."""

    model_config = ConfigDict(extra="forbid", validate_default=True)

    enabled: bool = Field(True, description="Run Thunder's checks in the thunder component.")
    channels: list[str] = Field(
        default_factory=list,
        description="Channels every check alerts on unless it names its own (upstream's "
        "alert_via_*); empty: Thunder's events are stored and shown, never alerted.")
    check_interval: float = Field(
        10.0, gt=0, le=3600, description="Seconds between two rounds of checks.")
    down_after: float = Field(
        60.0, gt=0, le=86400,
        description="Seconds without a heartbeat after which a component that had one is "
        "down (heartbeats are written every telemetry.flush_interval).")
    retry_interval: float = Field(
        30.0, gt=0, le=3600,
        description="Seconds between attempts to send an alert a channel failed; given up "
        "after alerters.max_age.")

    @field_validator("channels")
    @classmethod
    def _channels(cls, v: list[str]) -> list[str]:
        for c in v:
            if c not in CHANNELS:
                raise ValueError(f"unknown channel {c!r}: one of {', '.join(CHANNELS)}")
        return list(dict.fromkeys(v))

    @model_validator(mode="before")
    @classmethod
    def _alert_via(cls, data: Any) -> Any:
        """Upstream's alert_via_<channel> booleans become `channels`; its per-channel
        recipients (smtp_recipients, slack_channel) belong to [alerters.*] here."""
        if not isinstance(data, dict):
            return data
        out = {k: v for k, v in data.items() if not str(k).startswith("alert_via_")}
        via = [str(k)[len("alert_via_"):] for k, v in data.items()
               if str(k).startswith("alert_via_") and v]
        if via:
            out["channels"] = list(dict.fromkeys([*(out.get("channels") or []), *via]))
        return out


def validate_checks(v: dict[str, dict[str, ThunderCheck]]) -> dict[str, dict[str, ThunderCheck]]:
    for app, checks in v.items():
        known = CHECKS.get(app)
        if known is None:
            raise ValueError(f"unknown app {app!r}: one of {', '.join(sorted(CHECKS))}")
        for name in checks:
            if name not in known:
                raise ValueError(f"{app} has no check {name!r}: one of {', '.join(known)}")
    return v
