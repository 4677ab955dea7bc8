"""The channel registry: channel name -> the object that sends on it."""

from __future__ import annotations

from skyline.alerting.alertmanager import Alertmanager
from skyline.alerting.base import Channel
from skyline.alerting.pagerduty import PagerDuty
from skyline.alerting.slack import Slack
from skyline.alerting.smtp import Smtp
from skyline.alerting.syslog import Syslog
from skyline.alerting.webhook import Webhook
from skyline.settings import Settings
from skyline.settings.alerts import CHANNELS


def make_channel(name: str, s: Settings) -> Channel:
    a = s.alerters
    t = a.timeout
    if name == "smtp":
        return Smtp(a.smtp, t)
    if name == "slack":
        # Slack fetches images itself: only a public web app address makes a usable URL
        return Slack(a.slack, t, public_url=s.WEBAPP_PUBLIC_URL or None)
    if name == "pagerduty":
        return PagerDuty(a.pagerduty, t)
    if name == "webhook":
        return Webhook(a.webhook, t)
    if name == "alertmanager":
        return Alertmanager(a.alertmanager, t)
    if name == "syslog":
        return Syslog(a.syslog, t)
    raise ValueError(f"unknown channel {name!r}: one of {', '.join(CHANNELS)}")


def enabled_channels(s: Settings) -> list[str]:
    return [n for n in CHANNELS if s.alerters.channel(n).enabled]
