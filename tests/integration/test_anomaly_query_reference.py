"""query_anomalies against a straightforward reference (every row read into Python, filtered
and sorted there) on a few thousand random anomalies, on every SQL backend available: the
same rows in the same order, pages without gaps or repeats, forwards and backwards; and
migration 0004's copy of the triggered algorithms into anomaly_algorithms."""

from __future__ import annotations

import json
import os
import random
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from skyline.core.events import AnomalyEvent
from skyline.core.patterns import matches
from skyline.store.sql import anomaly_scan, downgrade, make_engine, save_anomaly, upgrade
from skyline.store.sql import queries as queries_module
from skyline.store.sql.models import anomalies, anomaly_algorithms, metrics, name_hash
from skyline.store.sql.queries import AnomalyQuery, delete_older_than, query_anomalies
from tests.conftest import SQL_ENV, skip_or_fail
from tests.sqlreset import reset_database

T0 = 1_700_000_000.0
ALGORITHMS = ["grubbs", "ks_test", "histogram_bins", "least_squares", "my_custom"]
N_ANOMALIES = 1500


def _names() -> list[str]:
    names = [f"host-{h:02d}.cpu.{m}" for h in range(20) for m in ("user", "system")]
    names += [f"stats.svc-{s}.requests.{m}" for s in range(25) for m in ("count", "errors")]
    names += [f"web_{i}.cpu" for i in range(5)] + [f"web%{i}.cpu" for i in range(3)]
    names += [f'api.rpm{{code="{c}",path="/a.b"}}' for c in (200, 500, 503)]
    names += ["ünï.cödé", "ünï.zz", "stats", "stats.", "stats/x"]
    return names


def _fill(eng: Engine, n: int) -> list[dict[str, Any]]:
    """n random anomalies; the reference rows (with their row ids)."""
    rnd = random.Random(6)
    names = _names()
    busy = names[:3]
    with eng.begin() as c:
        for i in range(n):
            metric = rnd.choice(busy) if rnd.random() < 0.3 else rnd.choice(names)
            # coarse timestamps so that many anomalies share one (the keyset's tie-break)
            t = T0 + rnd.randrange(600) * 60.0
            triggered = tuple(rnd.sample(ALGORITHMS[:4], rnd.randint(1, 3)))
            if rnd.random() < 0.02:
                triggered += ("my_custom",)
            e = AnomalyEvent(metric=metric, timestamp=t, value=float(i), source=rnd.choice(
                ["analyzer", "analyzer", "mirage", "boundary"]), score=rnd.choice(
                [0.25, 0.5, 0.75, 1.0]), status=rnd.choice(["anomalous", "recovered"]),
                triggered=triggered, id=f"ev-{i:05d}")
            assert save_anomaly(c, e)
    with eng.connect() as c:
        return [dict(r._mapping) for r in c.execute(
            sa.select(anomalies.c.id, anomalies.c.event_id, metrics.c.name,
                      anomalies.c.timestamp, anomalies.c.score, anomalies.c.status,
                      anomalies.c.source, anomalies.c.triggered)
            .join_from(anomalies, metrics, anomalies.c.metric_id == metrics.c.id))]


@pytest.fixture(scope="module", params=["sqlite", "mysql", "postgres"])
def filled(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[tuple[Engine, list[dict[str, Any]]]]:
    """One database of random anomalies per backend for the whole module (read only)."""
    kind = request.param
    if kind == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('ref') / 'skyline.db'}"
    else:
        url = os.environ.get(SQL_ENV[kind], "")
        if not url:
            skip_or_fail(f"{SQL_ENV[kind]} is not set")
        reset_database(url)
    eng = make_engine(url)
    try:
        upgrade(eng)
        yield eng, _fill(eng, N_ANOMALIES)
    finally:
        eng.dispose()
        if kind != "sqlite":
            reset_database(url)


