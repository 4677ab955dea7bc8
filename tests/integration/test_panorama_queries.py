"""Panorama's queries and retention, and the alert tables (silences, delivery queue, alert
log), on every SQL backend available (SQLite always; MariaDB and PostgreSQL when
SKYLINE_TEST_MYSQL_URL / SKYLINE_TEST_POSTGRES_URL are set)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from sqlalchemy.engine import Engine

from skyline.core.errors import InvalidInput, NotFound
from skyline.core.events import AnomalyEvent
from skyline.store.sql import alerts as q
from skyline.store.sql import make_engine, save_anomaly, upgrade
from skyline.store.sql.queries import (
    AnomalyQuery,
    count_anomalies,
    delete_older_than,
    query_anomalies,
)

T0 = 1_700_000_000.0


@pytest.fixture
def store(sql_url: str) -> Iterator[Engine]:
    eng = make_engine(sql_url)
    upgrade(eng)
    try:
        yield eng
    finally:
        eng.dispose()


def _save(store: Engine, metric: str, t: float, score: float = 0.5,
          triggered: tuple[str, ...] = ("grubbs",), status: str = "anomalous",
          source: str = "analyzer") -> AnomalyEvent:
    e = AnomalyEvent(metric=metric, timestamp=t, value=1.0, score=score, source=source,
                     status=status, triggered=triggered)  # type: ignore[arg-type]
    assert save_anomaly(store, e)
    return e


@pytest.fixture
def filled(store: Engine) -> Engine:
    _save(store, "web.a.cpu", T0, 0.9, ("grubbs", "stddev_from_average"))
    _save(store, "web.b.cpu", T0 + 60, 0.4, ("histogram_bins",))
    _save(store, "web.b.cpu", T0 + 120, 0.7, ("stddev_from_average",), status="recovered")
    _save(store, "db.a.cpu", T0 + 180, 1.0, ("grubbs",), source="boundary")
    _save(store, "web_x.cpu", T0 + 240, 0.8, ("stddevXfrom_average",))
    _save(store, 'api.rpm{code="500",path="/a.b"}', T0 + 300, 0.6, ("grubbs",))
    return store


def _metrics(store: Engine, q_: AnomalyQuery, **kw: object) -> list[str]:
    return [e.metric for e in query_anomalies(store, q_, **kw).items]  # type: ignore[arg-type]


def test_latest_first(filled: Engine) -> None:
    assert _metrics(filled, AnomalyQuery())[:2] == ['api.rpm{code="500",path="/a.b"}',
                                                    "web_x.cpu"]


def test_filters(filled: Engine) -> None:
    assert _metrics(filled, AnomalyQuery(metric="web.b.cpu")) == ["web.b.cpu", "web.b.cpu"]
    assert _metrics(filled, AnomalyQuery(metric="nope")) == []
    assert _metrics(filled, AnomalyQuery(pattern="web.*.cpu")) == [
        "web.b.cpu", "web.b.cpu", "web.a.cpu"]
    # the LIKE narrowing must not take `_` as a wildcard
    assert _metrics(filled, AnomalyQuery(pattern="web_*.cpu")) == ["web_x.cpu"]
    assert _metrics(filled, AnomalyQuery(pattern="re:^db\\.")) == ["db.a.cpu"]
    assert _metrics(filled, AnomalyQuery(pattern="api.rpm*")) == [
        'api.rpm{code="500",path="/a.b"}']
    assert _metrics(filled, AnomalyQuery(since=T0 + 60, until=T0 + 180)) == [
        "db.a.cpu", "web.b.cpu", "web.b.cpu"]
    assert _metrics(filled, AnomalyQuery(algorithm="stddev_from_average")) == [
        "web.b.cpu", "web.a.cpu"]
    assert _metrics(filled, AnomalyQuery(min_score=0.85)) == ["db.a.cpu", "web.a.cpu"]
    assert _metrics(filled, AnomalyQuery(status="recovered")) == ["web.b.cpu"]
    assert _metrics(filled, AnomalyQuery(source="boundary")) == ["db.a.cpu"]
    assert _metrics(filled, AnomalyQuery(pattern="web.**", algorithm="grubbs",
                                         min_score=0.5)) == ["web.a.cpu"]


def test_keyset_pages(filled: Engine) -> None:
    seen: list[str] = []
    before = None
    pages = 0
    while True:
        page = query_anomalies(filled, AnomalyQuery(), limit=4, before=before)
        seen += [e.id for e in page.items]
        pages += 1
        if page.next is None:
            break
        # new anomalies arriving between pages change nothing in the pages that follow
        _save(filled, "late.metric", T0 + 10_000 + pages)
        before = page.next
    assert pages == 2 and len(seen) == 6 and len(set(seen)) == 6
    with pytest.raises(NotFound):
        query_anomalies(filled, AnomalyQuery(), before="nope")
    with pytest.raises(InvalidInput):
        query_anomalies(filled, AnomalyQuery(), limit=0)


def test_pattern_filter_in_python_beyond_the_in_list(filled: Engine,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from skyline.store.sql import queries

    monkeypatch.setattr(queries, "MAX_IN_IDS", 1)
    page = query_anomalies(filled, AnomalyQuery(pattern="web.*.cpu"), limit=2)
    assert [e.metric for e in page.items] == ["web.b.cpu", "web.b.cpu"] and page.next
    rest = query_anomalies(filled, AnomalyQuery(pattern="web.*.cpu"), limit=2,
                           before=page.next)
    assert [e.metric for e in rest.items] == ["web.a.cpu"] and rest.next is None


def test_retention_deletes_in_bounded_batches(filled: Engine) -> None:
    assert delete_older_than(filled, T0 + 200, batch=2) == 2
    assert delete_older_than(filled, T0 + 200, batch=2) == 2
    assert delete_older_than(filled, T0 + 200, batch=2) == 0
    assert count_anomalies(filled) == 2
    assert _metrics(filled, AnomalyQuery()) == ['api.rpm{code="500",path="/a.b"}', "web_x.cpu"]


# silences ------------------------------------------------------------------------------------------
def test_silences(store: Engine) -> None:
    now = time.time()
    s = q.add_silence(store, "web.**", now + 3600, "deploy <b>", "ana", now=now)
    old = q.add_silence(store, "db.**", now + 10, "", "", now=now)
    assert [x.id for x in q.list_silences(store, now=now)] == [s.id, old.id]
    assert [x.id for x in q.list_silences(store, now=now + 100)] == [s.id]
    assert len(q.list_silences(store, include_expired=True, now=now + 100)) == 2
    assert q.list_silences(store, now=now)[0].as_dict()["reason"] == "deploy <b>"
    q.remove_silence(store, s.id)
    with pytest.raises(NotFound):
        q.remove_silence(store, s.id)
    with pytest.raises(InvalidInput):
        q.add_silence(store, "re:(", now + 10)
    with pytest.raises(InvalidInput):
        q.add_silence(store, "a", now - 10)


# the delivery queue ---------------------------------------------------------------------------------
def _enqueue(store: Engine, event_id: str = "e1", channel: str = "smtp") -> bool:
    return q.enqueue(store, event_id=event_id, channel=channel, kind="alert", metric="m",
                     payload={"event": {"id": event_id}})


def test_enqueue_is_idempotent(store: Engine) -> None:
    assert _enqueue(store)
    assert not _enqueue(store)
    assert _enqueue(store, channel="slack")
    assert q.enqueue(store, event_id="e1", channel="smtp", kind="resolve", metric="m",
                     payload={})
    assert len(q.deliveries(store)) == 3


def test_a_row_is_claimed_by_one_worker_and_taken_over_when_its_lease_ends(
        store: Engine) -> None:
    for i in range(10):
        _enqueue(store, f"e{i}")
    now = time.time()
    got: list[list[int]] = []

    def worker() -> None:
        got.append([d.id for d in q.claim_due(store, "smtp", lease=60, limit=10, now=now)])

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ids = [i for g in got for i in g]
    assert sorted(ids) == sorted(set(ids)) and len(ids) == 10
    assert q.claim_due(store, "smtp", lease=60, now=now + 30) == []
    assert len(q.claim_due(store, "smtp", lease=60, limit=100, now=now + 61)) == 10


def test_attempts_are_recorded(store: Engine) -> None:
    _enqueue(store)
    [d] = q.claim_due(store, "smtp", lease=60)
    assert q.record_attempt(store, d, ok=False, error="boom", duration=0.1,
                            retry_at=time.time() + 5) == "pending"
    assert q.claim_due(store, "smtp", lease=60) == []
    [d] = q.claim_due(store, "smtp", lease=60, now=time.time() + 6)
    assert d.attempts == 1 and d.last_error == "boom"
    assert q.record_attempt(store, d, ok=True, duration=0.2) == "sent"
    assert q.claim_due(store, "smtp", lease=60, now=time.time() + 100) == []
    log = list(reversed(q.alert_log_rows(store)))
    assert [(r["status"], r["attempt"], r["error"]) for r in log] == [
        ("error", 1, "boom"), ("sent", 2, "")]
    q.log_not_sent(store, event_id="e2", channel="smtp", kind="alert", metric="m",
                   status="rate_limited", reason="over 1 per 60 s")
    assert q.alert_log_rows(store, limit=1)[0]["status"] == "rate_limited"
    assert q.purge_history(store, time.time() + 1) == 4  # the sent row and 3 log rows
    assert q.deliveries(store) == []
