"""Alerters: route anomaly events to channels (SMTP, Slack, PagerDuty, webhook,
Alertmanager, syslog) and deliver them reliably."""

from fastapi import APIRouter

from skyline.runtime.context import Context
from skyline.services.alerters.api import router
from skyline.services.alerters.service import run


def routers(ctx: Context) -> list[APIRouter]:
    return [router(ctx)]


__all__ = ["routers", "run"]
