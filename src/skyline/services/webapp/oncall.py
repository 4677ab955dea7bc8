"""What is broken now, for the overview page and /api/v1/incidents: the open incidents (from
the analyzer's index keys.OPEN_INCIDENTS, one hash, so no analysis state is read), grouped by
namespace, with who silenced or acknowledged each; the metrics that stopped sending, grouped
by source; late components; and one status that says all of it in a word."""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from skyline.core.errors import InvalidInput, NotFound
from skyline.core.patterns import PatternSet
from skyline.runtime.context import Context
from skyline.store import keys
from skyline.store.sql import alerts as alert_store
from skyline.store.sql.alerts import Silence

MAX_NOTE = 500
# names listed per stale source; the count says how many more
STALE_NAMES_SHOWN = 10
# a component whose heartbeat is older than this many telemetry flushes is late
LATE_FLUSHES = 3


@dataclass(frozen=True)
class Ack:
    who: str
    at: float
    note: str


@dataclass(frozen=True)
class Incident:
    metric: str
    since: float
    last_event: float
    value: float | None  # the value the detector judged at the last event
    band_low: float | None
    band_high: float | None
    score: float
    source: str
    event: str
    silence: Silence | None = None
    ack: Ack | None = None

    def duration(self, now: float) -> float:
        return max(0.0, now - self.since)

    @property
    def quiet(self) -> bool:
        """Somebody already knows: silenced or acknowledged."""
        return self.silence is not None or self.ack is not None


@dataclass(frozen=True)
class IncidentGroup:
    """Incidents under one namespace (the metric name without its last element): six
    anomalies on one service are one row, not six unrelated ones."""

    namespace: str
    incidents: list[Incident]

    @property
    def since(self) -> float:
        return min(i.since for i in self.incidents)

    @property
    def score(self) -> float:
        return max(i.score for i in self.incidents)

    @property
    def quiet(self) -> bool:
        return all(i.quiet for i in self.incidents)


@dataclass(frozen=True)
class StaleSource:
    """Metrics of one source (the first two elements of their names, as a host or a job
    usually is) with no point for longer than STALE_PERIOD."""

    source: str
    stale: int
    total: int
    last_seen: float  # the newest point among the stale ones
    names: list[str]

    @property
    def stopped(self) -> bool:
        """Every metric of the source went quiet: the source stopped, not one metric."""
        return self.stale == self.total


@dataclass
class Now:
    time: float
    status: str  # ok | incidents | degraded
    reasons: list[str]
    groups: list[IncidentGroup]
    stale: list[StaleSource]
    late_components: list[tuple[str, float]] = field(default_factory=list)
    # instances whose heartbeat expired: (component.instance, seconds since the last one)
    stopped_components: list[tuple[str, float]] = field(default_factory=list)

    @property
    def incidents(self) -> list[Incident]:
        return [i for g in self.groups for i in g.incidents]


def _float(x: Any) -> float | None:
    return float(x) if isinstance(x, int | float) and math.isfinite(x) else None


def _text(b: bytes | str) -> str:
    return b if isinstance(b, str) else b.decode()


def namespace(metric: str) -> str:
    base = metric.split("{", 1)[0]
    return base.rsplit(".", 1)[0] if "." in base else base


def source_of(metric: str) -> str:
    return ".".join(metric.split("{", 1)[0].split(".")[:2])


def read_acks(ctx: Context) -> dict[str, tuple[float, Ack]]:
    out: dict[str, tuple[float, Ack]] = {}
    for k, raw in ctx.client.hgetall(keys.INCIDENT_ACKS).items():
        try:
            d = json.loads(raw)
            out[_text(k)] = (float(d["since"]), Ack(str(d["who"]), float(d["at"]),
                                                    str(d.get("note", ""))))
        except (ValueError, KeyError, TypeError):
            continue  # a damaged entry is an acknowledgement nobody can rely on: ignored
    return out


