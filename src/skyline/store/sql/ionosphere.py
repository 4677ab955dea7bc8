"""Ionosphere in SQL: operators' feedback, profiles and matches (docs/ionosphere.md).

Profiles are written by whoever teaches (the web app, the CLI); matches by panorama from the
stage verdicts on the events it stores (idempotent on (event, profile)). Every function takes an
Engine (its own transaction) or a Connection (the caller's transaction).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from skyline.core.errors import InvalidInput, NotFound
from skyline.core.events import AnomalyEvent
from skyline.core.ionosphere import (
    FEATURES_VERSION,
    Feedback,
    Match,
    Profile,
    check_label,
    features,
    pack_values,
    regularise,
    unpack_values,
)
from skyline.core.types import FloatArray
from skyline.store.sql.anomalies import MYSQL_DUP_ENTRY, Conn, _tx, metric_id
from skyline.store.sql.models import (
    ionosphere_feedback,
    ionosphere_matches,
    ionosphere_profiles,
    metrics,
)

MAX_POINTS = 100_000  # a profile longer than this is refused (a month at 30 s)

# -- feedback ------------------------------------------------------------------------------


def add_feedback(conn: Conn, event_id: str, metric: str, label: str, who: str,
                 note: str = "", profile_id: int | None = None) -> Feedback:
    label = check_label(label)
    now = time.time()
    with _tx(conn) as c:
        mid = metric_id(c, metric)
        row = {"event_id": event_id, "metric_id": mid, "label": label, "who": who[:255],
               "note": note, "created": now, "profile_id": profile_id}
        res = c.execute(ionosphere_feedback.insert().values(**row))
        fid = int(res.inserted_primary_key[0])  # type: ignore[index]
    return Feedback(id=fid, event_id=event_id, metric=metric, label=label, who=who[:255],
                    note=note, created=now, profile_id=profile_id)


def feedback_for(conn: Conn, event_id: str) -> list[Feedback]:
    """An anomaly's feedback, oldest first."""
    f = ionosphere_feedback
    stmt = (sa.select(f, metrics.c.name).join_from(f, metrics, f.c.metric_id == metrics.c.id)
            .where(f.c.event_id == event_id).order_by(f.c.id))
    with _tx(conn) as c:
        return [Feedback(id=int(r.id), event_id=r.event_id, metric=r.name, label=r.label,
                         who=r.who, note=r.note, created=float(r.created),
                         profile_id=r.profile_id) for r in c.execute(stmt)]


# -- profiles ------------------------------------------------------------------------------


def create_profile(conn: Conn, metric: str, label: str, timestamps: FloatArray,
                   values: FloatArray, *, anchor: float | None = None,
                   event_id: str | None = None, who: str = "", note: str = "",
                   parent_id: int | None = None, resolution: float | None = None) -> Profile:
    """A profile of `metric` from its points (put on a regular grid at their median step, or
    `resolution`), enabled at once. InvalidInput for a label not known, fewer than 2 points,
    or more than MAX_POINTS on the grid."""
    label = check_label(label)
    start, res, grid = regularise(np.asarray(timestamps, dtype=np.float64),
                                  np.asarray(values, dtype=np.float64), resolution)
    if len(grid) > MAX_POINTS:
        raise InvalidInput(f"a profile may hold at most {MAX_POINTS} points, not {len(grid)}")
    end = start + res * (len(grid) - 1)
    anchor = end if anchor is None else float(anchor)
    feats = features(grid)
    now = time.time()
    row: dict[str, Any] = {
        "label": label, "event_id": event_id, "anchor": anchor, "start": start,
        "resolution": res, "points": len(grid), "series": pack_values(grid),
        "features": feats, "features_version": FEATURES_VERSION, "who": who[:255],
        "note": note, "created": now, "enabled": True, "validated": False,
        "matched_count": 0, "last_matched": None, "parent_id": parent_id,
        "disabled_reason": ""}
    with _tx(conn) as c:
        row["metric_id"] = metric_id(c, metric)
        res_ = c.execute(ionosphere_profiles.insert().values(**row))
        pid = int(res_.inserted_primary_key[0])  # type: ignore[index]
    return Profile(id=pid, metric=metric, label=label, start=start, resolution=res,
                   values=grid, anchor=anchor, event_id=event_id, who=who[:255], note=note,
                   created=now, parent_id=parent_id, features=feats)


