"""Luminosity in SQL: the related metrics of each anomaly, and incidents with their members.

Written by the luminosity service only (idempotent: an event handled twice changes nothing),
read by the web app and the CLI.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from skyline.core.errors import InvalidInput, NotFound
from skyline.core.luminosity import Incident, Member, RelatedMetric
from skyline.store.sql.anomalies import Conn, _tx, metric_id
from skyline.store.sql.models import (
    incident_members,
    incidents,
    luminosity_correlations,
    metrics,
)


def save_correlations(conn: Conn, event_id: str, timestamp: float,
                      related: Sequence[RelatedMetric]) -> int:
    """Store an anomaly's related metrics (replacing any stored before: the same event
    correlated again gives the same rows); how many."""
    now = time.time()
    with _tx(conn) as c:
        c.execute(luminosity_correlations.delete()
                  .where(luminosity_correlations.c.event_id == event_id))
        rows = [{
            "event_id": event_id, "metric_id": metric_id(c, r.metric),
            "timestamp": float(timestamp), "rank": r.rank, "coefficient": r.coefficient,
            "shifted_coefficient": r.shifted_coefficient, "shift_seconds": r.shift_seconds,
            "change": min(r.change, 1e12), "score": r.score, "anomalous": r.anomalous,
            "created": now} for r in related]
        if rows:
            c.execute(luminosity_correlations.insert(), rows)
        return len(rows)


def related_metrics(conn: Conn, event_id: str) -> list[RelatedMetric]:
    """An anomaly's related metrics, best first (empty when none were found or it was not
    correlated)."""
    lc = luminosity_correlations
    stmt = (sa.select(metrics.c.name, lc.c.rank, lc.c.coefficient, lc.c.shifted_coefficient,
                      lc.c.shift_seconds, lc.c.change, lc.c.score, lc.c.anomalous)
            .join_from(lc, metrics, lc.c.metric_id == metrics.c.id)
            .where(lc.c.event_id == event_id).order_by(lc.c.rank))
    with _tx(conn) as c:
        return [RelatedMetric(metric=r.name, rank=int(r.rank), coefficient=float(r.coefficient),
                              shifted_coefficient=float(r.shifted_coefficient),
                              shift_seconds=float(r.shift_seconds), change=float(r.change),
                              score=float(r.score), anomalous=bool(r.anomalous))
                for r in c.execute(stmt)]


def save_incident(conn: Conn, inc: Incident) -> None:
    """Write an incident and its members as they are now (insert or update)."""
    now = time.time()
    with _tx(conn) as c:
        ids = {m: metric_id(c, m) for m in inc.members}
        values: dict[str, Any] = {
            "origin_metric_id": ids[inc.origin],
            "origin_event_id": inc.members[inc.origin].event_id,
            "started": inc.started, "last_joined": inc.last_joined, "ended": inc.ended,
            "status": "open" if inc.is_open else "closed", "members": len(inc.members),
            "open_members": inc.open_members, "updated": now}
        found = c.execute(sa.select(incidents.c.id).where(incidents.c.id == inc.id)).first()
        if found is None:
            c.execute(incidents.insert().values(id=inc.id, **values))
        else:
            c.execute(incidents.update().where(incidents.c.id == inc.id).values(**values))
        stored = {r.metric_id for r in c.execute(
            sa.select(incident_members.c.metric_id)
            .where(incident_members.c.incident_id == inc.id))}
        for name, m in inc.members.items():
            row = {"event_id": m.event_id, "since": m.since, "ended": m.ended,
                   "relation": m.relation, "coefficient": m.coefficient,
                   "shift_seconds": m.shift_seconds}
            if ids[name] in stored:
                c.execute(incident_members.update().where(
                    incident_members.c.incident_id == inc.id,
                    incident_members.c.metric_id == ids[name]).values(**row))
            else:
                c.execute(incident_members.insert().values(
                    incident_id=inc.id, metric_id=ids[name], joined=now, **row))


def _members(c: sa.Connection, ids: Sequence[str]) -> dict[str, list[Member]]:
    im = incident_members
    out: dict[str, list[Member]] = {i: [] for i in ids}
    if not ids:
        return out
    stmt = (sa.select(im, metrics.c.name).join_from(im, metrics, im.c.metric_id == metrics.c.id)
            .where(im.c.incident_id.in_(list(ids))).order_by(im.c.since, metrics.c.name))
    for r in c.execute(stmt):
        out[r.incident_id].append(Member(
            metric=r.name, event_id=r.event_id, since=float(r.since), relation=r.relation,
            coefficient=r.coefficient, shift_seconds=r.shift_seconds, ended=r.ended))
    return out


def _incident(row: Any, members: list[Member]) -> Incident:
    inc = Incident(id=row.id, origin=row.origin, origin_event_id=row.origin_event_id,
                   started=float(row.started), last_joined=float(row.last_joined),
                   members={m.metric: m for m in members}, ended=row.ended)
    return inc


def _select() -> sa.Select[Any]:
    return sa.select(incidents, metrics.c.name.label("origin")).join_from(
        incidents, metrics, incidents.c.origin_metric_id == metrics.c.id)


def open_incidents(conn: Conn) -> list[Incident]:
    """Every open incident with its members (what the grouping starts from)."""
    with _tx(conn) as c:
        rows = list(c.execute(_select().where(incidents.c.status == "open")))
        members = _members(c, [r.id for r in rows])
        return [_incident(r, members[r.id]) for r in rows]


def list_incidents(conn: Conn, limit: int = 50, status: str | None = None
                   ) -> list[Incident]:
    """Incidents, open ones first, then newest first."""
    if limit < 1:
        raise InvalidInput(f"limit must be at least 1, not {limit}")
    if status not in (None, "open", "closed"):
        raise InvalidInput(f"status must be open or closed, not {status!r}")
    stmt = _select()
    if status is not None:
        stmt = stmt.where(incidents.c.status == status)
    stmt = stmt.order_by(sa.case((incidents.c.status == "open", 0), else_=1),
                         incidents.c.started.desc(), incidents.c.id).limit(limit)
    with _tx(conn) as c:
        rows = list(c.execute(stmt))
        members = _members(c, [r.id for r in rows])
        return [_incident(r, members[r.id]) for r in rows]


def incident_of_event(conn: Conn, event_id: str) -> Incident | None:
    """The incident whose member began with this anomaly event, if any."""
    with _tx(conn) as c:
        found = c.execute(sa.select(incident_members.c.incident_id)
                          .where(incident_members.c.event_id == event_id).limit(1)).first()
        if found is None:
            return None
        row = c.execute(_select().where(incidents.c.id == found.incident_id)).first()
        if row is None:
            return None
        return _incident(row, _members(c, [row.id])[row.id])


def get_incident(conn: Conn, incident_id: str) -> Incident:
    with _tx(conn) as c:
        row = c.execute(_select().where(incidents.c.id == incident_id)).first()
        if row is None:
            raise NotFound(f"incident {incident_id!r} not found")
        return _incident(row, _members(c, [row.id])[row.id])
