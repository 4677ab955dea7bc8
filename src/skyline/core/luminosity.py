"""What Luminosity finds, as plain records: a metric related to an anomaly, and an incident
(one or more metrics' incidents grouped) with its members. Shared by the analysis that makes
them and the store that keeps them (docs/luminosity.md)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class RelatedMetric:
    """A metric that moved with an anomaly, as stored and shown."""

    metric: str
    rank: int  # 1: the best
    coefficient: float
    shifted_coefficient: float
    shift_seconds: float  # > 0: it moved after the anomalous metric
    change: float
    score: float
    anomalous: bool = False  # it had an anomaly of its own near the time


@dataclass
class Member:
    metric: str
    event_id: str
    since: float
    relation: str  # origin | map | prefix | correlated
    coefficient: float | None = None
    shift_seconds: float | None = None
    ended: float | None = None


@dataclass
class Incident:
    id: str
    origin: str
    origin_event_id: str
    started: float
    last_joined: float
    members: dict[str, Member] = field(default_factory=dict)
    ended: float | None = None

    @property
    def open_members(self) -> int:
        return sum(1 for m in self.members.values() if m.ended is None)

    @property
    def is_open(self) -> bool:
        return self.ended is None
