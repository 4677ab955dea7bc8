"""Panorama's queries over stored anomalies, and their retention.

One function, `query_anomalies`, takes every filter (metric, namespace pattern, time range,
algorithm, minimum score, status, source) and pages newest first by keyset on
(timestamp, row id), so a page is as cheap at the millionth row as at the first and stable
while new anomalies arrive.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from skyline.core.errors import InvalidInput, NotFound
from skyline.core.events import STATUSES, AnomalyEvent
from skyline.core.patterns import Pattern, compile_pattern
from skyline.store.sql.anomalies import Conn, _tx, metric_id
from skyline.store.sql.anomaly_scan import (
    Scan,
    event_id_of,
    fetch,
    find,
    name_conditions,
    pattern_metric_ids,
)
from skyline.store.sql.models import anomalies, anomaly_algorithms

MAX_LIMIT = 1000
# Above this many matching metrics a pattern query checks metric ids in Python instead of
# sending an IN list the database would have to parse for every page. Below it, the IN list
# reads only index entries (ix_anomalies_metric_id_timestamp_id), where a walk along the
# time index would read a table row for each metric id it checks.
MAX_IN_IDS = 5000


@dataclass(frozen=True)
class AnomalyQuery:
    metric: str | None = None
    pattern: str | None = None  # glob or re:regex (skyline.core.patterns)
    since: float | None = None  # inclusive
    until: float | None = None  # inclusive
    algorithm: str | None = None  # among the triggered algorithms
    min_score: float | None = None
    status: str | None = None  # anomalous | vetoed | recovered | new_level
    source: str | None = None


@dataclass(frozen=True)
class Page:
    items: list[AnomalyEvent]
    next: str | None  # pass as `before` for the next page; None on the last page
    prev: str | None = None  # pass as `after` for the page before; None on the first page


def query_anomalies(conn: Conn, q: AnomalyQuery | None = None, *, limit: int = 50,
                    before: str | None = None, after: str | None = None) -> Page:
    """Anomalies matching every filter of `q`, newest first, `limit` per page.

    `before` is the `next` of the previous page (an event id): the page of older anomalies;
    `after` is the `prev` of a page: the page of newer ones just before it (paging back).
    NotFound when the cursor names no stored anomaly (deleted by retention, for instance).
    """
    q = q or AnomalyQuery()
    if before is not None and after is not None:
        raise InvalidInput("give before or after, not both")
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"limit must be between 1 and {MAX_LIMIT}, not {limit}")
    if q.status is not None and q.status not in STATUSES:
        raise InvalidInput(f"status must be one of {', '.join(STATUSES)}, not {q.status!r}")
    a = anomalies.c
    with _tx(conn) as c:
        metric_ids: list[int] | None = None
        metric_set: frozenset[int] | None = None
        if q.metric is not None:
            mid = metric_id(c, q.metric, create=False)
            if mid is None:
                return Page([], None)
            metric_ids = [mid]
        name_where: tuple[sa.ColumnElement[bool], ...] = ()
        name_match: Pattern | None = None
        if q.pattern:
            ids = pattern_metric_ids(c, q.pattern)
            if ids is None:  # too many candidates: check each scanned anomaly's name
                name_where = tuple(name_conditions(c.dialect.name, q.pattern, ranges=False))
                name_match = compile_pattern(q.pattern)
            else:
                if metric_ids is not None:
                    ids = [i for i in ids if i in metric_ids]
                if not ids:
                    return Page([], None)
                if len(ids) <= MAX_IN_IDS:
                    metric_ids = ids
                else:
                    metric_set = frozenset(ids)
        cursor_id = before if before is not None else after
        cursor: tuple[float, int] | None = None
        if cursor_id is not None:
            ref = c.execute(sa.select(a.timestamp, a.id).where(a.event_id == cursor_id)).first()
            if ref is None:
                raise NotFound(f"anomaly {cursor_id!r} not found")
            cursor = (float(ref.timestamp), int(ref.id))
        scan = Scan(since=q.since, until=q.until, min_score=q.min_score, status=q.status,
                    source=q.source, algorithm=q.algorithm or None, metric_ids=metric_ids,
                    metric_set=metric_set, name_where=name_where, name_match=name_match)
        # after: oldest first from the cursor up, turned round below
        found = find(c, scan, cursor=cursor, ascending=after is not None, want=limit + 1)
        rows = fetch(c, found.ids)
        # a scan that ran out of budget goes on from the last row it examined
        resume = event_id_of(c, found.resume) if found.resume is not None else None
    more = len(rows) > limit
    items = rows[:limit]
    if after is not None:
        items.reverse()
        # the cursor's own row is older than this page, so there is always a next page
        return Page(items, items[-1].id if items else None,
                    items[0].id if more else resume)
    return Page(items, items[-1].id if more else resume,
                items[0].id if before is not None and items else None)


def delete_older_than(conn: Conn, cutoff: float, batch: int) -> int:
    """Delete at most `batch` anomalies with timestamp < cutoff, oldest first; the number
    deleted. Call until it returns less than `batch`. Ids are selected first because MySQL
    refuses LIMIT inside an IN subquery."""
    with _tx(conn) as c:
        ids = [int(r[0]) for r in c.execute(
            sa.select(anomalies.c.id).where(anomalies.c.timestamp < float(cutoff))
            .order_by(anomalies.c.timestamp, anomalies.c.id).limit(batch))]
        if not ids:
            return 0
        c.execute(sa.delete(anomaly_algorithms).where(anomaly_algorithms.c.anomaly_id.in_(ids)))
        c.execute(sa.delete(anomalies).where(anomalies.c.id.in_(ids)))
        return len(ids)


def count_anomalies(conn: Conn) -> int:
    with _tx(conn) as c:
        return int(c.execute(sa.select(sa.func.count()).select_from(anomalies)).scalar_one())


def count_since(conn: Conn, since: float, status: str | None = "anomalous") -> int:
    """How many anomalies have timestamp >= since (of one status; None: any)."""
    stmt = sa.select(sa.func.count()).select_from(anomalies).where(
        anomalies.c.timestamp >= float(since))
    if status is not None:
        stmt = stmt.where(anomalies.c.status == status)
    with _tx(conn) as c:
        return int(c.execute(stmt).scalar_one())


def page_as_dict(page: Page) -> dict[str, Any]:
    """A page for the JSON API: windows left out (they are served as graphs)."""
    return {
        "items": [{
            "id": e.id, "metric": e.metric, "timestamp": e.timestamp, "value": e.value,
            "score": e.score, "source": e.source, "status": e.status,
            "triggered": list(e.triggered),
            "results": [{"algorithm": r.algorithm, "verdict": r.verdict,
                         "statistic": r.statistic, "limit": r.limit, "text": r.text}
                        for r in e.results],
            "created": e.created,
        } for e in page.items],
        "next": page.next,
        "prev": page.prev,
    }