def reference(rows: list[dict[str, Any]], q: AnomalyQuery) -> list[str]:
    def keep(r: dict[str, Any]) -> bool:
        triggered = r["triggered"]
        if isinstance(triggered, str):
            triggered = json.loads(triggered)
        return ((q.metric is None or r["name"] == q.metric)
                and (q.pattern is None or matches(q.pattern, r["name"]))
                and (q.since is None or r["timestamp"] >= q.since)
                and (q.until is None or r["timestamp"] <= q.until)
                and (q.algorithm is None or q.algorithm in triggered)
                and (q.min_score is None or r["score"] >= q.min_score)
                and (q.status is None or r["status"] == q.status)
                and (q.source is None or r["source"] == q.source))
    chosen = sorted((r for r in rows if keep(r)), key=lambda r: (r["timestamp"], r["id"]),
                    reverse=True)
    return [r["event_id"] for r in chosen]


QUERIES = [
    AnomalyQuery(),
    AnomalyQuery(metric="host-00.cpu.user"),
    AnomalyQuery(metric="stats.svc-3.requests.errors", since=T0 + 3000),
    AnomalyQuery(metric="no.such.metric"),
    AnomalyQuery(pattern="stats.*.requests.errors"),
    AnomalyQuery(pattern="**.errors"),
    AnomalyQuery(pattern="stats"),
    AnomalyQuery(pattern="stats.**"),
    AnomalyQuery(pattern="web_*.cpu"),
    AnomalyQuery(pattern="web%*"),
    AnomalyQuery(pattern="host-0?.cpu.*"),
    AnomalyQuery(pattern="ünï.*"),
    AnomalyQuery(pattern='api.rpm{code="50*"*}'),
    AnomalyQuery(pattern=r"re:^host-0[0-4]\.cpu\.(user|system)$"),
    AnomalyQuery(pattern=r"re:^stats\.svc-1\d?\."),
    AnomalyQuery(pattern=r"re:requests\.count"),
    AnomalyQuery(pattern="re:^a|^w"),
    AnomalyQuery(pattern="nothing.matches.*"),
    AnomalyQuery(since=T0 + 600, until=T0 + 1800),
    AnomalyQuery(algorithm="grubbs"),
    AnomalyQuery(algorithm="my_custom"),
    AnomalyQuery(algorithm="unknown_algorithm"),
    AnomalyQuery(min_score=0.75),
    AnomalyQuery(status="recovered", source="mirage"),
    AnomalyQuery(algorithm="ks_test", min_score=0.5, status="anomalous"),
    AnomalyQuery(algorithm="grubbs", since=T0 + 1200, until=T0 + 20000),
    AnomalyQuery(pattern="stats.**", algorithm="least_squares", min_score=0.5),
    AnomalyQuery(pattern="host-1*.**", algorithm="grubbs", source="analyzer"),
    AnomalyQuery(metric="host-01.cpu.user", pattern="host-0*.**", algorithm="grubbs"),
    AnomalyQuery(metric="host-01.cpu.user", pattern="stats.**"),
]


def walk(eng: Engine, q: AnomalyQuery, limit: int) -> tuple[list[str], list[str | None]]:
    """Every page forwards (their ids concatenated), and the `prev` of each page."""
    got: list[str] = []
    prevs: list[str | None] = []
    before = None
    for _ in range(10_000):
        page = query_anomalies(eng, q, limit=limit, before=before)
        assert len(page.items) <= limit
        got += [e.id for e in page.items]
        prevs.append(page.prev)
        if page.next is None:
            return got, prevs
        before = page.next
    raise AssertionError("pages never end")


def walk_back(eng: Engine, q: AnomalyQuery, limit: int, start: str) -> list[str]:
    got: list[str] = []
    after: str | None = start
    while after is not None:
        page = query_anomalies(eng, q, limit=limit, after=after)
        got = [e.id for e in page.items] + got
        after = page.prev
    return got


@pytest.mark.parametrize("q", QUERIES, ids=lambda q: ",".join(
    f"{k}={v}" for k, v in vars(q).items() if v is not None) or "all")
def test_pages_equal_the_reference(filled: tuple[Engine, list[dict[str, Any]]],
                                   q: AnomalyQuery) -> None:
    eng, rows = filled
    want = reference(rows, q)
    got, _ = walk(eng, q, limit=37)
    assert got == want
    if len(want) > 40:
        # back from the last row: every newer one, in order, none twice
        assert walk_back(eng, q, 37, want[-1]) == want[:-1]


