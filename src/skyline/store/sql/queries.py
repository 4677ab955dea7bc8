"""Panorama's queries over stored anomalies, and their retention.

One function, `query_anomalies`, takes every filter (metric, namespace pattern, time range,
algorithm, minimum score, status, source) and pages newest first by keyset on
(timestamp, row id), so a page is as cheap at the millionth row as at the first and stable
while new anomalies arrive.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from skyline.core.errors import InvalidInput, NotFound
from skyline.core.events import AnomalyEvent
from skyline.core.patterns import REGEX_PREFIX, compile_pattern
from skyline.store.sql.anomalies import Conn, _event, _select, _tx, metric_id
from skyline.store.sql.models import anomalies, metrics

MAX_LIMIT = 1000
# Above this many matching metrics a pattern query filters rows in Python instead of
# sending an IN list the database would have to parse for every page.
MAX_IN_IDS = 2000


@dataclass(frozen=True)
class AnomalyQuery:
    metric: str | None = None
    pattern: str | None = None  # glob or re:regex (skyline.core.patterns)
    since: float | None = None  # inclusive
    until: float | None = None  # inclusive
    algorithm: str | None = None  # among the triggered algorithms
    min_score: float | None = None
    status: str | None = None  # anomalous | recovered
    source: str | None = None


@dataclass(frozen=True)
class Page:
    items: list[AnomalyEvent]
    next: str | None  # pass as `before` for the next page; None on the last page


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _glob_prefix(pattern: str) -> str:
    """The literal start of a glob: every name it matches begins with it (for LIKE)."""
    if pattern.startswith(REGEX_PREFIX):
        return ""
    m = re.match(r"[^*?]*", pattern)
    return m.group(0) if m else ""


def _matching_metric_ids(c: Connection, pattern: str) -> list[int]:
    rx = compile_pattern(pattern)
    stmt = sa.select(metrics.c.id, metrics.c.name)
    prefix = _glob_prefix(pattern)
    if prefix:
        stmt = stmt.where(metrics.c.name.like(_like_escape(prefix) + "%", escape="\\"))
    return [int(r.id) for r in c.execute(stmt) if rx.search(r.name) is not None]


def query_anomalies(conn: Conn, q: AnomalyQuery | None = None, *, limit: int = 50,
                    before: str | None = None) -> Page:
    """Anomalies matching every filter of `q`, newest first, `limit` per page.

    `before` is the `next` of the previous page (an event id); NotFound when it names no
    stored anomaly (deleted by retention, for instance).
    """
    q = q or AnomalyQuery()
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"limit must be between 1 and {MAX_LIMIT}, not {limit}")
    if q.status is not None and q.status not in ("anomalous", "recovered"):
        raise InvalidInput(f"status must be anomalous or recovered, not {q.status!r}")
    stmt = _select()
    a = anomalies.c
    if q.since is not None:
        stmt = stmt.where(a.timestamp >= float(q.since))
    if q.until is not None:
        stmt = stmt.where(a.timestamp <= float(q.until))
    if q.min_score is not None:
        stmt = stmt.where(a.score >= float(q.min_score))
    if q.status is not None:
        stmt = stmt.where(a.status == q.status)
    if q.source is not None:
        stmt = stmt.where(a.source == q.source)
    if q.algorithm:
        # The JSON text of the list holds "name" with its quotes whatever the backend's
        # spacing, and names are identifiers, so this finds exactly that element.
        needle = '%"' + _like_escape(q.algorithm) + '"%'
        stmt = stmt.where(sa.cast(a.triggered, sa.Text).like(needle, escape="\\"))
    with _tx(conn) as c:
        post_filter: re.Pattern[str] | None = None
        if q.metric is not None:
            mid = metric_id(c, q.metric, create=False)
            if mid is None:
                return Page([], None)
            stmt = stmt.where(a.metric_id == mid)
        if q.pattern:
            ids = _matching_metric_ids(c, q.pattern)
            if not ids:
                return Page([], None)
            if len(ids) <= MAX_IN_IDS:
                stmt = stmt.where(a.metric_id.in_(ids))
            else:
                post_filter = compile_pattern(q.pattern)
        if before is not None:
            ref = c.execute(sa.select(a.timestamp, a.id).where(a.event_id == before)).first()
            if ref is None:
                raise NotFound(f"anomaly {before!r} not found")
            ts, rid = ref
            stmt = stmt.where(a.timestamp <= ts, sa.or_(a.timestamp < ts, a.id < rid))
        stmt = stmt.order_by(a.timestamp.desc(), a.id.desc())
        if post_filter is None:
            rows = [_event(r) for r in c.execute(stmt.limit(limit + 1))]
        else:
            rows = []
            with c.execute(stmt.execution_options(yield_per=500)) as result:
                for r in result:
                    if post_filter.search(r._mapping["name"]) is not None:
                        rows.append(_event(r))
                        if len(rows) > limit:
                            break
    more = len(rows) > limit
    items = rows[:limit]
    return Page(items, items[-1].id if more else None)


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
        c.execute(sa.delete(anomalies).where(anomalies.c.id.in_(ids)))
        return len(ids)


def count_anomalies(conn: Conn) -> int:
    with _tx(conn) as c:
        return int(c.execute(sa.select(sa.func.count()).select_from(anomalies)).scalar_one())


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
    }
