"""Incidents across metrics: one metric's incident (skyline.analysis.incidents: one metric
broken, from its first anomalous point to recovered or new level) joins an *incident* of
several metrics when it began shortly after that incident's newest member and is related to
one of its members. Pure: the state lives in memory, the caller stores it (SQL) and says which
metrics are correlated (skyline.analysis.correlation on the hot store).

- Related means, in this order: listed together in a correlation map (LUMINOSITY_CORRELATION_MAPS),
  sharing the first `prefix_depth` dotted elements of the name (0: off), or correlated (the
  caller's `relate` answers with the coefficient and lag).
- "Shortly after": the metric's incident began at most `window` seconds after the incident's
  newest member began (and not before its origin minus `window`).
- Among several candidate incidents, a map or prefix relation wins over a correlation, then
  the strongest |coefficient|, then the earliest incident.
- The origin (the probable cause) is the earliest member. An incident ends when every member
  has ended (recovered or new level); a member's anomalous event while its incident is open is
  a re-alert and changes nothing.
- The incident's id is a hash of its origin's event id: the same events give the same ids
  after a restart or a replay.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from skyline.analysis.correlation import CorrelationParams
from skyline.core.errors import InvalidInput
from skyline.core.luminosity import Incident, Member
from skyline.core.patterns import Pattern, compile_pattern

# metric -> (coefficient, shift seconds) of the candidates it is correlated with
Relate = Callable[[str, float, Sequence[str]], dict[str, tuple[float, float]]]


def incident_id(origin_event_id: str) -> str:
    return hashlib.sha256(f"incident\x00{origin_event_id}".encode()).hexdigest()[:32]


@dataclass(frozen=True)
class GroupingRules:
    window: float = 300.0
    prefix_depth: int = 0
    min_coefficient: float = 0.75  # |shifted coefficient| to count as correlated
    min_baseline: float = 0.2  # correlation.groupable
    before: int = 240  # steps of history compared (longer than Luminosity's window: the
    # baseline co-movement is the evidence, and only a few series are read)
    after: int = 0  # no points after the new member's start: it is grouped at once (the
    # origin moved before it, so its lag is <= 0 and needs no later points either)

    def params(self, base: CorrelationParams) -> CorrelationParams:
        """The correlation parameters of the grouping test."""
        return dataclasses.replace(base, threshold=self.min_coefficient, before=self.before,
                                   after=self.after)
    maps: tuple[tuple[str, ...], ...] = ()  # each: patterns of metrics related to each other

    def __post_init__(self) -> None:
        if self.window < 0 or self.prefix_depth < 0:
            raise InvalidInput("incident grouping: window and prefix_depth must not be "
                               "negative")


@dataclass(frozen=True)
class Placed:
    incident: Incident
    member: Member
    opened: bool  # this metric's incident opened a new incident (it is the origin)
    changed: bool  # anything changed (False: a re-delivered or re-alerted event)


class Grouper:
    def __init__(self, rules: GroupingRules, relate: Relate,
                 incidents: Iterable[Incident] = ()) -> None:
        self.rules = rules
        self.relate = relate
        self.open: dict[str, Incident] = {}
        self._by_metric: dict[str, str] = {}  # metric -> open incident it is a member of
        self._maps: list[list[Pattern]] = [[compile_pattern(p) for p in m] for m in rules.maps]
        for inc in incidents:
            self._keep(inc)

    def _keep(self, inc: Incident) -> None:
        if inc.is_open:
            self.open[inc.id] = inc
            for m in inc.members:
                self._by_metric[m] = inc.id

    def _map_related(self, a: str, b: str) -> bool:
        return any(any(p.matches(a) for p in m) and any(p.matches(b) for p in m)
                   for m in self._maps)

    def _prefix_related(self, a: str, b: str) -> bool:
        d = self.rules.prefix_depth
        if d <= 0:
            return False
        pa, pb = a.split("{", 1)[0].split("."), b.split("{", 1)[0].split(".")
        return len(pa) > d and len(pb) > d and pa[:d] == pb[:d]

    def anomalous(self, metric: str, since: float, event_id: str) -> Placed:
        """A metric's incident began at `since` (its anomalous event `event_id`)."""
        held = self._by_metric.get(metric)
        if held is not None:
            inc = self.open[held]
            member = inc.members[metric]
            if member.ended is None:
                return Placed(inc, member, False, False)  # a re-alert, or delivered twice
            if since - member.ended <= self.rules.window:
                member.ended = None  # broken again soon after: the same incident
                member.event_id, member.since = event_id, since
                return Placed(inc, member, False, True)
        w = self.rules.window
        near = [inc for inc in self.open.values()
                if inc.started - w <= since <= inc.last_joined + w and metric not in inc.members]
        best: tuple[int, float, float] | None = None
        choice: tuple[Incident, Member] | None = None
        correlated: dict[str, tuple[float, float]] = {}
        # correlated with the origin: testing every member would multiply the chances that
        # an unrelated metric passes by luck (20 members, 20 tries)
        others = [inc.origin for inc in near]
        if others:
            correlated = self.relate(metric, since, others)
        for inc in sorted(near, key=lambda i: (i.started, i.id)):
            for other in inc.members:
                if self._map_related(metric, other):
                    key, member = (2, 1.0, -inc.started), Member(metric, event_id, since, "map")
                elif self._prefix_related(metric, other):
                    key, member = (2, 1.0, -inc.started), Member(metric, event_id, since,
                                                                 "prefix")
                elif other == inc.origin and other in correlated:
                    coef, shift = correlated[other]
                    key = (1, abs(coef), -inc.started)
                    member = Member(metric, event_id, since, "correlated", coef, shift)
                else:
                    continue
                if best is None or key > best:
                    best, choice = key, (inc, member)
        if choice is not None:
            inc, member = choice
            inc.members[metric] = member
            inc.last_joined = max(inc.last_joined, since)
            if since < inc.started:  # a member that began earlier is the probable origin
                inc.started, inc.origin = since, metric
            self._by_metric[metric] = inc.id
            return Placed(inc, member, False, True)
        member = Member(metric, event_id, since, "origin")
        inc = Incident(incident_id(event_id), metric, event_id, since, since, {metric: member})
        self._keep(inc)
        return Placed(inc, member, True, True)

    def ended(self, metric: str, t: float) -> Incident | None:
        """The metric's incident ended at `t` (recovered, new level, or vetoed): its incident,
        if it is a member of an open one (closed now when it was the last open member)."""
        held = self._by_metric.get(metric)
        if held is None:
            return None
        inc = self.open[held]
        member = inc.members[metric]
        if member.ended is None:
            member.ended = t
        if inc.open_members == 0:
            inc.ended = max(m.ended or t for m in inc.members.values())
            del self.open[inc.id]
            for m in inc.members:
                if self._by_metric.get(m) == inc.id:
                    del self._by_metric[m]
        return inc
