"""What an alert says, independent of the channel, and the escaping each channel needs.

Metric names come from the outside world (any client may post `<b>*x*</b>`), so every
channel escapes them for its own syntax: HTML in email, mrkdwn in Slack, SD-PARAM values in
syslog; the JSON channels carry them as JSON strings.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from typing import Any

from skyline.core.events import AnomalyEvent
from skyline.core.timeutil import iso

Kind = str  # "alert" | "update" | "resolve" | "test"
MEMBERS_SHOWN = 30  # an incident's members listed in an alert; more are counted


@dataclass(frozen=True)
class Alert:
    """One alert to deliver on one channel: the event, what kind of message, the matching
    rule's options and expiration, and where the anomaly can be seen."""

    event: AnomalyEvent
    kind: Kind
    link: str
    options: dict[str, Any] = field(default_factory=dict)
    expiration: int = 3600
    graph: bytes | None = None  # PNG, for the channels that show it
    # alert rules with group = "incident": the incident (the incident stream's entry, with
    # its members as they were when the alert was built); None for an alert per metric
    incident: dict[str, Any] | None = None

    @property
    def metric(self) -> str:
        return self.event.metric

    @property
    def update(self) -> bool:
        return self.kind == "update"

    def members(self) -> list[str]:
        return [str(m) for m in (self.incident or {}).get("members") or ()]

    def members_text(self) -> str:
        names = self.members()
        text = ", ".join(names[:MEMBERS_SHOWN])
        if len(names) > MEMBERS_SHOWN:
            text += f" and {len(names) - MEMBERS_SHOWN} more"
        return text

    @property
    def when(self) -> str:
        return iso(self.event.timestamp)

    @property
    def resolved(self) -> bool:
        return self.kind == "resolve"

    @property
    def test(self) -> bool:
        return self.kind == "test"

    def title(self) -> str:
        """One line, plain text (not escaped)."""
        e = self.event
        if self.test:
            return f"Skyline test alert: {e.metric}"
        if self.incident is not None:
            return self._incident_title()
        if e.source == "thunder" and e.results:
            # Skyline watching itself: the check's own sentence says what is wrong
            what = "recovered" if self.resolved else "problem"
            return f"Skyline Thunder {what}: {e.results[0].text}"
        if self.resolved:
            if e.status == "new_level":
                return (f"Skyline: {e.metric} settled at a new level ({fmt(e.value)}) at "
                        f"{self.when}")
            return f"Skyline: {e.metric} recovered at {self.when}"
        return f"Skyline anomaly: {e.metric} = {fmt(e.value)} at {self.when}"

    def _incident_title(self) -> str:
        i = self.incident or {}
        n = len(self.members())
        origin = str(i.get("origin") or self.event.metric)
        metrics = f"{n} metric{'s' if n != 1 else ''}"
        if self.resolved:
            return f"Skyline: incident of {origin} over ({metrics}) at {self.when}"
        if self.update:
            return (f"Skyline incident update: {metrics}, {int(i.get('open_members') or 0)} "
                    f"still anomalous (origin {origin})")
        e = self.event
        return f"Skyline incident: {e.metric} = {fmt(e.value)} at {self.when} ({metrics})"

    def algorithms(self) -> list[tuple[str, str]]:
        """(algorithm, explanation) of each algorithm that fired, in the event's order."""
        texts = {r.algorithm: r.text for r in self.event.results}
        out = [(a, texts.get(a, "")) for a in self.event.triggered]
        # A detector that reported results but no triggered list still explains itself.
        if not out:
            out = [(r.algorithm, r.text) for r in self.event.results if r.verdict]
        return out

    def facts(self) -> list[tuple[str, str]]:
        """Label/value pairs every channel shows (plain text)."""
        e = self.event
        out = [
            ("metric", e.metric),
            ("time", f"{self.when} ({e.timestamp:.0f})"),
            ("value", fmt(e.value)),
            ("score", f"{e.score:.3f}"),
            ("source", e.source),
            ("status", "test" if self.test else e.status),
        ]
        if self.incident is not None:
            i = self.incident
            out += [("incident", str(i.get("incident", ""))),
                    ("origin", str(i.get("origin", ""))),
                    (f"members ({len(self.members())}, "
                     f"{int(i.get('open_members') or 0)} open)", self.members_text())]
        return out

    def summary(self, limit: int | None = None) -> str:
        """Title plus the algorithms that fired, one line, at most `limit` characters."""
        text = self.title()
        algos = ", ".join(a for a, _ in self.algorithms())
        if algos and not self.resolved and not self.update:
            text += f" [{algos}]"
        return truncate(text, limit) if limit else text

    def as_dict(self) -> dict[str, Any]:
        """The alert as JSON-ready data (webhook and PagerDuty custom_details)."""
        e = self.event
        return {
            "id": e.id,
            "kind": self.kind,
            "metric": e.metric,
            "timestamp": e.timestamp,
            "time": self.when,
            "value": e.value,
            "score": e.score,
            "source": e.source,
            "status": "test" if self.test else e.status,
            "triggered": list(e.triggered),
            "algorithms": [{"algorithm": r.algorithm, "verdict": r.verdict,
                            "statistic": r.statistic, "limit": r.limit, "text": r.text}
                           for r in e.results],
            "link": self.link,
            "expiration": self.expiration,
            **({"incident": self._incident_dict()} if self.incident is not None else {}),
        }

    def _incident_dict(self) -> dict[str, Any]:
        i = self.incident or {}
        return {"id": i.get("incident"), "origin": i.get("origin"),
                "started": i.get("started"), "ended": i.get("ended"),
                "members": self.members(), "open_members": i.get("open_members"),
                "change": i.get("change")}


def fmt(value: float) -> str:
    return f"{value:.6g}"


def truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: max(0, limit - 1)] + "…"


def link_for(public_url: str, event_id: str) -> str:
    return f"{public_url.rstrip('/')}/anomalies/{event_id}"


def incident_link(public_url: str, incident_id: str) -> str:
    return f"{public_url.rstrip('/')}/luminosity/incidents/{incident_id}"


def graph_url(public_url: str, event_id: str) -> str:
    return f"{public_url.rstrip('/')}/api/v1/anomalies/{event_id}/graph.png"


# escaping --------------------------------------------------------------------------------------
def html_text(text: str) -> str:
    return html.escape(text, quote=True)


def mrkdwn(text: str) -> str:
    """Slack's three control characters; Slack decodes exactly these entities."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def mrkdwn_code(text: str) -> str:
    """`text` as inline code: inside it Slack applies no *bold*, _italic_, ~strike~ or
    links, so formatting characters in a metric name show as they are. A backtick would end
    the span, so it becomes the look-alike U+02CB."""
    return "`" + mrkdwn(text.replace("`", "\u02cb")) + "`"


_HEADER_BREAK = re.compile(r"[\r\n\t\x00-\x1f\x7f]+")


def one_line(text: str) -> str:
    """No control characters: for mail headers (no header injection) and syslog fields."""
    return _HEADER_BREAK.sub(" ", text)
