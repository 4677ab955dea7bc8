"""The SQL event store on every backend available: SQLite always, MariaDB and PostgreSQL
when SKYLINE_TEST_MYSQL_URL / SKYLINE_TEST_POSTGRES_URL are set (see tests/conftest.py)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Engine

from skyline.core.errors import NotFound, StoreUnavailable
from skyline.core.events import AlgorithmResult, AnomalyEvent
from skyline.store.sql import (
    check,
    current_revision,
    downgrade,
    get_anomaly,
    heads,
    latest_anomalies,
    make_engine,
    metric_anomalies,
    metric_id,
    save_anomaly,
    upgrade,
)
from skyline.store.sql.models import anomalies, metadata, metrics
from tests.conftest import free_port

TABLES = {"metrics", "anomalies"}


@pytest.fixture
def engine(sql_url: str) -> Iterator[Engine]:
    eng = make_engine(sql_url)
    try:
        yield eng
    finally:
        # Before conftest empties the database: idle pooled connections would hold it.
        eng.dispose()


@pytest.fixture
def store(engine: Engine) -> Engine:
    upgrade(engine)
    return engine


def event(metric: str = "web.cpu", timestamp: float = 1_700_000_000.0, source: str = "analyzer",
          **kw: Any) -> AnomalyEvent:
    kw.setdefault("value", 99.5)
    kw.setdefault("score", 0.75)
    kw.setdefault("created", timestamp + 1.0)
    return AnomalyEvent(metric=metric, timestamp=timestamp, source=source, **kw)


def table_names(engine: Engine) -> set[str]:
    return set(sa.inspect(engine).get_table_names())


def count(engine: Engine, table: sa.Table) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


# --- migrations --------------------------------------------------------------------------

def test_single_head() -> None:
    assert len(heads()) == 1, f"migrations have several heads: {heads()}"


def test_upgrade_downgrade_upgrade(engine: Engine) -> None:
    assert current_revision(engine) is None
    assert not TABLES & table_names(engine)

    upgrade(engine)
    assert current_revision(engine) == heads()[0]
    assert TABLES <= table_names(engine)
    index_columns = {
        ix["name"]: list(ix["column_names"]) for ix in sa.inspect(engine).get_indexes("anomalies")
    }
    assert index_columns["ix_anomalies_timestamp_id_metric_id"] == [
        "timestamp", "id", "metric_id"]
    assert index_columns["ix_anomalies_metric_id_timestamp_id"] == [
        "metric_id", "timestamp", "id"]

    downgrade(engine, "base")
    assert current_revision(engine) is None
    assert not TABLES & table_names(engine)

    upgrade(engine)
    assert current_revision(engine) == heads()[0]
    assert TABLES <= table_names(engine)
    upgrade(engine)  # already at head: nothing to do, no error
    assert current_revision(engine) == heads()[0]


def test_models_match_migrations(store: Engine) -> None:
    """models.py and the hand-written migrations describe the same schema."""
    with store.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(ctx, metadata) == []


# --- metrics -----------------------------------------------------------------------------

def test_metric_id_is_stable_and_exact(store: Engine) -> None:
    long_name = "k8s.pod.cpu{" + ",".join(f'l{i}="{"v" * 40}"' for i in range(60)) + "}"
    assert len(long_name) > 2000
    names = ["web.cpu", "web.CPU", "web.cpu.🔥", long_name]
    ids = [metric_id(store, n) for n in names]
    assert len(set(ids)) == len(names), "names differing only in case or length must not merge"
    assert [metric_id(store, n) for n in names] == ids
    assert [metric_id(store, n, create=False) for n in names] == ids
    assert metric_id(store, "never.seen", create=False) is None
    assert count(store, metrics) == len(names)
    with store.connect() as conn:
        stored = dict(conn.execute(sa.select(metrics.c.id, metrics.c.name)).all())
    assert [stored[i] for i in ids] == names


def test_metric_created_by_another_writer_mid_transaction(store: Engine) -> None:
    """Under MySQL's REPEATABLE READ the reader's snapshot predates the other writer's row;
    metric_id must still find it after its own insert meets the duplicate."""
    with store.connect() as conn:
        assert metric_id(conn, "late.metric", create=False) is None  # snapshot taken here
        other = metric_id(store, "late.metric")  # another writer, committed
        assert metric_id(conn, "late.metric") == other
        conn.commit()
    assert count(store, metrics) == 1


def test_concurrent_writers_agree(store: Engine) -> None:
    """Several panorama workers meeting a new metric and the same redelivered event."""
    ev = event(metric="race.metric")
    barrier = threading.Barrier(6)
    saved: list[bool] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            barrier.wait()
            saved.append(save_anomaly(store, ev))
        except Exception as e:  # noqa: BLE001 - reported by the assertion below
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(saved) == [False] * 5 + [True]
    assert count(store, metrics) == 1
    assert count(store, anomalies) == 1


# --- anomalies ---------------------------------------------------------------------------

def test_save_is_idempotent_on_event_id(store: Engine) -> None:
    ev = event()
    assert save_anomaly(store, ev) is True
    assert save_anomaly(store, ev) is False
    assert save_anomaly(store, ev) is False
    assert count(store, anomalies) == 1
    assert get_anomaly(store, ev.id) == ev


def test_duplicate_does_not_break_the_callers_transaction(store: Engine) -> None:
    first, second = event(timestamp=10.0), event(timestamp=20.0)
    with store.begin() as conn:
        assert save_anomaly(conn, first) is True
        assert save_anomaly(conn, first) is False
        # On PostgreSQL a raised duplicate would have aborted the transaction here.
        assert save_anomaly(conn, second) is True
    assert {e.id for e in latest_anomalies(store)} == {first.id, second.id}


def test_caller_transaction_rolls_back(store: Engine) -> None:
    with pytest.raises(RuntimeError), store.begin() as conn:
        save_anomaly(conn, event())
        raise RuntimeError("caller fails after saving")
    assert count(store, anomalies) == 0


def test_event_ids_are_case_sensitive(store: Engine) -> None:
    """MySQL's default collations would call these two ids duplicates."""
    lower = event(id="abcdef", timestamp=1.0)
    upper = event(id="ABCDEF", timestamp=2.0)
    assert save_anomaly(store, lower) is True
    assert save_anomaly(store, upper) is True
    assert get_anomaly(store, "ABCDEF") == upper
    assert get_anomaly(store, "abcdef") == lower