def open_incidents(ctx: Context, silences: list[Silence], now: float) -> list[Incident]:
    """Every open incident, longest open first, each with the silence that covers its
    metric and its acknowledgement (an acknowledgement of an earlier incident of the same
    metric does not carry over, and is dropped here)."""
    raw = ctx.client.hgetall(keys.OPEN_INCIDENTS)
    acks = read_acks(ctx)
    active = [s for s in silences if s.expires > now]
    patterns = PatternSet(s.pattern for s in active)
    out: list[Incident] = []
    for k, v in raw.items():
        metric = _text(k)
        found = _incident(metric, v)
        if found is None:
            continue
        hit = patterns.first(metric) if patterns else None
        ack = acks.get(metric)
        out.append(dataclasses.replace(
            found, silence=active[hit] if hit is not None else None,
            ack=ack[1] if ack is not None and ack[0] == found.since else None))
    open_since = {i.metric: i.since for i in out}
    # a minute's grace: an incident opened (and acknowledged) since the hash was read above
    gone = [m for m, (since, a) in acks.items()
            if open_since.get(m) != since and a.at < now - 60]
    if gone:
        ctx.client.hdel(keys.INCIDENT_ACKS, *gone)
    out.sort(key=lambda i: (i.since, i.metric))
    return out


def open_incident(ctx: Context, metric: str) -> Incident | None:
    """The metric's open incident, without its silence or acknowledgement."""
    raw = ctx.client.hget(keys.OPEN_INCIDENTS, metric)
    return _incident(metric, raw) if raw is not None else None


def _incident(metric: str, raw: bytes | str) -> Incident | None:
    try:
        d = json.loads(raw)
        since = float(d["since"])
    except (ValueError, KeyError, TypeError):
        return None  # a damaged entry: the analyzer rewrites it at its next event
    return Incident(
        metric=metric, since=since, last_event=_float(d.get("last_event")) or since,
        value=_float(d.get("value")), band_low=_float(d.get("band_low")),
        band_high=_float(d.get("band_high")), score=_float(d.get("score")) or 0.0,
        source=str(d.get("source", "")), event=str(d.get("event", "")))


def group(incidents: list[Incident]) -> list[IncidentGroup]:
    """Incidents grouped by namespace: loud groups first (not everything silenced or
    acknowledged), then the longest open."""
    by: dict[str, list[Incident]] = defaultdict(list)
    for i in incidents:
        by[namespace(i.metric)].append(i)
    groups = [IncidentGroup(ns, items) for ns, items in by.items()]
    groups.sort(key=lambda g: (g.quiet, g.since, g.namespace))
    return groups


def stale_sources(ctx: Context, now: float) -> list[StaleSource]:
    """Sources with metrics that sent nothing for STALE_PERIOD seconds: whole sources that
    stopped first, then the most stale metrics. One small read per metric (its last point)."""
    period = float(ctx.settings.STALE_PERIOD)
    names = ctx.store.names()
    if not names or period <= 0:
        return []
    last_t, _ = ctx.store.last_points(names)
    totals: dict[str, int] = defaultdict(int)
    stale: dict[str, list[tuple[str, float]]] = defaultdict(list)
    cutoff = now - period
    for name, t in zip(names, last_t.tolist(), strict=True):
        src = source_of(name)
        totals[src] += 1
        if math.isfinite(t) and t < cutoff:
            stale[src].append((name, t))
    out = [StaleSource(src, len(items), totals[src], max(t for _, t in items),
                       [n for n, _ in items[:STALE_NAMES_SHOWN]])
           for src, items in stale.items()]
    out.sort(key=lambda s: (not s.stopped, -s.stale, s.source))
    return out


def late_components(ctx: Context, components: dict[str, Any]) -> list[tuple[str, float]]:
    """Instances whose heartbeat is still there but older than it should be."""
    limit = max(30.0, LATE_FLUSHES * float(ctx.settings.telemetry.flush_interval))
    return sorted((name, float(beat["age_seconds"])) for name, beat in components.items()
                  if isinstance(beat.get("age_seconds"), int | float)
                  and beat["age_seconds"] > limit and not beat.get("stopped"))


def stopped_components(components: dict[str, Any]) -> list[tuple[str, float]]:
    """Instances whose heartbeat expired (health.heartbeats keeps them a day): stopped or
    dead, longest silent last."""
    return sorted(((name, float(beat["age_seconds"])) for name, beat in components.items()
                   if beat.get("stopped")), key=lambda x: (x[1], x[0]))


