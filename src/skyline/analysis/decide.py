"""Open anomalies between runs: which judgements become events, and the state kept in Redis.

The transitions themselves are skyline.analysis.incidents (shared with crucible's replay); this
module applies them to one run's judgements and stores the result in one Redis hash, so the
state survives restarts and every worker's results are decided in one place (the parent).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis

from skyline.analysis.incidents import Incident, judged_anomalous, judged_normal
from skyline.analysis.judge import Judgement
from skyline.core.errors import InvalidInput
from skyline.core.events import AnomalyEvent, event_id
from skyline.core.events import Status as EventStatus
from skyline.store import keys

log = logging.getLogger(__name__)

SOURCE = "analyzer"


@dataclass
class Decisions:
    events: list[AnomalyEvent] = field(default_factory=list)
    updates: dict[str, Incident] = field(default_factory=dict)
    closed: list[str] = field(default_factory=list)
    suppressed: int = 0  # anomalous judgements within EXPIRATION_TIME of the last event

    @property
    def anomalous(self) -> list[AnomalyEvent]:
        return [e for e in self.events if e.status == "anomalous"]

    @property
    def recovered(self) -> list[AnomalyEvent]:
        return [e for e in self.events if e.status == "recovered"]


def event_of(j: Judgement, status: EventStatus, created: float, source: str = SOURCE
             ) -> AnomalyEvent:
    # A recovery gets an id of its own: were a point first judged anomalous and later (new
    # settings) normal, both events would otherwise share one id and one would be lost.
    extra: dict[str, Any] = {} if status == "anomalous" else {
        "id": event_id(j.metric, j.timestamp, f"{source}/{status}")}
    if j.packed_window:
        return AnomalyEvent(
            metric=j.metric, timestamp=float(j.timestamp), value=float(j.value),
            score=float(j.score), source=source, window=j.packed_window,
            triggered=j.triggered, results=j.results, status=status,
            created=created, **extra)
    return AnomalyEvent.build(
        metric=j.metric, timestamp=j.timestamp, value=j.value, score=j.score, source=source,
        window_timestamps=j.window_timestamps, window_values=j.window_values,
        triggered=j.triggered, results=j.results, status=status, created=created, **extra)


def decide(anomalies: Sequence[Judgement], normal: Sequence[Judgement],
           incidents: Mapping[str, Incident], expiration: float,
           created: float | None = None) -> Decisions:
    created = time.time() if created is None else created
    out = Decisions()
    for j in sorted(anomalies, key=lambda j: j.metric):
        incident, emit = judged_anomalous(incidents.get(j.metric), j.timestamp, expiration)
        if emit:
            out.events.append(event_of(j, "anomalous", created))
            out.updates[j.metric] = incident
        else:
            out.suppressed += 1
    for j in sorted(normal, key=lambda j: j.metric):
        if judged_normal(incidents.get(j.metric)):
            out.events.append(event_of(j, "recovered", created))
            out.closed.append(j.metric)
    return out


class IncidentStore:
    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    def load(self) -> dict[str, Incident]:
        out: dict[str, Incident] = {}
        bad = []
        for k, v in self.client.hgetall(keys.ANALYZER_INCIDENTS).items():
            name = k.decode("utf-8", "replace") if isinstance(k, bytes) else str(k)
            try:
                out[name] = Incident.from_json(v)
            except InvalidInput as e:
                log.warning("dropping unreadable open-anomaly state of %s: %s", name, e)
                bad.append(name)
        if bad:
            self.client.hdel(keys.ANALYZER_INCIDENTS, *bad)
        return out

    def save(self, decisions: Decisions, forget: Iterable[str] = ()) -> None:
        """Write the new incidents; close the recovered ones and those of metrics that are
        gone from the hot store (`forget`)."""
        drop = sorted(set(decisions.closed) | set(forget))
        pipe = self.client.pipeline(transaction=False)
        if decisions.updates:
            pipe.hset(keys.ANALYZER_INCIDENTS,
                      mapping={k: v.to_json() for k, v in decisions.updates.items()})
        if drop:
            pipe.hdel(keys.ANALYZER_INCIDENTS, *drop)
        if decisions.updates or drop:
            pipe.execute()
