"""Generic webhook: the alert as JSON, POSTed; signed with HMAC-SHA256 when a secret is set.

This is upstream's http_alerter, and what replaces HipChat (a chat tool's incoming webhook,
or a small relay, receives it). The receiver checks the signature header,
`sha256=<hex HMAC-SHA256 of "<timestamp>." + the raw body with the shared secret>`, where
`<timestamp>` is the `X-Skyline-Timestamp` header (Unix seconds), before trusting the body,
and refuses a timestamp older than a few minutes: a request recorded on the way cannot be
replayed later.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

from skyline.alerting.base import check_response, http_client
from skyline.alerting.content import Alert
from skyline.settings.alerts import WebhookChannel


def build_body(alert: Alert, include_graph: bool) -> bytes:
    data: dict[str, Any] = {"skyline": "alert", "version": 1, "alert": alert.as_dict()}
    if include_graph and alert.graph:
        data["alert"]["graph_png_base64"] = base64.b64encode(alert.graph).decode("ascii")
    return json.dumps(data, separators=(",", ":"), allow_nan=False).encode()


TIMESTAMP_HEADER = "X-Skyline-Timestamp"


def signature(secret: str, body: bytes, timestamp: int) -> str:
    signed = str(timestamp).encode() + b"." + body
    return "sha256=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


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
        url = str(alert.options.get("url") or (
            self.cfg.url.get_secret_value() if self.cfg.url is not None else ""))
        body = build_body(alert, self.cfg.include_graph)
        headers = {"Content-Type": "application/json"}
        if self.cfg.secret is not None:
            now = int(time.time())
            headers[TIMESTAMP_HEADER] = str(now)
            headers[self.cfg.signature_header] = signature(
                self.cfg.secret.get_secret_value(), body, now)
        r = await self.client.post(url, content=body, headers=headers)
        # the URL is a secret (it may carry a token, as a Slack one does): never in a message
        check_response(r, "webhook")

    async def aclose(self) -> None:
        await self.client.aclose()
