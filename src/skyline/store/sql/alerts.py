"""Alerting in SQL: silences, the delivery queue that survives restarts, and the alert log.

The queue is a table rather than a Redis list so that an alert waiting for a channel that
is down is as durable as the anomaly it is about, and so that every attempt can be recorded
next to it. Several alerters instances may share it: a worker claims a row with a lease
(`claimed_until`) by a conditional UPDATE, so a row is sent by one worker at a time and is
taken over when its worker died.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from skyline.core.errors import InvalidInput, NotFound, PatternError
from skyline.core.patterns import validate as validate_pattern
from skyline.store.sql.anomalies import MYSQL_DUP_ENTRY, Conn, _tx
from skyline.store.sql.models import alert_deliveries, alert_log, silences

# Longest texts kept: an error message is one line for people, not a dump.
MAX_ERROR = 2000
MAX_REASON = 2000


# silences ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Silence:
    id: int
    pattern: str
    created: float
    expires: float
    reason: str
    who: str

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "pattern": self.pattern, "created": self.created,
                "until": self.expires, "reason": self.reason, "who": self.who}


def _silence(r: sa.Row[Any]) -> Silence:
    return Silence(int(r.id), r.pattern, float(r.created), float(r.expires), r.reason, r.who)


def add_silence(conn: Conn, pattern: str, expires: float, reason: str = "", who: str = "",
                now: float | None = None) -> Silence:
    """Silence `pattern` until `expires`; InvalidInput for a bad pattern or a past end."""
    try:
        validate_pattern(pattern)
    except PatternError as e:
        raise InvalidInput(str(e)) from None
    t = time.time() if now is None else now
    if expires <= t:
        raise InvalidInput("a silence must end in the future")
    if len(reason) > MAX_REASON:
        raise InvalidInput(f"reason is longer than {MAX_REASON} characters")
    who = who[:255]
    with _tx(conn) as c:
        # the same pattern silenced twice is one silence: the later end and the newer reason
        # win, so the list never holds duplicates to end one by one
        same = c.execute(sa.select(silences).where(
            silences.c.pattern == pattern, silences.c.expires > t).order_by(silences.c.id)
        ).first()
        if same is not None:
            old = _silence(same)
            merged = Silence(old.id, pattern, old.created, max(old.expires, float(expires)),
                             reason or old.reason, who or old.who)
            c.execute(sa.update(silences).where(silences.c.id == old.id).values(
                expires=merged.expires, reason=merged.reason, who=merged.who))
            return merged
        res = c.execute(sa.insert(silences).values(
            pattern=pattern, created=t, expires=float(expires), reason=reason, who=who))
        pk = res.inserted_primary_key
        assert pk is not None
        return Silence(int(pk[0]), pattern, t, float(expires), reason, who)


def list_silences(conn: Conn, *, include_expired: bool = False,
                  now: float | None = None) -> list[Silence]:
    t = time.time() if now is None else now
    stmt = sa.select(silences).order_by(silences.c.id)
    if not include_expired:
        stmt = stmt.where(silences.c.expires > t)
    with _tx(conn) as c:
        return [_silence(r) for r in c.execute(stmt)]


def end_silence(conn: Conn, silence_id: int, now: float | None = None) -> Silence:
    """End a silence now (it stays listed among the expired ones); NotFound when unknown or
    already over."""
    t = time.time() if now is None else now
    with _tx(conn) as c:
        row = c.execute(sa.select(silences).where(silences.c.id == silence_id)).first()
        if row is None or float(row.expires) <= t:
            raise NotFound(f"silence {silence_id} not found or already ended")
        c.execute(sa.update(silences).where(silences.c.id == silence_id).values(expires=t))
        old = _silence(row)
        return Silence(old.id, old.pattern, old.created, t, old.reason, old.who)


def remove_silence(conn: Conn, silence_id: int) -> None:
    with _tx(conn) as c:
        if c.execute(sa.delete(silences).where(silences.c.id == silence_id)).rowcount != 1:
            raise NotFound(f"silence {silence_id} not found")


# the delivery queue --------------------------------------------------------------------------
@dataclass(frozen=True)
class Delivery:
    id: int
    event_id: str
    channel: str
    kind: str  # alert | update (an incident's alert, grown) | resolve | test
    metric: str
    payload: dict[str, Any]
    created: float
    next_attempt: float
    attempts: int
    status: str
    last_error: str


def _delivery(r: sa.Row[Any]) -> Delivery:
    return Delivery(int(r.id), r.event_id, r.channel, r.kind, r.metric, dict(r.payload),
                    float(r.created), float(r.next_attempt), int(r.attempts), r.status,
                    r.last_error)


_UNIQUE = ("event_id", "channel", "kind")


def enqueue(conn: Conn, *, event_id: str, channel: str, kind: str, metric: str,
            payload: dict[str, Any], now: float | None = None, due: float | None = None
            ) -> bool:
    """Queue one delivery (sent from `due`, default at once); False when the same (event,
    channel, kind) is already queued, as happens when the stream hands an event over
    twice."""
    t = time.time() if now is None else now
    values = {"event_id": event_id, "channel": channel, "kind": kind, "metric": metric,
              "payload": payload, "created": t, "next_attempt": t if due is None else due,
              "attempts": 0,
              "status": "pending", "claimed_until": 0.0, "last_error": ""}
    with _tx(conn) as c:
        return _insert_ignore(c, values)


def _insert_ignore(c: Connection, values: dict[str, Any]) -> bool:
    # Same reasoning as store.sql.anomalies._insert_ignore, on a composite unique key.
    name = c.dialect.name
    if name in ("postgresql", "sqlite"):
        ins = postgresql.insert if name == "postgresql" else sqlite.insert
        stmt = ins(alert_deliveries).values(**values).on_conflict_do_nothing(
            index_elements=[alert_deliveries.c[k] for k in _UNIQUE])
        if c.dialect.insert_returning:
            return c.execute(stmt.returning(alert_deliveries.c.id)).first() is not None
        return c.execute(stmt).rowcount == 1
    try:
        with c.begin_nested():
            c.execute(sa.insert(alert_deliveries).values(**values))
    except sa.exc.IntegrityError as e:
        args: tuple[Any, ...] = getattr(e.orig, "args", ())
        if name in ("mysql", "mariadb") and (not args or args[0] != MYSQL_DUP_ENTRY):
            raise
        return False
    return True


def claim_due(conn: Conn, channel: str, *, lease: float, limit: int = 20,
              now: float | None = None) -> list[Delivery]:
    """Pending deliveries of `channel` that are due and not leased by a live worker, each
    now leased to the caller for `lease` seconds."""
    t = time.time() if now is None else now
    d = alert_deliveries.c
    stmt = (sa.select(alert_deliveries)
            .where(d.channel == channel, d.status == "pending", d.next_attempt <= t,
                   d.claimed_until <= t)
            .order_by(d.next_attempt, d.id).limit(limit))
    out: list[Delivery] = []
    with _tx(conn) as c:
        for r in c.execute(stmt).all():
            # Only one worker's UPDATE finds the lease it read still in place.
            won = c.execute(sa.update(alert_deliveries)
                            .where(d.id == r.id, d.claimed_until == r.claimed_until,
                                   d.status == "pending")
                            .values(claimed_until=t + lease)).rowcount == 1
            if won:
                out.append(_delivery(r))
    return out


def _log(c: Connection, *, delivery_id: int | None, event_id: str, channel: str, kind: str,
         metric: str, attempt: int, status: str, error: str, duration: float,
         now: float) -> None:
    c.execute(sa.insert(alert_log).values(
        delivery_id=delivery_id, event_id=event_id, channel=channel, kind=kind, metric=metric,
        attempt=attempt, status=status, error=error[:MAX_ERROR], duration=duration,
        created=now))


@dataclass(frozen=True)
class Attempt:
    """The outcome of one send of `delivery`, waiting to be recorded."""

    delivery: Delivery
    ok: bool
    error: str = ""
    duration: float = 0.0
    retry_at: float | None = None  # failed: when to try again; None gives up


def record_attempts(conn: Conn, attempts: Sequence[Attempt],
                    now: float | None = None) -> list[str]:
    """Record attempts in the log and move each row on: sent, pending again until its
    `retry_at`, or expired (failed and retry_at is None). One transaction for them all: a
    burst of alerts costs one commit, not one per alert. Returns the new statuses."""
    t = time.time() if now is None else now
    out: list[str] = []
    with _tx(conn) as c:
        for a in attempts:
            d = a.delivery
            attempt = d.attempts + 1
            status = "sent" if a.ok else ("pending" if a.retry_at is not None else "expired")
            c.execute(sa.update(alert_deliveries).where(alert_deliveries.c.id == d.id).values(
                attempts=attempt, status=status, last_error=a.error[:MAX_ERROR],
                next_attempt=a.retry_at if a.retry_at is not None else t, claimed_until=0.0))
            _log(c, delivery_id=d.id, event_id=d.event_id, channel=d.channel, kind=d.kind,
                 metric=d.metric, attempt=attempt, status="sent" if a.ok else "error",
                 error=a.error, duration=a.duration, now=t)
            if status == "expired":
                _log(c, delivery_id=d.id, event_id=d.event_id, channel=d.channel, kind=d.kind,
                     metric=d.metric, attempt=attempt, status="expired",
                     error="given up: older than alerters.max_age", duration=0.0, now=t)
            out.append(status)
    return out


def record_attempt(conn: Conn, d: Delivery, *, ok: bool, error: str = "",
                   duration: float = 0.0, retry_at: float | None = None,
                   now: float | None = None) -> str:
    """record_attempts for one attempt."""
    return record_attempts(conn, [Attempt(d, ok, error, duration, retry_at)], now)[0]


def expire(conn: Conn, d: Delivery, now: float | None = None,
           reason: str = "given up: older than alerters.max_age") -> None:
    """Give up a delivery that was never attempted in time (its channel was down or
    disabled for longer than alerters.max_age), or no longer needed (an incident's update
    that came due after the incident closed)."""
    t = time.time() if now is None else now
    with _tx(conn) as c:
        c.execute(sa.update(alert_deliveries).where(alert_deliveries.c.id == d.id)
                  .values(status="expired", claimed_until=0.0))
        _log(c, delivery_id=d.id, event_id=d.event_id, channel=d.channel, kind=d.kind,
             metric=d.metric, attempt=d.attempts, status="expired",
             error=reason, duration=0.0, now=t)


def log_direct(conn: Conn, *, event_id: str, channel: str, kind: str, metric: str,
               attempt: int, ok: bool, error: str = "", duration: float = 0.0,
               now: float | None = None) -> None:
    """A send made outside the queue (Thunder's own alerts): logged as sent or error."""
    t = time.time() if now is None else now
    with _tx(conn) as c:
        _log(c, delivery_id=None, event_id=event_id, channel=channel, kind=kind, metric=metric,
             attempt=attempt, status="sent" if ok else "error", error=error,
             duration=duration, now=t)


def log_not_sent(conn: Conn, *, event_id: str, channel: str, kind: str, metric: str,
                 status: str, reason: str, now: float | None = None) -> None:
    """An alert that was decided against (rate_limited): logged, never queued."""
    t = time.time() if now is None else now
    with _tx(conn) as c:
        _log(c, delivery_id=None, event_id=event_id, channel=channel, kind=kind, metric=metric,
             attempt=0, status=status, error=reason, duration=0.0, now=t)


def get_delivery(conn: Conn, delivery_id: int) -> Delivery:
    with _tx(conn) as c:
        r = c.execute(sa.select(alert_deliveries)
                      .where(alert_deliveries.c.id == delivery_id)).first()
    if r is None:
        raise NotFound(f"delivery {delivery_id} not found")
    return _delivery(r)


def deliveries(conn: Conn, *, event_id: str | None = None,
               channel: str | None = None) -> list[Delivery]:
    stmt = sa.select(alert_deliveries).order_by(alert_deliveries.c.id)
    if event_id is not None:
        stmt = stmt.where(alert_deliveries.c.event_id == event_id)
    if channel is not None:
        stmt = stmt.where(alert_deliveries.c.channel == channel)
    with _tx(conn) as c:
        return [_delivery(r) for r in c.execute(stmt)]


def failing(conn: Conn) -> dict[str, tuple[int, str]]:
    """Per channel: alerts waiting for a retry after a failed attempt, and the newest error
    among them (what Thunder's alerters.delivery check watches)."""
    d = alert_deliveries.c
    stmt = (sa.select(d.channel, sa.func.count(), sa.func.max(d.id))
            .where(d.status == "pending", d.attempts > 0).group_by(d.channel))
    with _tx(conn) as c:
        rows = [(r[0], int(r[1]), int(r[2])) for r in c.execute(stmt)]
        out: dict[str, tuple[int, str]] = {}
        for channel, n, newest in rows:
            error = c.execute(sa.select(d.last_error).where(d.id == newest)).scalar()
            out[channel] = (n, str(error or ""))
    return out


def alert_log_rows(conn: Conn, *, channel: str | None = None, event_id: str | None = None,
                   limit: int = 100) -> list[dict[str, Any]]:
    """The newest log rows first."""
    stmt = sa.select(alert_log).order_by(alert_log.c.id.desc()).limit(limit)
    if channel is not None:
        stmt = stmt.where(alert_log.c.channel == channel)
    if event_id is not None:
        stmt = stmt.where(alert_log.c.event_id == event_id)
    with _tx(conn) as c:
        return [dict(r._mapping) for r in c.execute(stmt)]


def purge_history(conn: Conn, cutoff: float, batch: int = 1000) -> int:
    """Delete up to `batch` finished deliveries and `batch` log rows older than cutoff."""
    n = 0
    with _tx(conn) as c:
        d = alert_deliveries.c
        ids = [int(r[0]) for r in c.execute(
            sa.select(d.id).where(d.created < cutoff, d.status != "pending").limit(batch))]
        if ids:
            n += c.execute(sa.delete(alert_deliveries).where(d.id.in_(ids))).rowcount
        lids = [int(r[0]) for r in c.execute(
            sa.select(alert_log.c.id).where(alert_log.c.created < cutoff).limit(batch))]
        if lids:
            n += c.execute(sa.delete(alert_log).where(alert_log.c.id.in_(lids))).rowcount
    return n
