"""Alert settings: the ALERTS rules and the [alerters] table with one table per channel.

Upstream's ALERTS tuples `(pattern, alerter, EXPIRATION_TIME)` become a list of tables
(`[[ALERTS]]` with pattern, channel, expiration, options); upstream's SMTP_OPTS, SLACK_OPTS,
PAGERDUTY_OPTS, SYSLOG_OPTS and HTTP_ALERTERS_OPTS become the [alerters.<channel>] tables.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from skyline.core.errors import PatternError
from skyline.core.patterns import validate as validate_pattern

CHANNELS = ("smtp", "slack", "pagerduty", "webhook", "alertmanager", "syslog")
# Channels upstream had that are gone, and what replaces each: named in the error a rule
# using one gets, so an upstream configuration converts with a hint instead of a guess.
REPLACED_CHANNELS = {
    "hipchat": "HipChat no longer exists; use the webhook channel",
    "http_alerter": "upstream's http_alerter is the webhook channel",
    "sms": "there is no SMS channel; point the webhook channel at an SMS gateway",
}
# Rule options each channel understands: anything else in `options` is refused, so a typo
# cannot silently fall back to the channel's defaults.
RULE_OPTIONS: dict[str, frozenset[str]] = {
    "smtp": frozenset({"recipients"}),
    "slack": frozenset(),
    "pagerduty": frozenset({"severity"}),
    "webhook": frozenset({"url"}),
    "alertmanager": frozenset({"labels"}),
    "syslog": frozenset({"severity"}),
}
PD_SEVERITIES = ("critical", "error", "warning", "info")
SYSLOG_SEVERITIES = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")
SYSLOG_FACILITIES = (
    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron",
    "authpriv", "ftp", "ntp", "audit", "alert", "clock",
    "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7",
)
_EMAIL = re.compile(r"^[^@\s<>]+@[^@\s<>]+$")
_LABEL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")  # Prometheus label names


# shown as *** by `skyline config show`, whatever its form (see settings.show)
SECRET: dict[str, Any] = {"mask": "all"}


class _Table(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


def _http_url(v: str, what: str = "URL") -> str:
    if v and not re.match(r"^https?://[^/\s]+", v):
        raise ValueError(f"{what} must start with http:// or https://")
    return v


def _emails(v: list[str]) -> list[str]:
    for a in v:
        if not _EMAIL.match(a):
            raise ValueError(f"{a!r} is not an email address")
    return v


class AlertRule(_Table):
    """One ALERTS rule: metrics matching `pattern` alert on `channel`, at most once per
    `expiration` seconds per metric."""

    pattern: str = Field(description="Namespace pattern (glob or re:regex).")
    channel: str = Field(description="One of " + ", ".join(CHANNELS) + ".")
    expiration: int = Field(
        3600, ge=0, le=30 * 86400,
        description="Seconds during which a metric alerts on this channel once only "
        "(upstream's EXPIRATION_TIME); 0: every anomaly alerts.",
    )
    options: dict[str, Any] = Field(default_factory=dict,
                                    description="Channel-specific overrides for this rule.")
    group: Literal["metric", "incident"] = Field(
        "metric",
        description="\"metric\": one alert per metric's anomaly (expiration applies). "
        "\"incident\": one alert per Luminosity incident on this channel (the first member "
        "this rule matches), updated with the member list as other members join and resolved "
        "when the incident closes (docs/luminosity.md); needs LUMINOSITY_ENABLED and "
        "luminosity.incident_window > 0, else it alerts per metric.")
    second_order_resolution_hours: float | None = Field(
        None, ge=25, le=720,
        description="Upstream's fourth element (SECOND_ORDER_RESOLUTION_HOURS): the Mirage "
        "stage re-judges matching metrics on this many hours of history.")

    @field_validator("pattern")
    @classmethod
    def _pattern(cls, v: str) -> str:
        try:
            validate_pattern(v)
        except PatternError as e:
            raise ValueError(str(e)) from None
        return v

    @field_validator("channel")
    @classmethod
    def _channel(cls, v: str) -> str:
        if v in CHANNELS:
            return v
        base = v.split("-", 1)[0]
        hint = REPLACED_CHANNELS.get(base) or REPLACED_CHANNELS.get(v)
        known = ", ".join(CHANNELS)
        raise ValueError(f"unknown channel {v!r}: {hint}" if hint
                         else f"unknown channel {v!r}: one of {known}")

    @model_validator(mode="after")
    def _options(self) -> AlertRule:
        allowed = RULE_OPTIONS.get(self.channel, frozenset())
        extra = sorted(set(self.options) - allowed)
        if extra:
            can = ", ".join(sorted(allowed)) or "none"
            raise ValueError(f"options {extra} are not options of channel {self.channel} "
                             f"(it takes: {can})")
        o = self.options
        if "recipients" in o:
            if not isinstance(o["recipients"], list) or not all(
                    isinstance(a, str) for a in o["recipients"]):
                raise ValueError("options.recipients must be a list of email addresses")
            _emails(o["recipients"])
        if "severity" in o:
            choices = PD_SEVERITIES if self.channel == "pagerduty" else SYSLOG_SEVERITIES
            if o["severity"] not in choices:
                raise ValueError(f"options.severity must be one of {', '.join(choices)}")
        if "url" in o:
            if not isinstance(o["url"], str) or not o["url"]:
                raise ValueError("options.url must be a URL")
            _http_url(o["url"], "options.url")
        if "labels" in o:
            _labels(o["labels"])
        return self


def _labels(v: Any) -> dict[str, str]:
    if not isinstance(v, dict) or not all(isinstance(x, str) for x in v.values()):
        raise ValueError("labels must be a table of strings")
    for k in v:
        if not _LABEL_NAME.match(k):
            raise ValueError(f"label name {k!r} is not a Prometheus label name")
    return v


class _Channel(_Table):
    enabled: bool = Field(False, description="Send alerts on this channel.")
    rate_limit: int = Field(
        100, ge=0,
        description="Most alerts this channel sends per rate_period; beyond it alerts are "
        "dropped, logged and counted. 0: no limit.",
    )
    rate_period: int = Field(3600, ge=1, le=86400, description="Seconds of the rate limit window.")


class SmtpChannel(_Channel):
    """[alerters.smtp]: email, HTML with the graph inline (upstream SMTP_OPTS)."""

    host: str = Field("127.0.0.1", min_length=1, description="SMTP server.")
    port: int = Field(25, ge=1, le=65535,
                      description="SMTP port: 25, 587 (STARTTLS) or 465 (SSL) usually.")
    security: Literal["none", "starttls", "ssl"] = Field(
        "none", description="Plain SMTP, STARTTLS after connecting, or SSL from the start.")
    user: str = Field("", description="User to log in as; empty: no login.")
    password: SecretStr | None = Field(None, description="Password of user.", json_schema_extra=SECRET)
    verify_tls: bool = Field(True, description="Check the server's TLS certificate.")
    ca_file: str = Field(
        "", description="PEM file of the certificate authorities to trust for the server's "
        "certificate (a private CA); empty: the system's.")
    sender: str = Field("skyline@localhost", description="From address.")
    recipients: list[str] = Field(
        default_factory=list,
        description="To addresses when the rule's options give no recipients.",
    )
    subject_prefix: str = Field("[Skyline alert]", description="Start of every subject line.")
    embed_graph: bool = Field(True, description="Attach the graph inline (upstream's "
                              "embed-images).")

    @field_validator("recipients")
    @classmethod
    def _recipients(cls, v: list[str]) -> list[str]:
        return _emails(v)

    @field_validator("sender")
    @classmethod
    def _sender(cls, v: str) -> str:
        _emails([v])
        return v


class SlackChannel(_Channel):
    """[alerters.slack]: a Slack incoming webhook, Block Kit message."""

    webhook_url: SecretStr | None = Field(
        None, description="Incoming webhook URL (https://hooks.slack.com/services/...); "
        "it is a secret.", json_schema_extra=SECRET)
    rate_limit: int = Field(30, ge=0, description="Most alerts per rate_period; 0: no limit.")

    @field_validator("webhook_url")
    @classmethod
    def _url(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None:
            _http_url(v.get_secret_value(), "webhook_url")
        return v


class PagerDutyChannel(_Channel):
    """[alerters.pagerduty]: PagerDuty Events API v2; resolved on recovery."""

    routing_key: SecretStr | None = Field(
        None, description="Integration (routing) key of an Events API v2 integration.", json_schema_extra=SECRET)
    url: str = Field("https://events.pagerduty.com/v2/enqueue",
                     description="Events API endpoint.")
    severity: Literal["critical", "error", "warning", "info"] = Field(
        "error", description="Severity of triggered incidents.")
    rate_limit: int = Field(30, ge=0, description="Most alerts per rate_period; 0: no limit.")

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        return _http_url(v)


class WebhookChannel(_Channel):
    """[alerters.webhook]: JSON POSTed to a URL (upstream's http_alerter; also what replaces
    HipChat), optionally signed with HMAC-SHA256."""

    url: SecretStr | None = Field(
        None, json_schema_extra=SECRET,
        description="Where to POST (a secret: such URLs often carry a token); a rule's "
        "options.url overrides it.")
    secret: SecretStr | None = Field(
        None, description="Key of the HMAC-SHA256 signature of the timestamp and body; "
        "unset: unsigned.", json_schema_extra=SECRET)
    signature_header: str = Field(
        "X-Skyline-Signature", min_length=1,
        description="Header carrying sha256=<hex HMAC of X-Skyline-Timestamp, '.' and the "
        "body>.")
    send_recovered: bool = Field(True, description="Also POST recoveries (status recovered).")
    include_graph: bool = Field(False, description="Put the PNG graph, base64, in the JSON.")
    verify_tls: bool = Field(True, description="Check the server's TLS certificate.")
    rate_limit: int = Field(1000, ge=0, description="Most alerts per rate_period; 0: no limit.")

    @field_validator("url", mode="before")
    @classmethod
    def _empty(cls, v: object) -> object:
        return None if v == "" else v

    @field_validator("url")
    @classmethod
    def _url(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None:
            _http_url(v.get_secret_value(), "url")
        return v


class AlertmanagerChannel(_Channel):
    """[alerters.alertmanager]: Prometheus Alertmanager API v2; resolved on recovery."""

    url: str = Field("", description="Alertmanager base URL (http://127.0.0.1:9093).")
    labels: dict[str, str] = Field(
        default_factory=dict, description="Labels added to every alert (e.g. team, env).")
    verify_tls: bool = Field(True, description="Check the server's TLS certificate.")
    rate_limit: int = Field(1000, ge=0, description="Most alerts per rate_period; 0: no limit.")

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        return _http_url(v)

    @field_validator("labels")
    @classmethod
    def _check_labels(cls, v: dict[str, str]) -> dict[str, str]:
        return _labels(v)


class SyslogChannel(_Channel):
    """[alerters.syslog]: RFC 5424 messages over UDP, TCP or a unix socket (upstream
    SYSLOG_OPTS)."""

    address: str = Field(
        "unix:///dev/log",
        description="udp://HOST:PORT, tcp://HOST:PORT (octet-counted framing) or "
        "unix:///PATH.")
    facility: str = Field("local4", description="Syslog facility (upstream: LOG_LOCAL4).")
    severity: str = Field("warning", description="Severity of anomaly messages.")
    app_name: str = Field("skyline", min_length=1, max_length=48,
                          description="APP-NAME of every message (upstream's ident).")
    rate_limit: int = Field(0, ge=0, description="Most alerts per rate_period; 0: no limit.")

    @field_validator("address")
    @classmethod
    def _address(cls, v: str) -> str:
        if not re.match(r"^(udp|tcp)://[^/:\s]+:\d+$|^unix:///\S+$", v):
            raise ValueError("must be udp://HOST:PORT, tcp://HOST:PORT or unix:///PATH")
        return v

    @field_validator("facility")
    @classmethod
    def _facility(cls, v: str) -> str:
        if v not in SYSLOG_FACILITIES:
            raise ValueError(f"must be one of {', '.join(SYSLOG_FACILITIES)}")
        return v

    @field_validator("severity")
    @classmethod
    def _severity(cls, v: str) -> str:
        if v not in SYSLOG_SEVERITIES:
            raise ValueError(f"must be one of {', '.join(SYSLOG_SEVERITIES)}")
        return v


class AlertersSettings(_Table):
    """[alerters]: delivering alerts: the queue, retries, and one table per channel."""

    claim_idle: float = Field(
        60.0, gt=0, le=86400,
        description="Seconds an anomaly event may stay unacknowledged before another "
        "alerters instance takes it over.",
    )
    timeout: float = Field(10.0, gt=0, le=300,
                           description="Seconds one delivery attempt may take.")
    retry_initial: float = Field(5.0, gt=0, le=3600,
                                 description="Seconds before the first retry of a failed "
                                 "delivery; each further retry waits twice as long.")
    retry_max: float = Field(300.0, gt=0, le=86400,
                             description="Longest wait between two retries.")
    max_age: float = Field(
        3600.0, gt=0, le=7 * 86400,
        description="Seconds after which an undelivered alert is given up (recorded as "
        "expired in the alert log).",
    )
    poll_interval: float = Field(
        1.0, gt=0, le=60,
        description="Seconds between two looks at the delivery queue for retries that came "
        "due (new alerts wake their channel at once).")
    concurrency: int = Field(
        8, ge=1, le=100,
        description="Deliveries one channel sends at the same time (different metrics; one "
        "metric's alert and resolve always go in order).")
    history_days: int = Field(
        30, ge=1, description="Days delivered alerts and alert log rows are kept.")
    graph: bool = Field(True, description="Draw a PNG graph of the anomaly's window for "
                        "the channels that show one (upstream's PLOT_REDIS_DATA).")
    incident_update_delay: float = Field(
        60.0, ge=0, le=3600,
        description="Rules with group = \"incident\": seconds an incident's alert update waits "
        "after a member joins, so members joining meanwhile go out in one update with the "
        "member list as it is then; 0: one update per member.")
    smtp: SmtpChannel = Field(default_factory=SmtpChannel, description="[alerters.smtp] table.")
    slack: SlackChannel = Field(default_factory=SlackChannel,
                                description="[alerters.slack] table.")
    pagerduty: PagerDutyChannel = Field(default_factory=PagerDutyChannel,
                                        description="[alerters.pagerduty] table.")
    webhook: WebhookChannel = Field(default_factory=WebhookChannel,
                                    description="[alerters.webhook] table.")
    alertmanager: AlertmanagerChannel = Field(default_factory=AlertmanagerChannel,
                                              description="[alerters.alertmanager] table.")
    syslog: SyslogChannel = Field(default_factory=SyslogChannel,
                                  description="[alerters.syslog] table.")

    def channel(self, name: str) -> _Channel:
        table: _Channel = getattr(self, name)
        return table

    @model_validator(mode="after")
    def _enabled_channels_are_complete(self) -> AlertersSettings:
        if self.retry_initial > self.retry_max:
            raise ValueError("alerters.retry_initial must not exceed alerters.retry_max")
        missing = {
            "slack": ("webhook_url", self.slack.webhook_url is None),
            "pagerduty": ("routing_key", self.pagerduty.routing_key is None),
            "alertmanager": ("url", not self.alertmanager.url),
        }
        for name, (setting, absent) in missing.items():
            if self.channel(name).enabled and absent:
                raise ValueError(f"alerters.{name}.{setting} must be set when "
                                 f"alerters.{name}.enabled is true")
        if self.smtp.user and self.smtp.password is None:
            raise ValueError("alerters.smtp.password must be set when alerters.smtp.user is")
        return self


def check_rules(rules: list[AlertRule], alerters: AlertersSettings) -> None:
    """Every rule names an enabled channel that has what the rule needs; the message starts
    with the rule's setting name (ALERTS.<index>) so `skyline config check` names it."""
    for i, r in enumerate(rules):
        check_channel_ready(f"ALERTS.{i}.channel of rule {i + 1} (pattern {r.pattern!r})",
                            r.channel, r.options, alerters)


def check_channel_ready(where: str, channel: str, options: dict[str, Any],
                        alerters: AlertersSettings) -> None:
    """A rule (ALERTS, BOUNDARY_METRICS) may send on `channel`: it is enabled and has what
    the rule needs."""
    if not alerters.channel(channel).enabled:
        raise ValueError(f"{where} names channel {channel}, which is not enabled "
                         f"(set alerters.{channel}.enabled = true)")
    if channel == "smtp" and not (options.get("recipients") or alerters.smtp.recipients):
        raise ValueError(f"{where} has no recipients (set alerters.smtp.recipients or the "
                         "rule's options.recipients)")
    if channel == "webhook" and not (options.get("url") or alerters.webhook.url):
        raise ValueError(f"{where} has no URL (set alerters.webhook.url or the rule's "
                         "options.url)")
