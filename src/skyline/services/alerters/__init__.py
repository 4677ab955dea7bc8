"""Alerters: route anomaly events to channels (SMTP, Slack, PagerDuty, webhook,
Alertmanager, syslog) and deliver them reliably."""

from skyline.services.alerters.service import run

__all__ = ["run"]
