"""PagerDuty Events API v2: trigger with a dedup_key, resolve it on recovery.

Fields and limits PagerDuty documents: routing_key, event_action (trigger | resolve),
dedup_key <= 255 characters, payload.summary <= 1024, payload.source, payload.severity
(critical | error | warning | info), payload.timestamp (ISO 8601), custom_details, links.
One incident per metric: the dedup_key is derived from the metric, so a recovery resolves
whatever anomaly of it is open. A rule with group = "incident" uses the Skyline incident's id
instead: its updates re-trigger (update) and its close resolves one PagerDuty incident.
"""

from __future__ import annotations

import hashlib
from typing import Any

from skyline.alerting.base import DeliveryError, check_response, http_client
from skyline.alerting.content import Alert, truncate
from skyline.settings.alerts import PagerDutyChannel

SUMMARY_MAX = 1024
DEDUP_MAX = 255


def dedup_key(metric: str) -> str:
    key = f"skyline/{metric}"
    if len(key) <= DEDUP_MAX:
        return key
    # long labelled names: a readable start and a hash of the whole keep it unique
    digest = hashlib.sha256(metric.encode()).hexdigest()[:32]
    return f"{key[: DEDUP_MAX - 33]}~{digest}"


def build_event(alert: Alert, routing_key: str, severity: str) -> dict[str, Any]:
    key = dedup_key(alert.metric) if not alert.test else f"skyline-test/{alert.event.id}"
    if alert.incident is not None:
        # one PagerDuty incident per Skyline incident: an update re-triggers the same key
        # (PagerDuty updates the incident's details), the close resolves it
        key = f"skyline-incident/{alert.incident.get('incident')}"[:DEDUP_MAX]
    if alert.resolved:
        return {"routing_key": routing_key, "event_action": "resolve", "dedup_key": key}
    return {
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": key,
        "payload": {
            "summary": alert.summary(SUMMARY_MAX),
            "source": truncate(alert.metric, 255),
            "severity": severity,
            "timestamp": alert.when,
            "component": alert.event.source,
            "class": "incident" if alert.incident is not None else "anomaly",
            "custom_details": alert.as_dict(),
        },
        "client": "Skyline",
        "client_url": alert.link,
        "links": [{"href": alert.link, "text": "See this anomaly in Skyline"}],
    }


class PagerDuty:
    name = "pagerduty"
    resolves = True
    wants_graph = False

    def __init__(self, cfg: PagerDutyChannel, timeout: float):
        self.cfg = cfg
        self.client = http_client(timeout)

    async def send(self, alert: Alert) -> None:
        if self.cfg.routing_key is None:
            raise DeliveryError("alerters.pagerduty.routing_key is not set", retry=False)
        severity = str(alert.options.get("severity") or self.cfg.severity)
        body = build_event(alert, self.cfg.routing_key.get_secret_value(), severity)
        r = await self.client.post(self.cfg.url, json=body)
        check_response(r, "PagerDuty")

    async def aclose(self) -> None:
        await self.client.aclose()
