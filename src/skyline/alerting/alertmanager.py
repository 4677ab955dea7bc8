"""Prometheus Alertmanager, API v2: `POST /api/v2/alerts` with a list of alerts, each
labels (alertname and metric identify it), annotations, startsAt, endsAt, generatorURL.

Skyline sends an alert once (not every minute, as Prometheus does), so it sets endsAt to
the rule's expiration: Alertmanager keeps the alert firing that long unless a recovery
re-posts it with endsAt = now, which resolves it.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from skyline.alerting.base import check_response, http_client
from skyline.alerting.content import Alert, fmt
from skyline.settings.alerts import AlertmanagerChannel

ALERTNAME = "SkylineAnomaly"
INCIDENT_ALERTNAME = "SkylineIncident"
# a resolve must carry the very labels of the alert it ends; a long expiration is capped
MIN_ACTIVE = 300


def _rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def labels(alert: Alert, static: dict[str, str]) -> dict[str, str]:
    out = dict(static)
    out.update({str(k): str(v) for k, v in (alert.options.get("labels") or {}).items()})
    out["alertname"] = ALERTNAME if not alert.test else "SkylineTest"
    if alert.incident is not None:
        # one Alertmanager alert per Skyline incident: an update re-posts it, the close
        # resolves it, whichever member each was about
        out["alertname"] = INCIDENT_ALERTNAME
        out["incident"] = str(alert.incident.get("incident"))
        return out
    out["metric"] = alert.metric
    return out


def build_alerts(alert: Alert, static: dict[str, str], now: float | None = None
                 ) -> list[dict[str, Any]]:
    t = time.time() if now is None else now
    e = alert.event
    algos = "; ".join(f"{a}: {x}" if x else a for a, x in alert.algorithms())
    annotations = {
        "summary": alert.title(),
        "description": algos or alert.title(),
        "value": fmt(e.value),
        "score": f"{e.score:.3f}",
        "source": e.source,
        "event_id": e.id,
        "link": alert.link,
    }
    if alert.incident is not None:
        annotations["members"] = alert.members_text()
    item: dict[str, Any] = {"labels": labels(alert, static), "annotations": annotations,
                            "generatorURL": alert.link}
    if alert.resolved:
        item["endsAt"] = _rfc3339(t)
    else:
        item["startsAt"] = _rfc3339(min(e.timestamp, t))
        item["endsAt"] = _rfc3339(t + max(MIN_ACTIVE, alert.expiration))
    return [item]


class Alertmanager:
    name = "alertmanager"
    resolves = True
    wants_graph = False

    def __init__(self, cfg: AlertmanagerChannel, timeout: float):
        self.cfg = cfg
        self.client = http_client(timeout, verify=cfg.verify_tls)

    async def send(self, alert: Alert) -> None:
        url = self.cfg.url.rstrip("/") + "/api/v2/alerts"
        r = await self.client.post(url, json=build_alerts(alert, self.cfg.labels))
        check_response(r, "Alertmanager")

    async def aclose(self) -> None:
        await self.client.aclose()
