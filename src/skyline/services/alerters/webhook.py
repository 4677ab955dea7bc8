"""Generic webhook: the alert as JSON, POSTed; signed with HMAC-SHA256 when a secret is set.

This is upstream's http_alerter, and what replaces HipChat (a chat tool's incoming webhook,
or a small relay, receives it). The receiver checks the signature header,
`sha256=<hex HMAC-SHA256 of the raw body with the shared secret>`, before trusting the body.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

from skyline.services.alerters.base import check_response, http_client
from skyline.services.alerters.content import Alert
from skyline.settings.alerts import WebhookChannel


def build_body(alert: Alert, include_graph: bool) -> bytes:
    data: dict[str, Any] = {"skyline": "alert", "version": 1, "alert": alert.as_dict()}
    if include_graph and alert.graph:
        data["alert"]["graph_png_base64"] = base64.b64encode(alert.graph).decode("ascii")
    return json.dumps(data, separators=(",", ":"), allow_nan=False).encode()


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class Webhook:
    name = "webhook"
    resolves = True
    wants_graph = False

    def __init__(self, cfg: WebhookChannel, timeout: float):
        self.cfg = cfg
        self.wants_graph = cfg.include_graph
        self.resolves = cfg.send_recovered
        self.client = http_client(timeout, verify=cfg.verify_tls)

    async def send(self, alert: Alert) -> None:
        url = str(alert.options.get("url") or self.cfg.url)
        body = build_body(alert, self.cfg.include_graph)
        headers = {"Content-Type": "application/json"}
        if self.cfg.secret is not None:
            headers[self.cfg.signature_header] = signature(
                self.cfg.secret.get_secret_value(), body)
        r = await self.client.post(url, content=body, headers=headers)
        check_response(r, f"webhook {url}")

    async def aclose(self) -> None:
        await self.client.aclose()