def test_get_unknown_anomaly(store: Engine) -> None:
    with pytest.raises(NotFound):
        get_anomaly(store, "0" * 32)


def test_latest_anomalies_keyset_pagination(store: Engine) -> None:
    # Ties on timestamp across metrics and sources: the row id must break them.
    events = [
        event(metric=f"m{i % 3}", timestamp=1000.0 + (i // 2) * 60, source=f"s{i % 2}")
        for i in range(11)
    ]
    for ev in events:
        assert save_anomaly(store, ev)
    # Newest first; within one timestamp the later insert (larger row id) first.
    expected = [
        e.id for _, e in sorted(enumerate(events), key=lambda p: (p[1].timestamp, p[0]),
                                reverse=True)
    ]

    pages: list[list[str]] = []
    before: str | None = None
    while True:
        page = latest_anomalies(store, limit=4, before=before)
        if not page:
            break
        pages.append([e.id for e in page])
        before = page[-1].id
    assert [len(p) for p in pages] == [4, 4, 3]
    assert [i for p in pages for i in p] == expected

    assert [e.id for e in latest_anomalies(store, limit=50)] == expected
    assert latest_anomalies(store, limit=1) == [events[10]]
    with pytest.raises(NotFound):
        latest_anomalies(store, before="no-such-event")


def test_metric_anomalies_time_range(store: Engine) -> None:
    mine = [event(metric="db.latency", timestamp=t) for t in (100.0, 200.0, 300.0, 400.0)]
    other = [event(metric="db.latency.p99", timestamp=t) for t in (200.0, 300.0)]
    for ev in mine + other:
        save_anomaly(store, ev)
    got = metric_anomalies(store, "db.latency", 200.0, 300.0)
    assert got == mine[1:3], "bounds are inclusive; other metrics stay out"
    assert metric_anomalies(store, "db.latency", 0.0, 1e12) == mine
    assert metric_anomalies(store, "db.latency", 301.0, 399.0) == []
    assert metric_anomalies(store, "never.seen", 0.0, 1e12) == []
    assert metric_id(store, "never.seen", create=False) is None, "a read must not create"


def test_window_round_trip(store: Engine) -> None:
    # Random values barely compress: well over MySQL's 64 KiB BLOB, so LONGBLOB is needed.
    rng = np.random.default_rng(42)
    ts = 1_700_000_000.0 + np.arange(10_080, dtype=np.float64) * 60.0
    values = rng.normal(size=ts.size)
    ev = AnomalyEvent.build(metric="big.window", timestamp=float(ts[-1]), value=float(values[-1]),
                            score=1.0, source="mirage", window_timestamps=ts,
                            window_values=values, created=5.0)
    assert len(ev.window) > 65_535
    save_anomaly(store, ev)
    got = get_anomaly(store, ev.id)
    assert got.window == ev.window
    got_ts, got_values = got.window_arrays()
    np.testing.assert_array_equal(got_ts, ts)
    np.testing.assert_array_equal(got_values, values)

    empty = event(metric="no.window", window=b"")
    save_anomaly(store, empty)
    assert get_anomaly(store, empty.id).window == b""


def test_results_round_trip(store: Engine) -> None:
    results = (
        AlgorithmResult("stddev_from_average", True, 4.25, 3.0, "4.25σ from the mean > 3σ"),
        AlgorithmResult("grubbs", False, 1.0e-9, 2.5, "no outlier"),
        AlgorithmResult("ks_test", None, None, None, ""),
    )
    ev = event(triggered=("stddev_from_average",), results=results, status="recovered",
               value=-0.0001234, score=1 / 3, timestamp=1_700_000_000.123456)
    save_anomaly(store, ev)
    got = get_anomaly(store, ev.id)
    assert got.results == results
    assert got.triggered == ("stddev_from_average",)
    assert got.status == "recovered"
    assert (got.value, got.score, got.timestamp, got.created) == (
        ev.value, ev.score, ev.timestamp, ev.created
    )
    assert got.to_dict() == ev.to_dict()
    with store.connect() as conn:
        raw = conn.execute(
            sa.select(anomalies.c.results).where(anomalies.c.event_id == ev.id)
        ).scalar_one()
    assert raw[2] == {
        "algorithm": "ks_test", "verdict": None, "statistic": None, "limit": None, "text": ""
    }


def test_unset_created_is_filled_in(store: Engine) -> None:
    ev = event(created=0.0)
    save_anomaly(store, ev)
    assert get_anomaly(store, ev.id).created > 1_600_000_000


def test_schema_refuses_bad_rows(store: Engine) -> None:
    """Foreign keys (off by default in SQLite) and the status check are enforced."""
    row = {
        "event_id": "x", "metric_id": 12345, "timestamp": 1.0, "value": 1.0, "score": 1.0,
        "triggered": [], "results": [], "window": b"", "source": "analyzer",
        "status": "anomalous", "created": 1.0,
    }
    with pytest.raises(sa.exc.IntegrityError), store.begin() as conn:
        conn.execute(anomalies.insert().values(**row))
    mid = metric_id(store, "web.cpu")
    with pytest.raises(sa.exc.DBAPIError), store.begin() as conn:
        conn.execute(anomalies.insert().values(**{**row, "metric_id": mid, "status": "gone"}))
    assert count(store, anomalies) == 0


# --- engines -----------------------------------------------------------------------------

def test_check_passes_on_a_live_database(engine: Engine) -> None:
    check(engine)
    if engine.dialect.name in ("mysql", "mariadb"):
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT @@character_set_client")).scalar() == "utf8mb4"


def test_sqlite_engine(tmp_path) -> None:
    db = tmp_path / "not" / "yet" / "there" / "skyline.db"
    eng = make_engine(f"sqlite:///{db}")
    try:
        check(eng)
        assert db.parent.is_dir()
        with eng.connect() as conn:
            assert conn.execute(sa.text("PRAGMA journal_mode")).scalar() == "wal"
            assert conn.execute(sa.text("PRAGMA foreign_keys")).scalar() == 1
    finally:
        eng.dispose()


@pytest.mark.parametrize(
    "scheme", ["postgresql+psycopg", "mysql+pymysql"], ids=["postgres", "mysql"]
)
def test_unreachable_server_is_store_unavailable(scheme: str) -> None:
    url = f"{scheme}://u:secret@127.0.0.1:{free_port()}/x"
    eng = make_engine(url)
    try:
        with pytest.raises(StoreUnavailable) as info:
            check(eng)
        err = info.value
        assert "secret" not in str(err)
        assert "secret" not in err.url and "***" in err.url
        assert "\n" not in str(err) and err.reason
        with pytest.raises(StoreUnavailable) as info:
            upgrade(eng)
        assert "secret" not in str(info.value)
        with pytest.raises(StoreUnavailable):
            current_revision(eng)
    finally:
        eng.dispose()


def test_unusable_sqlite_path_is_store_unavailable(tmp_path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(StoreUnavailable) as info:
        make_engine(f"sqlite:///{blocker}/skyline.db")
    assert info.value.reason


def test_bad_url_does_not_leak_the_password() -> None:
    with pytest.raises(StoreUnavailable) as info:
        make_engine("postgresql+psycopg://u:secret@127.0.0.1:notaport/x")
    assert "secret" not in str(info.value)


def test_analyzer_runs_round_trip(store: Engine) -> None:
    from skyline.store.sql import RunStats, latest_runs, save_run

    save_run(store, RunStats("a", 100.0, 2.5, 10, 8, 1, {"TooShort": 2}, {"fetch": 0.5}))
    save_run(store, RunStats("a", 160.0, 3.0, 11, 9, 0, {}, {"fetch": 0.7, "grubbs": 0.1}))
    runs = latest_runs(store, limit=5)
    assert [r.started for r in runs] == [160.0, 100.0]
    assert runs[1].exceptions == {"TooShort": 2} and runs[0].stages["grubbs"] == 0.1
    assert runs[0].analysed == 9 and runs[1].anomalies == 1
