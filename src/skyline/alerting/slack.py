"""Slack incoming webhook: a Block Kit message.

Limits Slack documents and this module keeps: header text (plain_text) <= 150 characters,
section text <= 3000, at most 10 section fields of <= 2000 each, at most 50 blocks, image
alt_text <= 2000. The metric name goes in plain_text or an inline code span, and every text
has Slack's control characters (&, <, >) escaped, so a name can neither format the message
nor @-mention a channel.
"""

from __future__ import annotations

from typing import Any

from skyline.alerting.base import check_response, http_client
from skyline.alerting.content import (
    Alert,
    mrkdwn,
    mrkdwn_code,
    truncate,
)
from skyline.settings.alerts import SlackChannel

HEADER_MAX = 150
SECTION_MAX = 3000
FIELD_MAX = 2000
FIELDS_MAX = 10
BLOCKS_MAX = 50


def build_payload(alert: Alert, graph_url: str | None) -> dict[str, Any]:
    e = alert.event
    if alert.test:
        head = f"Skyline test alert: {e.metric}"
    elif alert.incident is not None:
        head = alert.title()  # incident, incident update or incident over
    elif alert.resolved:
        head = ("Skyline: new level" if e.status == "new_level"
                else "Skyline: recovered") + f": {e.metric}"
    else:
        head = f"Skyline anomaly: {e.metric}"
    blocks: list[dict[str, Any]] = [
        {"type": "header",
         "text": {"type": "plain_text", "text": truncate(mrkdwn(head), HEADER_MAX)}},
    ]
    fields = [
        {"type": "mrkdwn", "text": truncate(f"*{mrkdwn(k)}*\n{mrkdwn_code(v)}"
                                            if k == "metric" else f"*{mrkdwn(k)}*\n{mrkdwn(v)}",
                                            FIELD_MAX)}
        for k, v in alert.facts()
    ][:FIELDS_MAX]
    blocks.append({"type": "section", "fields": fields})
    algos = alert.algorithms()
    if algos and not alert.resolved and not alert.update:
        lines = [f"• *{mrkdwn(a)}*: {mrkdwn(t)}" if t else f"• *{mrkdwn(a)}*" for a, t in algos]
        blocks.append({"type": "section",
                       "text": {"type": "mrkdwn",
                                "text": truncate("*Algorithms that fired*\n" + "\n".join(lines),
                                                 SECTION_MAX)}})
    if graph_url:
        blocks.append({"type": "image", "image_url": graph_url,
                       "alt_text": truncate(mrkdwn(f"graph of {e.metric}"), 2000)})
    blocks.append({"type": "section",
                   "text": {"type": "mrkdwn",
                            "text": truncate(f"<{alert.link}|See this "
                                             f"{'incident' if alert.incident else 'anomaly'} "
                                             "in Skyline>",
                                             SECTION_MAX)}})
    # `text` is what notifications and clients without Block Kit show
    return {"text": truncate(mrkdwn(alert.summary()), SECTION_MAX), "blocks": blocks[:BLOCKS_MAX]}


class Slack:
    name = "slack"
    resolves = False
    wants_graph = False

    def __init__(self, cfg: SlackChannel, timeout: float, public_url: str | None = None):
        self.cfg = cfg
        self.client = http_client(timeout)
        # No image block: Slack fetches an image_url without credentials, and the graph
        # (/api/v1/anomalies/ID/graph.png) needs a login, so Slack would only get a 401. The
        # message links to the anomaly's page, which shows the chart.
        self.graph_base = public_url

    async def send(self, alert: Alert) -> None:
        assert self.cfg.webhook_url is not None
        r = await self.client.post(self.cfg.webhook_url.get_secret_value(),
                                   json=build_payload(alert, None))
        check_response(r, "Slack")

    async def aclose(self) -> None:
        await self.client.aclose()
