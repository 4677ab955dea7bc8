"""When a detector emits an event: the open-anomaly state machine, pure.

A metric judged anomalous opens an incident and emits an `anomalous` event. While it stays
anomalous, one more event is emitted each time EXPIRATION_TIME has passed since the last one
(measured on the metric's own timestamps, so a replay of old data behaves as the live analyzer
did, and re-judging the same point never emits twice). The first time it is judged normal
again, a `recovered` event closes the incident. A metric that could not be judged (too short,
stale, boring) leaves its incident as it is.

The analyzer keeps incidents in Redis between runs; crucible's replay keeps them in memory.
Both call the same two functions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

from skyline.core.errors import InvalidInput

Emit = Literal["anomalous", "recovered"] | None


@dataclass(frozen=True, slots=True)
class Incident:
    since: float  # timestamp of the first anomalous judgment
    last_event: float  # timestamp of the last anomalous event emitted
    events: int = 1  # anomalous events emitted for this incident

    def to_json(self) -> str:
        return json.dumps({"since": self.since, "last_event": self.last_event,
                           "events": self.events}, separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str | bytes) -> Incident:
        try:
            d = json.loads(raw)
            return cls(float(d["since"]), float(d["last_event"]), int(d.get("events", 1)))
        except (ValueError, KeyError, TypeError) as e:
            raise InvalidInput(f"not an incident: {e}") from None


def judged_anomalous(incident: Incident | None, timestamp: float,
                     expiration: float) -> tuple[Incident, bool]:
    """The incident after an anomalous judgment at `timestamp`, and whether to emit."""
    if incident is None:
        return Incident(timestamp, timestamp), True
    # a point already reported (the same data judged again) never emits twice
    if timestamp > incident.last_event and timestamp - incident.last_event >= expiration:
        return Incident(incident.since, timestamp, incident.events + 1), True
    return incident, False


def judged_normal(incident: Incident | None) -> bool:
    """Whether a normal judgment emits `recovered` (then the incident is closed)."""
    return incident is not None
