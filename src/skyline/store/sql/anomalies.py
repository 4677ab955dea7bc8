"""Anomaly events in SQL: the repository panorama writes through and the web app reads.

Every function takes an Engine (and then runs in a transaction of its own) or a Connection
(and then runs inside the caller's transaction, which the caller commits).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Literal, overload

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from skyline.core.errors import InvalidInput, NotFound
from skyline.core.events import AlgorithmResult, AnomalyEvent, StageVerdict
from skyline.store.sql.models import anomalies, anomaly_algorithms, metrics, name_hash

Conn = Engine | Connection

MYSQL_DUP_ENTRY = 1062  # ER_DUP_ENTRY


@contextmanager
def _tx(conn: Conn) -> Iterator[Connection]:
    if isinstance(conn, Engine):
        with conn.begin() as c:
            yield c
    else:
        yield conn


def _insert_ignore(conn: Connection, table: sa.Table, values: Mapping[str, Any],
                   key: str) -> bool:
    """Insert a row unless one with the same unique `key` exists; True when inserted.

    A failed INSERT aborts the whole transaction on PostgreSQL, so a duplicate must never
    be raised there: ON CONFLICT DO NOTHING (PostgreSQL, SQLite). On MySQL, INSERT IGNORE
    would also swallow truncation and foreign-key errors, and ON DUPLICATE KEY UPDATE
    reports one row either way under the FOUND_ROWS flag SQLAlchemy sets; but InnoDB rolls
    back only the failed statement on a duplicate key, so a plain INSERT whose
    duplicate-key error (and only that) is taken as "already there" is safe.
    """
    name = conn.dialect.name
    insert = table.insert().values(**values)
    if name in ("postgresql", "sqlite"):
        dialect_insert = postgresql.insert if name == "postgresql" else sqlite.insert
        stmt = dialect_insert(table).values(**values).on_conflict_do_nothing(
            index_elements=[table.c[key]]
        )
        if conn.dialect.insert_returning:
            # Not rowcount: with the RETURNING SQLAlchemy adds for the new primary key,
            # psycopg reports -1 whether a row went in or not.
            return conn.execute(stmt.returning(table.c[key])).first() is not None
        return conn.execute(stmt).rowcount == 1
    if name in ("mysql", "mariadb"):
        try:
            conn.execute(insert)
        except sa.exc.IntegrityError as e:
            args: tuple[Any, ...] = getattr(e.orig, "args", ())
            if not args or args[0] != MYSQL_DUP_ENTRY:
                raise
            return False
        return True
    # A backend we know nothing about: a savepoint keeps its transaction usable, and the
    # error means a duplicate only if the row is there.
    try:
        with conn.begin_nested():
            conn.execute(insert)
    except sa.exc.IntegrityError:
        if not _exists(conn, table, key, values[key]):
            raise
        return False
    return True


def _exists(conn: Connection, table: sa.Table, key: str, value: Any) -> bool:
    stmt = sa.select(sa.literal(1)).select_from(table).where(table.c[key] == value)
    return conn.execute(stmt).first() is not None


@overload
def metric_id(conn: Conn, name: str, create: Literal[True] = ...) -> int: ...
@overload
def metric_id(conn: Conn, name: str, create: bool) -> int | None: ...
def metric_id(conn: Conn, name: str, create: bool = True) -> int | None:
    """The id of metric `name`, created on first sight unless create=False (then None for a
    metric never stored). Safe when several writers see a new metric at once."""
    h = name_hash(name)
    by_hash = sa.select(metrics.c.id).where(metrics.c.name_hash == h)
    with _tx(conn) as c:
        found = c.execute(by_hash).scalar()
        if found is not None or not create:
            return found
        _insert_ignore(c, metrics, {"name_hash": h, "name": name, "created": time.time()},
                       "name_hash")
        # A locking read: under MySQL's REPEATABLE READ a plain SELECT would still use the
        # snapshot taken above and miss a row another writer committed meanwhile.
        return int(c.execute(by_hash.with_for_update(read=True)).scalar_one())


def _result(r: AlgorithmResult) -> dict[str, Any]:
    # Spelled out rather than dataclasses.asdict: this is the stored JSON format, and it
    # must not change because a field is added to the in-memory class.
    return {"algorithm": r.algorithm, "verdict": r.verdict, "statistic": r.statistic,
            "limit": r.limit, "text": r.text}


def save_anomaly(conn: Conn, event: AnomalyEvent) -> bool:
    """Store `event`; False (and nothing changed) when an event with its id is already
    stored, as happens with at-least-once stream delivery. Never breaks the caller's
    transaction on a duplicate."""
    with _tx(conn) as c:
        row = {
            "event_id": event.id,
            "metric_id": metric_id(c, event.metric),
            "timestamp": float(event.timestamp),
            "value": float(event.value),
            "score": float(event.score),
            "triggered": list(event.triggered),
            "results": [_result(r) for r in event.results],
            "window": bytes(event.window),
            "source": event.source,
            "status": event.status,
            # Producers that leave `created` unset get the time panorama recorded them.
            "created": float(event.created) or time.time(),
            "stages": [dataclasses.asdict(v) for v in event.stages],
            "band_low": event.band_low, "band_high": event.band_high, "since": event.since,
        }
        if not _insert_ignore(c, anomalies, row, "event_id"):
            return False
        names = dict.fromkeys(event.triggered)
        if names:
            # the index the algorithm filter walks (see anomaly_algorithms in models.py)
            rid = c.execute(sa.select(anomalies.c.id)
                            .where(anomalies.c.event_id == event.id)).scalar_one()
            c.execute(anomaly_algorithms.insert(), [
                {"anomaly_id": rid, "algorithm": n, "timestamp": row["timestamp"]}
                for n in names])
        return True


_COLUMNS = (
    anomalies.c.event_id, metrics.c.name, anomalies.c.timestamp, anomalies.c.value,
    anomalies.c.score, anomalies.c.source, anomalies.c.status, anomalies.c.triggered,
    anomalies.c.results, anomalies.c.window, anomalies.c.created, anomalies.c.stages,
    anomalies.c.band_low, anomalies.c.band_high, anomalies.c.since,
)


def _select() -> sa.Select[Any]:
    return sa.select(*_COLUMNS).join_from(anomalies, metrics,
                                          anomalies.c.metric_id == metrics.c.id)


def _event(row: sa.Row[Any]) -> AnomalyEvent:
    m = row._mapping
    results: Sequence[Mapping[str, Any]] = m["results"] or ()
    return AnomalyEvent(
        id=m["event_id"],
        metric=m["name"],
        timestamp=float(m["timestamp"]),
        value=float(m["value"]),
        score=float(m["score"]),
        source=m["source"],
        status=m["status"],
        triggered=tuple(m["triggered"] or ()),
        results=tuple(AlgorithmResult(**r) for r in results),
        window=bytes(m["window"] or b""),
        created=float(m["created"]),
        stages=tuple(StageVerdict(**v) for v in (m["stages"] or ())),
        band_low=m["band_low"], band_high=m["band_high"], since=m["since"],
    )


def _read(conn: Conn, stmt: sa.Select[Any]) -> list[AnomalyEvent]:
    with _tx(conn) as c:
        return [_event(row) for row in c.execute(stmt)]


def latest_anomalies(conn: Conn, limit: int = 50, before: str | None = None
                     ) -> list[AnomalyEvent]:
    """The newest `limit` anomalies, newest first. For the next page pass the id of the
    last event of this one as `before` (keyset pagination on (timestamp, row id): stable
    while new events arrive, and cheap however deep the page). NotFound for an unknown
    `before`."""
    if limit < 1:
        raise InvalidInput(f"limit must be at least 1, not {limit}")
    stmt = _select().order_by(anomalies.c.timestamp.desc(), anomalies.c.id.desc()).limit(limit)
    with _tx(conn) as c:
        if before is not None:
            ref = c.execute(
                sa.select(anomalies.c.timestamp, anomalies.c.id)
                .where(anomalies.c.event_id == before)
            ).first()
            if ref is None:
                raise NotFound(f"anomaly {before!r} not found")
            ts, rid = ref
            # (timestamp, id) < (ts, rid), spelled so every backend can range-scan the index
            stmt = stmt.where(
                anomalies.c.timestamp <= ts,
                sa.or_(anomalies.c.timestamp < ts, anomalies.c.id < rid),
            )
        return _read(c, stmt)


def metric_anomalies(conn: Conn, metric: str, since: float, until: float
                     ) -> list[AnomalyEvent]:
    """Anomalies of `metric` with since <= timestamp <= until, oldest first; empty for a
    metric never stored."""
    with _tx(conn) as c:
        mid = metric_id(c, metric, create=False)
        if mid is None:
            return []
        stmt = (
            _select()
            .where(anomalies.c.metric_id == mid,
                   anomalies.c.timestamp >= float(since),
                   anomalies.c.timestamp <= float(until))
            .order_by(anomalies.c.timestamp, anomalies.c.id)
        )
        return _read(c, stmt)


def get_anomaly(conn: Conn, event_id: str) -> AnomalyEvent:
    """The event with id `event_id`; NotFound when there is none."""
    rows = _read(conn, _select().where(anomalies.c.event_id == event_id))
    if not rows:
        raise NotFound(f"anomaly {event_id!r} not found")
    return rows[0]