def what_now(ctx: Context, health: dict[str, Any], now: float | None = None) -> Now:
    """Everything the overview's "broken now" part shows, and the status word: `degraded`
    when a store is down, a component is late or stopped (its heartbeat expired), or a
    Thunder check is tripped (Skyline itself may be missing things),
    `incidents` when an incident is open or a source stopped sending, else `ok`."""
    t = time.time() if now is None else now
    reasons: list[str] = []
    if health["status"] != "ok":
        reasons.append("a store is unreachable")
    late = late_components(ctx, health.get("components", {}))
    if late:
        reasons.append(f"{len(late)} component(s) late: " + ", ".join(n for n, _ in late))
    dead = stopped_components(health.get("components", {}))
    if dead:
        reasons.append(f"{len(dead)} component(s) stopped (no heartbeat): "
                       + ", ".join(n for n, _ in dead))
    groups: list[IncidentGroup] = []
    stale: list[StaleSource] = []
    if health.get("redis", {}).get("ok"):
        silences = (alert_store.list_silences(ctx.engine, now=t)
                    if health.get("database", {}).get("ok") and ctx.engine is not None else [])
        groups = group(open_incidents(ctx, silences, t))
        stale = stale_sources(ctx, t)
    n_open = sum(len(g.incidents) for g in groups)
    if n_open:
        loud = sum(1 for g in groups for i in g.incidents if not i.quiet)
        reasons.append(f"{n_open} open incident(s), {loud} neither silenced nor acknowledged")
    # Thunder's tripped checks: Skyline itself is unwell (docs/thunder.md)
    tripped = sorted(i.metric.removeprefix("skyline.thunder.") for g in groups
                     for i in g.incidents if i.source == "thunder")
    if tripped:
        reasons.append(f"Thunder: {len(tripped)} check(s) tripped: " + ", ".join(tripped))
    stopped = [s for s in stale if s.stopped]
    if stopped:
        reasons.append(f"{len(stopped)} source(s) stopped sending")
    n_stale = sum(s.stale for s in stale)
    if n_stale:
        reasons.append(f"{n_stale} metric(s) with no data")
    status = ("degraded" if health["status"] != "ok" or late or dead or tripped
              else "incidents" if n_open or stopped else "ok")
    return Now(t, status, reasons, groups, stale, late, dead)


# events of the feed within this many seconds of the previous one read as one burst
BURST_GAP = 300.0
# namespaces a burst's heading names; the count says how many more
BURST_NAMESPACES_SHOWN = 3


@dataclass(frozen=True)
class Burst:
    """Events of a feed (newest first) each within BURST_GAP of the one before: six
    anomalies within three minutes read as one burst, not six unrelated rows."""

    items: list[Any]  # AnomalyEvent-like: .timestamp, .metric

    @property
    def start(self) -> float:
        return min(e.timestamp for e in self.items)

    @property
    def end(self) -> float:
        return max(e.timestamp for e in self.items)

    @property
    def namespaces(self) -> list[tuple[str, int]]:
        """(namespace, events) by most events, then name."""
        counts: dict[str, int] = defaultdict(int)
        for e in self.items:
            counts[namespace(e.metric)] += 1
        return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))


def bursts(items: list[Any], gap: float = BURST_GAP) -> list[Burst]:
    """The feed cut where two neighbouring events are more than `gap` seconds apart; the
    order of the feed is kept."""
    out: list[Burst] = []
    current: list[Any] = []
    for e in items:
        if current and abs(current[-1].timestamp - e.timestamp) > gap:
            out.append(Burst(current))
            current = []
        current.append(e)
    if current:
        out.append(Burst(current))
    return out


def acknowledge(ctx: Context, metric: str, who: str, note: str, now: float | None = None
                ) -> Ack:
    """Acknowledge the metric's open incident: NotFound when none is open."""
    note = note.strip()
    if len(note) > MAX_NOTE:
        raise InvalidInput(f"note is longer than {MAX_NOTE} characters")
    raw = ctx.client.hget(keys.OPEN_INCIDENTS, metric)
    if raw is None:
        raise NotFound(f"no open incident on {metric!r}")
    try:
        since = float(json.loads(raw)["since"])
    except (ValueError, KeyError, TypeError):
        raise NotFound(f"no readable open incident on {metric!r}") from None
    ack = Ack(who[:255], time.time() if now is None else now, note)
    ctx.client.hset(keys.INCIDENT_ACKS, metric, json.dumps(
        {"since": since, "who": ack.who, "at": ack.at, "note": ack.note}))
    return ack