def _profile(m: Any) -> Profile:
    return Profile(
        id=int(m["id"]), metric=m["name"], label=m["label"], start=float(m["start"]),
        resolution=float(m["resolution"]), values=unpack_values(bytes(m["series"])),
        anchor=float(m["anchor"]), event_id=m["event_id"], who=m["who"], note=m["note"],
        created=float(m["created"]), enabled=bool(m["enabled"]),
        validated=bool(m["validated"]), matched_count=int(m["matched_count"]),
        last_matched=None if m["last_matched"] is None else float(m["last_matched"]),
        parent_id=m["parent_id"], features=dict(m["features"] or {}),
        features_version=int(m["features_version"]),
        disabled_reason=m["disabled_reason"] or "")


def _profiles_select() -> sa.Select[Any]:
    p = ionosphere_profiles
    return sa.select(p, metrics.c.name).join_from(p, metrics, p.c.metric_id == metrics.c.id)


def get_profile(conn: Conn, profile_id: int) -> Profile:
    with _tx(conn) as c:
        row = c.execute(_profiles_select()
                        .where(ionosphere_profiles.c.id == int(profile_id))).first()
    if row is None:
        raise NotFound(f"profile {profile_id} not found")
    return _profile(row._mapping)


def list_profiles(conn: Conn, metric: str | None = None, enabled: bool | None = None,
                  limit: int = 1000) -> list[Profile]:
    """Profiles, one metric's or all, newest first."""
    p = ionosphere_profiles
    stmt = _profiles_select().order_by(p.c.id.desc()).limit(limit)
    if enabled is not None:
        stmt = stmt.where(p.c.enabled == enabled)
    with _tx(conn) as c:
        if metric is not None:
            mid = metric_id(c, metric, create=False)
            if mid is None:
                return []
            stmt = stmt.where(p.c.metric_id == mid)
        return [_profile(r._mapping) for r in c.execute(stmt)]


def profile_metrics(conn: Conn) -> list[str]:
    """The metrics that have at least one enabled profile."""
    p = ionosphere_profiles
    stmt = (sa.select(metrics.c.name).distinct()
            .join_from(p, metrics, p.c.metric_id == metrics.c.id).where(p.c.enabled.is_(True)))
    with _tx(conn) as c:
        return sorted(r.name for r in c.execute(stmt))


def set_enabled(conn: Conn, profile_id: int, enabled: bool, reason: str = "") -> list[int]:
    """Enable or disable a profile; disabling also disables every profile learnt from it
    (transitively). The ids changed. NotFound for an unknown profile."""
    p = ionosphere_profiles
    with _tx(conn) as c:
        if c.execute(sa.select(p.c.id).where(p.c.id == int(profile_id))).first() is None:
            raise NotFound(f"profile {profile_id} not found")
        ids = [int(profile_id)]
        if not enabled:
            frontier = [int(profile_id)]
            while frontier:
                kids = [int(r.id) for r in c.execute(
                    sa.select(p.c.id).where(p.c.parent_id.in_(frontier)))]
                kids = [k for k in kids if k not in ids]
                ids += kids
                frontier = kids
        c.execute(p.update().where(p.c.id.in_(ids)).values(
            enabled=enabled, disabled_reason="" if enabled else reason))
        return ids


def validate_profile(conn: Conn, profile_id: int, validated: bool = True) -> None:
    p = ionosphere_profiles
    with _tx(conn) as c:
        res = c.execute(p.update().where(p.c.id == int(profile_id))
                        .values(validated=validated))
        if res.rowcount == 0:
            raise NotFound(f"profile {profile_id} not found")


def delete_profile(conn: Conn, profile_id: int) -> None:
    """Delete a profile and its matches (profiles learnt from it keep theirs, orphaned)."""
    p = ionosphere_profiles
    with _tx(conn) as c:
        c.execute(ionosphere_matches.delete()
                  .where(ionosphere_matches.c.profile_id == int(profile_id)))
        c.execute(p.update().where(p.c.parent_id == int(profile_id)).values(parent_id=None))
        if c.execute(p.delete().where(p.c.id == int(profile_id))).rowcount == 0:
            raise NotFound(f"profile {profile_id} not found")


# -- matches -------------------------------------------------------------------------------


def _insert_match(c: Connection, values: dict[str, Any]) -> bool:
    t = ionosphere_matches
    name = c.dialect.name
    if name in ("postgresql", "sqlite"):
        ins = postgresql.insert if name == "postgresql" else sqlite.insert
        stmt = ins(t).values(**values).on_conflict_do_nothing(
            index_elements=[t.c.event_id, t.c.profile_id])
        return c.execute(stmt.returning(t.c.id)).first() is not None
    try:
        c.execute(t.insert().values(**values))
    except sa.exc.IntegrityError as e:
        args: tuple[Any, ...] = getattr(e.orig, "args", ())
        if not args or args[0] != MYSQL_DUP_ENTRY:
            raise
        return False
    return True