@pytest.mark.parametrize("q", [AnomalyQuery(pattern="stats.**"),
                               AnomalyQuery(pattern="**.errors", algorithm="grubbs"),
                               AnomalyQuery(pattern=r"re:^host-0[0-4]\.", min_score=0.5),
                               AnomalyQuery(pattern="nothing.matches.*")],
                         ids=["glob", "glob+algorithm", "regex+score", "none"])
@pytest.mark.parametrize("check", ["ids", "names"])
def test_patterns_checked_in_python_with_a_small_budget(
        filled: tuple[Engine, list[dict[str, Any]]], q: AnomalyQuery, check: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Past MAX_IN_IDS matching metrics their ids, past MAX_CANDIDATES candidate names the
    names themselves are checked in Python over keyset batches; with a scan budget smaller
    than the data, pages come back short but still in order, with a cursor that goes on
    where the scan stopped."""
    eng, rows = filled
    if check == "ids":
        monkeypatch.setattr(queries_module, "MAX_IN_IDS", 1)
    else:
        monkeypatch.setattr(anomaly_scan, "MAX_CANDIDATES", 1)
    monkeypatch.setattr(anomaly_scan, "SCAN_BATCH", 7)
    monkeypatch.setattr(anomaly_scan, "MAX_SCAN_BATCH", 20)
    monkeypatch.setattr(anomaly_scan, "SCAN_BUDGET", 150)
    want = reference(rows, q)
    got, _ = walk(eng, q, limit=25)
    assert got == want
    if len(want) > 30:
        assert walk_back(eng, q, 25, want[-1]) == want[:-1]


def test_retention_removes_the_algorithm_rows(sql_url: str) -> None:
    eng = make_engine(sql_url)
    upgrade(eng)
    rows = _fill(eng, 300)
    while delete_older_than(eng, T0 + 6000, batch=400) == 400:
        pass
    with eng.connect() as c:
        left = c.execute(sa.select(sa.func.count()).select_from(anomaly_algorithms).where(
            anomaly_algorithms.c.timestamp < T0 + 6000)).scalar_one()
    assert left == 0
    q = AnomalyQuery(algorithm="grubbs")
    assert walk(eng, q, 50)[0] == reference([r for r in rows if r["timestamp"] >= T0 + 6000],
                                            q)
    eng.dispose()


def test_migration_copies_triggered_algorithms(sql_url: str) -> None:
    """Anomalies stored before 0004 are found by the algorithm filter after it."""
    eng = make_engine(sql_url)
    try:
        upgrade(eng, "0003")
        a = sa.table("anomalies", *(sa.column(n) for n in (
            "event_id", "metric_id", "timestamp", "value", "score", "window", "source",
            "status", "created")), sa.column("triggered", sa.JSON()),
            sa.column("results", sa.JSON()))
        m = sa.table("metrics", sa.column("name_hash"), sa.column("name"),
                     sa.column("created"))
        triggered = [["grubbs", "ks_test"], [], ["ks_test", "ks_test"], ["x" * 200]]
        with eng.begin() as c:
            c.execute(m.insert().values(name_hash=name_hash("m.a"), name="m.a", created=T0))
            mid = c.execute(sa.text("SELECT id FROM metrics")).scalar_one()
            for i, t in enumerate(triggered):
                c.execute(a.insert().values(
                    event_id=f"old-{i}", metric_id=mid, timestamp=T0 + i, value=1.0,
                    score=0.5, triggered=t, results=[], window=b"", source="analyzer", status="anomalous",
                    created=T0))
        upgrade(eng)
        with eng.connect() as c:
            copied = sorted((r.event_id, r.algorithm, r.timestamp) for r in c.execute(
                sa.select(anomalies.c.event_id, anomaly_algorithms.c.algorithm,
                          anomaly_algorithms.c.timestamp)
                .join_from(anomaly_algorithms, anomalies,
                           anomalies.c.id == anomaly_algorithms.c.anomaly_id)))
        assert copied == [("old-0", "grubbs", T0), ("old-0", "ks_test", T0),
                          ("old-2", "ks_test", T0 + 2), ("old-3", "x" * 200, T0 + 3)]
        assert [e.id for e in query_anomalies(eng, AnomalyQuery(algorithm="ks_test")).items] \
            == ["old-2", "old-0"]
        downgrade(eng, "0003")
        assert "anomaly_algorithms" not in sa.inspect(eng).get_table_names()
        upgrade(eng)
    finally:
        eng.dispose()
