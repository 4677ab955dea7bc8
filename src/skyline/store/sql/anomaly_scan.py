"""How `query_anomalies` finds one page without scanning the anomalies table.

A page is found in two steps: the row ids of its anomalies, from narrow index rows, then the
full rows (JSON results, window) for those ids by primary key. The first step starts from
the index that serves the filters:

- an algorithm: ix_anomaly_algorithms_algorithm_timestamp_anomaly_id walks that algorithm's
  anomalies newest first (unless a short list of metric ids is the narrower start; then the
  algorithm is an EXISTS test on the primary key of anomaly_algorithms);
- a list of metric ids: ix_anomalies_metric_id_timestamp_id, one range per metric;
- otherwise ix_anomalies_timestamp_id_metric_id, from the keyset cursor on.
Score, status and source are checked on the rows the walk visits. A set of metric ids too
long for an IN list is checked here, over batches of narrow rows continued by keyset, and at
most SCAN_BUDGET rows per page: a page may then come back short, with a cursor to go on
from, rather than late.

Namespace patterns become metric ids through the metrics table: the glob's literal prefix
is a range on ix_metrics_name, the whole glob a LIKE (`*` -> `%`: it matches a superset), and
the pattern itself decides on the names that are left.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from skyline.core.events import AnomalyEvent
from skyline.core.patterns import REGEX_PREFIX, Pattern, compile_pattern
from skyline.store.sql.anomalies import _event, _select
from skyline.store.sql.models import anomalies, anomaly_algorithms, metrics

SCAN_BATCH = 256  # first batch of narrow rows checked in Python; grows 4x per round
MAX_SCAN_BATCH = 50_000
SCAN_BUDGET = 200_000  # narrow rows checked in Python per page at most
# Above this many candidate names a pattern is checked on the anomalies' metric names
MAX_CANDIDATES = 5000

_QUANTIFIER = re.compile(r"\{\d*(?:,\d*)?\}")
_REGEX_LITERAL = re.compile(r"(?:[A-Za-z0-9_\-/:=,\"' ]|\\[.\-/{}\[\]()*+?^$|\\])")


@dataclass(frozen=True)
class Scan:
    """The filters of one query, as the scan applies them."""

    since: float | None = None
    until: float | None = None
    min_score: float | None = None
    status: str | None = None
    source: str | None = None
    algorithm: str | None = None
    metric_ids: Sequence[int] | None = None  # an IN list
    metric_set: frozenset[int] | None = None  # checked in Python
    name_where: tuple[sa.ColumnElement[bool], ...] = ()  # on metrics.name, in SQL
    name_match: Pattern | None = None  # on metrics.name, in Python


@dataclass(frozen=True)
class Found:
    ids: list[int]  # anomaly row ids in page order
    resume: int | None  # the last row examined when the budget ran out first, else None


# metric names ------------------------------------------------------------------------------------
def like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def glob_prefix(pattern: str) -> str:
    """The literal start of a glob, or of a regex anchored with ^ (empty when unsure):
    every name the pattern matches begins with it."""
    if pattern.startswith(REGEX_PREFIX):
        return _regex_prefix(pattern[len(REGEX_PREFIX):])
    m = re.match(r"[^*?]*", pattern)
    return m.group(0) if m else ""


def _regex_prefix(body: str) -> str:
    # A top-level alternation or a flag group could undo the anchor; give up on those.
    if not body.startswith("^") or "|" in body or body.startswith("^(?"):
        return ""
    out: list[str] = []
    pos = 1
    while (m := _REGEX_LITERAL.match(body, pos)) is not None:
        out.append(m.group(0)[-1])
        pos = m.end()
    # a quantifier after the last literal makes that one optional
    if pos < len(body) and body[pos] in "?*{" and out:
        out.pop()
    return "".join(out)


def glob_like(pattern: str) -> str | None:
    """A LIKE pattern matching every name the glob matches (and maybe more); None for a
    regex or a glob that is all wildcards."""
    if pattern.startswith(REGEX_PREFIX):
        return None
    out: list[str] = []
    for ch in pattern:
        if ch == "*":
            if not out or out[-1] != "%":
                out.append("%")
        elif ch == "?":
            out.append("_")
        else:
            out.append(like_escape(ch))
    like = "".join(out)
    return None if like.strip("%") == "" else like


def regex_like(body: str) -> str | None:
    """A LIKE pattern matching every name the regex finds a match in (and maybe more): its
    top-level literal runs in order, `%` for everything else; None when unsure (an
    alternation, flags) or when it would not narrow."""
    try:
        flags = re.compile(body).flags
    except re.error:
        return None
    if flags & ~re.UNICODE or "|" in body:
        return None
    anchored = body.startswith("^")
    parts: list[str] = [] if anchored else ["%"]
    run: list[str] = []

    def gap() -> None:
        if run:
            parts.append(like_escape("".join(run)))
            run.clear()
        if not parts or parts[-1] != "%":
            parts.append("%")

    i = 1 if anchored else 0
    while i < len(body):
        ch = body[i]
        if ch == "\\":
            nxt = body[i + 1:i + 2]
            i += 2
            if nxt and not nxt.isalnum():
                run.append(nxt)  # an escaped punctuation character is itself
            else:
                gap()  # \d, \w, \b, \Z, a back-reference...
        elif ch == "[":
            gap()
            i = _skip_class(body, i)
        elif ch == "(":
            gap()
            i = _skip_group(body, i)
        elif ch in "?*{":
            if run:
                run.pop()  # the quantifier makes the last literal optional
            gap()
            q = _QUANTIFIER.match(body, i) if ch == "{" else None
            i = q.end() if q else i + 1  # a `{` that is no quantifier is left out too
        elif ch in ".^$+":
            gap()  # `+`: the last literal stays, more of it may follow
            i += 1
        else:
            run.append(ch)
            i += 1
    gap()
    like = "".join(parts)
    return None if like.strip("%") == "" else like


def _skip_class(body: str, i: int) -> int:
    """The index just past the character class starting at body[i] == '['."""
    j = i + 1
    if body[j:j + 1] == "^":
        j += 1
    if body[j:j + 1] == "]":
        j += 1
    while j < len(body):
        if body[j] == "\\":
            j += 2
        elif body[j] == "]":
            return j + 1
        else:
            j += 1
    return len(body)


def _skip_group(body: str, i: int) -> int:
    """The index just past the group starting at body[i] == '('."""
    depth = 0
    j = i
    while j < len(body):
        ch = body[j]
        if ch == "\\":
            j += 2
            continue
        if ch == "[":
            j = _skip_class(body, j)
            continue
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                return j + 1
        j += 1
    return len(body)


def _after_prefix(prefix: str) -> str | None:
    """The least string greater than every string starting with `prefix` (code point
    order, which is UTF-8 byte order); None when there is none."""
    chars = list(prefix)
    while chars:
        code = ord(chars[-1]) + 1
        if code <= 0x10FFFF:
            chars[-1] = chr(0xE000 if 0xD800 <= code <= 0xDFFF else code)
            return "".join(chars)
        chars.pop()
    return None


def _prefix_range(dialect: str, prefix: str) -> list[sa.ColumnElement[bool]]:
    name = metrics.c.name
    upper = _after_prefix(prefix)
    if dialect == "sqlite":  # BINARY collation: byte order
        return [name >= prefix] + ([name < upper] if upper is not None else [])
    if dialect == "postgresql":  # the byte-order operators of text_pattern_ops
        ge = name.op("~>=~", is_comparison=True)(prefix)
        return [ge] + ([name.op("~<~", is_comparison=True)(upper)] if upper is not None
                       else [])
    # MySQL turns LIKE 'prefix%' into an index range itself, in its own collation
    return [name.like(like_escape(prefix) + "%", escape="\\")]


def name_conditions(dialect: str, pattern: str, ranges: bool = True
                    ) -> list[sa.ColumnElement[bool]]:
    """SQL conditions on metrics.name true for every name `pattern` matches. Without
    `ranges` none an index could serve: joined to the anomalies, a range on the name would
    tempt SQLite to start from the metrics and sort all their anomalies."""
    where = []
    prefix = glob_prefix(pattern)
    if prefix and ranges:
        where += _prefix_range(dialect, prefix)
    if pattern.startswith(REGEX_PREFIX):
        like = regex_like(pattern[len(REGEX_PREFIX):])
    else:
        like = glob_like(pattern)
    if like is not None and (like != like_escape(prefix) + "%" or not ranges):
        where.append(metrics.c.name.like(like, escape="\\"))
    return where


def pattern_metric_ids(c: Connection, pattern: str) -> list[int] | None:
    """Ids of the stored metrics whose names `pattern` matches (PatternError if invalid);
    None when more than MAX_CANDIDATES names pass the SQL conditions: reading them all
    would cost more than checking the names of the anomalies a page scans."""
    rx = compile_pattern(pattern)
    where = name_conditions(c.dialect.name, pattern)
    # counted first (from the name index where there is a prefix): cheaper than sending
    # the names only to find there are too many
    some = sa.select(metrics.c.name).where(*where).limit(MAX_CANDIDATES + 1).subquery()
    if c.execute(sa.select(sa.func.count()).select_from(some)).scalar_one() > MAX_CANDIDATES:
        return None
    # all(): fetching row by row costs more than the regex
    rows = c.execute(sa.select(metrics.c.id, metrics.c.name).where(*where)).all()
    return [int(i) for i, name in rows if rx.matches(name)]


# anomalies ---------------------------------------------------------------------------------------
def _statement(scan: Scan) -> tuple[sa.Select[Any], Any, Any]:
    a, aa = anomalies.c, anomaly_algorithms.c
    if scan.algorithm is not None and scan.metric_ids is None:
        ts, rid = aa.timestamp, aa.anomaly_id
        stmt = sa.select(rid.label("id"), ts.label("ts")).where(aa.algorithm == scan.algorithm)
        if (scan.min_score is not None or scan.status is not None or scan.source is not None
                or scan.metric_set is not None or scan.name_match is not None):
            stmt = stmt.join_from(anomaly_algorithms, anomalies, a.id == rid)
    else:
        ts, rid = a.timestamp, a.id
        stmt = sa.select(rid.label("id"), ts.label("ts"))
        if scan.metric_ids is not None:
            stmt = stmt.where(a.metric_id.in_(scan.metric_ids))
        if scan.algorithm is not None:
            stmt = stmt.where(sa.exists().where(aa.anomaly_id == a.id,
                                                aa.algorithm == scan.algorithm))
    if scan.metric_set is not None:
        stmt = stmt.add_columns(a.metric_id)
    if scan.name_match is not None:
        stmt = (stmt.add_columns(metrics.c.name).join(metrics, metrics.c.id == a.metric_id)
                .where(*scan.name_where))
    if scan.since is not None:
        stmt = stmt.where(ts >= float(scan.since))
    if scan.until is not None:
        stmt = stmt.where(ts <= float(scan.until))
    if scan.min_score is not None:
        stmt = stmt.where(a.score >= float(scan.min_score))
    if scan.status is not None:
        stmt = stmt.where(a.status == scan.status)
    if scan.source is not None:
        stmt = stmt.where(a.source == scan.source)
    return stmt, ts, rid


def _from(stmt: sa.Select[Any], ts: Any, rid: Any, cursor: tuple[float, int] | None,
          ascending: bool, limit: int) -> sa.Select[Any]:
    if cursor is not None:
        t, r = cursor
        # (ts, id) beyond (t, r), spelled so every backend can range-scan the index
        if ascending:
            stmt = stmt.where(ts >= t, sa.or_(ts > t, rid > r))
        else:
            stmt = stmt.where(ts <= t, sa.or_(ts < t, rid < r))
    order = (ts.asc(), rid.asc()) if ascending else (ts.desc(), rid.desc())
    return stmt.order_by(*order).limit(limit)


def find(c: Connection, scan: Scan, *, cursor: tuple[float, int] | None, ascending: bool,
         want: int) -> Found:
    """Up to `want` row ids matching `scan`, past `cursor` ((timestamp, row id), exclusive),
    newest first (oldest first when `ascending`)."""
    stmt, ts, rid = _statement(scan)
    if scan.metric_set is None and scan.name_match is None:
        return Found([int(r.id) for r in c.execute(_from(stmt, ts, rid, cursor, ascending,
                                                          want))], None)
    ids: list[int] = []
    scanned = 0
    batch = SCAN_BATCH
    while True:
        rows = c.execute(_from(stmt, ts, rid, cursor, ascending, batch)).all()
        for r in rows:
            if (r.metric_id in scan.metric_set if scan.metric_set is not None
                    else scan.name_match is not None and scan.name_match.matches(r.name)):
                ids.append(int(r.id))
                if len(ids) == want:
                    return Found(ids, None)
        scanned += len(rows)
        if len(rows) < batch:
            return Found(ids, None)
        cursor = (float(rows[-1].ts), int(rows[-1].id))
        if scanned >= SCAN_BUDGET:
            return Found(ids, cursor[1])
        batch = min(batch * 4, MAX_SCAN_BATCH)


def fetch(c: Connection, ids: Sequence[int]) -> list[AnomalyEvent]:
    """The events of these row ids, in the same order."""
    if not ids:
        return []
    stmt = _select().add_columns(anomalies.c.id.label("row_id")).where(anomalies.c.id.in_(ids))
    by_id = {int(r.row_id): _event(r) for r in c.execute(stmt)}
    return [by_id[i] for i in ids if i in by_id]


def event_id_of(c: Connection, row_id: int) -> str:
    return str(c.execute(sa.select(anomalies.c.event_id)
                         .where(anomalies.c.id == row_id)).scalar_one())