def record_match(conn: Conn, profile_id: int, metric: str, event_id: str, timestamp: float,
                 method: str, similarity: float, figures: Mapping[str, float],
                 applied: bool) -> bool:
    """Record that candidate `event_id` matched the profile, and count it on the profile;
    False (nothing changed) when it was recorded already, or the profile no longer exists."""
    p = ionosphere_profiles
    now = time.time()
    with _tx(conn) as c:
        if c.execute(sa.select(p.c.id).where(p.c.id == int(profile_id))).first() is None:
            return False
        row = {"profile_id": int(profile_id), "metric_id": metric_id(c, metric),
               "event_id": event_id, "timestamp": float(timestamp), "method": method,
               "similarity": float(similarity),
               "figures": {k: float(v) for k, v in figures.items()}, "applied": bool(applied),
               "created": now, "validated": None, "reviewed_by": ""}
        if not _insert_match(c, row):
            return False
        c.execute(p.update().where(p.c.id == int(profile_id)).values(
            matched_count=p.c.matched_count + 1,
            last_matched=sa.func.coalesce(
                sa.case((p.c.last_matched > float(timestamp), p.c.last_matched),
                        else_=float(timestamp)), float(timestamp))))
        return True


def _match(m: Any) -> Match:
    return Match(id=int(m["id"]), profile_id=int(m["profile_id"]), metric=m["name"],
                 event_id=m["event_id"], timestamp=float(m["timestamp"]), method=m["method"],
                 similarity=float(m["similarity"]), figures=dict(m["figures"] or {}),
                 applied=bool(m["applied"]), created=float(m["created"]),
                 validated=None if m["validated"] is None else bool(m["validated"]),
                 reviewed_by=m["reviewed_by"] or "")


def list_matches(conn: Conn, *, profile_id: int | None = None, metric: str | None = None,
                 event_id: str | None = None, limit: int = 200) -> list[Match]:
    """Matches, newest candidate first, filtered by profile, metric or candidate event."""
    t = ionosphere_matches
    stmt = (sa.select(t, metrics.c.name).join_from(t, metrics, t.c.metric_id == metrics.c.id)
            .order_by(t.c.timestamp.desc(), t.c.id.desc()).limit(limit))
    if profile_id is not None:
        stmt = stmt.where(t.c.profile_id == int(profile_id))
    if event_id is not None:
        stmt = stmt.where(t.c.event_id == event_id)
    with _tx(conn) as c:
        if metric is not None:
            mid = metric_id(c, metric, create=False)
            if mid is None:
                return []
            stmt = stmt.where(t.c.metric_id == mid)
        return [_match(r._mapping) for r in c.execute(stmt)]


def review_match(conn: Conn, match_id: int, valid: bool, who: str) -> tuple[Match, list[int]]:
    """An operator says a match was right (valid) or wrong. A wrong match disables its profile
    and every profile learnt from it; (the match, the profile ids disabled)."""
    t = ionosphere_matches
    with _tx(conn) as c:
        res = c.execute(t.update().where(t.c.id == int(match_id))
                        .values(validated=bool(valid), reviewed_by=who[:255]))
        if res.rowcount == 0:
            raise NotFound(f"match {match_id} not found")
        row = c.execute(sa.select(t, metrics.c.name)
                        .join_from(t, metrics, t.c.metric_id == metrics.c.id)
                        .where(t.c.id == int(match_id))).one()
        match = _match(row._mapping)
        disabled: list[int] = []
        if not valid:
            disabled = set_enabled(c, match.profile_id, False,
                                   f"match {match.id} (event {match.event_id}) marked wrong "
                                   f"by {who}")
        return match, disabled


STAGE = "ionosphere"


def record_event_matches(conn: Conn, event: AnomalyEvent) -> int:
    """Record the Ionosphere match an event's stage verdicts carry (panorama, for every event
    it reads: vetoed, confirmed, or shadow); how many were new. Idempotent."""
    n = 0
    for v in event.stages:
        if v.stage != STAGE or "profile_id" not in v.figures:
            continue
        f = v.figures
        applied = v.verdict in ("veto", "confirm")
        if record_match(conn, int(f["profile_id"]), event.metric, event.id, event.timestamp,
                        "motif", float(f.get("correlation", 0.0)), f, applied):
            n += 1
    return n


def get_match(conn: Conn, match_id: int) -> Match:
    t = ionosphere_matches
    with _tx(conn) as c:
        row = c.execute(sa.select(t, metrics.c.name)
                        .join_from(t, metrics, t.c.metric_id == metrics.c.id)
                        .where(t.c.id == int(match_id))).first()
    if row is None:
        raise NotFound(f"match {match_id} not found")
    return _match(row._mapping)
