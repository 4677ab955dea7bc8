"""Web bench: the anomalies API and page over 1M stored anomalies of 100k metrics.

Loads ROWS anomalies of METRICS metrics (names like `host-0042.cpu.user`,
`stats.svc-17.requests.errors`, labelled `http_requests_total{...}`; a few busy metrics and
many quiet ones; nine algorithms plus a rare one; scores, sources and statuses varied; 30 days
of timestamps) into SQLite and/or PostgreSQL, then serves the product's web app (every
component's routers, as `skyline run` composes them) under uvicorn in a subprocess and times
real HTTP requests (httpx, one connection, sequential) per filter case: p50 and p99 over
--requests requests after 3 untimed ones. Cases vary their parameter where it makes sense
(a different metric, day or hour per request) so no single cached plan flatters them.

The loaded database is kept (SQLite: var/bench-web/*.db; PostgreSQL: schema `bench_web` of
--pg-url, with a marker table) and reused by the next run with the same --rows, --metrics
and seed; --reload loads it again. --drop removes the PostgreSQL schema at the end.

    .venv/bin/python bench/web.py                               # 1M x 100k, both databases
    .venv/bin/python bench/web.py --rows 100000 --metrics 10000 --db sqlite

If the users table exists (migration 0005) a user and API token are created and sent as
`Authorization: Bearer`; if the HTML page `/anomalies` is not there (or answers other than
200 to the token) its cases are skipped with a note. Human lines go to stdout, progress to
stderr; the last stdout line is JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from skyline.core.events import event_id, pack_window
from skyline.store.sql import make_engine, upgrade
from skyline.store.sql.models import anomalies, anomaly_algorithms, metrics, name_hash

DAY = 86_400.0
SPAN = 30 * DAY
SEED = 20261127
ALGORITHMS = ["histogram_bins", "first_hour_average", "stddev_from_average", "grubbs",
              "ks_test", "mean_subtraction_cumulation", "median_absolute_deviation",
              "stddev_from_moving_average", "least_squares"]
# how often each built-in is among the triggered ones (normalised below)
ALGORITHM_WEIGHTS = [0.95, 0.9, 0.8, 0.75, 0.5, 0.7, 0.85, 0.6, 0.25]
RARE_ALGORITHM = "spectral_residual"  # in ~0.2% of anomalies
BATCH = 20_000
SCHEMA = "bench_web"
WARMUP = 3
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
HOST_METRICS = ["cpu.user", "cpu.system", "cpu.iowait", "mem.used", "mem.free",
                "disk.sda.util", "disk.sda.read_bytes", "net.eth0.rx_bytes",
                "net.eth0.tx_bytes", "load.1m"]
STATS_METRICS = ["requests.count", "requests.errors", "latency.p50", "latency.p99",
                 "queue.depth"]


def progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# data ------------------------------------------------------------------------------------------
def metric_names(n: int) -> list[str]:
    """n names: half host metrics, 40% service stats, 10% labelled series."""
    hosts = n // 2 // len(HOST_METRICS)
    svcs = n * 2 // 5 // len(STATS_METRICS)
    names = [f"host-{h:04d}.{m}" for h in range(hosts) for m in HOST_METRICS]
    names += [f"stats.svc-{s}.{m}" for s in range(svcs) for m in STATS_METRICS]
    i = 0
    while len(names) < n:
        names.append(f'http_requests_total{{code="{500 + i % 4}",instance="web-{i // 20}",'
                     f'path="/api/v{i % 20}"}}')
        i += 1
    return names


def rows_for(rng: np.random.Generator, n_rows: int, n_metrics: int, t_end: float) -> dict[str, Any]:
    """Column arrays of n_rows anomalies in timestamp order (as they would arrive)."""
    # a few busy metrics and a long quiet tail, the busy ones spread over every family
    weights = 1.0 / (np.arange(n_metrics) + 10.0) ** 0.8
    weights = rng.permutation(weights / weights.sum())
    return {
        "metric": rng.choice(n_metrics, size=n_rows, p=weights),
        "timestamp": np.sort(np.round(t_end - rng.uniform(0, SPAN, n_rows), 3)),
        "k": rng.choice([6, 7, 8, 9], size=n_rows, p=[0.45, 0.3, 0.17, 0.08]),
        "rare": rng.random(n_rows) < 0.002,
        "source": rng.choice(["analyzer", "mirage", "boundary"], size=n_rows,
                             p=[0.85, 0.1, 0.05]),
        "status": rng.choice(["anomalous", "recovered"], size=n_rows, p=[0.7, 0.3]),
        "value": rng.normal(100, 30, n_rows),
    }


def triggered_sets(rng: np.random.Generator, k: np.ndarray, rare: np.ndarray) -> list[list[str]]:
    w = np.array(ALGORITHM_WEIGHTS)
    # weighted sampling without replacement, vectorised: the k largest of u^(1/w)
    keys = rng.random((len(k), len(ALGORITHMS))) ** (1.0 / w)
    order = np.argsort(-keys, axis=1)
    out = []
    for i in range(len(k)):
        names = [ALGORITHMS[j] for j in sorted(order[i, : k[i]])]
        if rare[i]:
            names.append(RARE_ALGORITHM)
        out.append(names)
    return out


def windows(rng: np.random.Generator) -> list[bytes]:
    out = []
    for _ in range(64):
        ts = np.arange(16, dtype=np.float64) * 60.0
        out.append(pack_window(ts, rng.normal(100, 10, 16)))
    return out


def load(engine: Engine, n_rows: int, n_metrics: int) -> float:
    """Fill an empty schema at head; returns the newest timestamp (the data's "now")."""
    rng = np.random.default_rng(SEED)
    t_end = float(int(time.time()))
    names = metric_names(n_metrics)
    pg = engine.dialect.name == "postgresql"
    started = time.perf_counter()
    with engine.begin() as c:
        # bulk loads build the secondary indexes once at the end
        for table in (anomalies, anomaly_algorithms, metrics):
            for ix in table.indexes:
                ix.drop(c)
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        if not pg:  # a bulk load need not survive a power cut
            cur.execute("PRAGMA synchronous=OFF")
        mrows = [(i + 1, name_hash(n), n, t_end - SPAN) for i, n in enumerate(names)]
        _insert(cur, pg, "metrics", ("id", "name_hash", "name", "created"), mrows)
        cols = rows_for(rng, n_rows, n_metrics, t_end)
        wins = windows(rng)
        next_id = 1
        for start in range(0, n_rows, BATCH):
            end = min(n_rows, start + BATCH)
            trig = triggered_sets(rng, cols["k"][start:end], cols["rare"][start:end])
            arows, aarows = [], []
            for j, i in enumerate(range(start, end)):
                m = int(cols["metric"][i])
                ts = float(cols["timestamp"][i])
                src = str(cols["source"][i])
                names_i = trig[j]
                results = [{"algorithm": a, "verdict": True, "statistic": 4.2 + j % 7,
                            "limit": 3.0, "text": f"{a}: statistic {4.2 + j % 7:.2f} beyond "
                            "limit 3.00"} for a in names_i]
                arows.append((next_id, event_id(names[m], ts, src), m + 1, ts,
                              float(cols["value"][i]), len(names_i) / 9.0 if not
                              cols["rare"][i] else min(1.0, (len(names_i) - 1) / 9.0),
                              json.dumps(names_i), json.dumps(results), wins[i % len(wins)],
                              src, str(cols["status"][i]), ts + 5.0))
                aarows += [(next_id, a, ts) for a in names_i]
                next_id += 1
            _insert(cur, pg, "anomalies", ("id", "event_id", "metric_id", "timestamp",
                                            "value", "score", "triggered", "results",
                                            "window", "source", "status", "created"), arows)
            _insert(cur, pg, "anomaly_algorithms", ("anomaly_id", "algorithm", "timestamp"),
                    aarows)
            raw.commit()
            rate = end / (time.perf_counter() - started)
            progress(f"  loaded {end:,}/{n_rows:,} anomalies ({rate:,.0f}/s)")
        if pg:
            for table in ("metrics", "anomalies"):
                cur.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                            f"(SELECT max(id) FROM {table}))")
        raw.commit()
    finally:
        raw.close()
    progress("  building indexes")
    with engine.begin() as c:
        for table in (anomalies, anomaly_algorithms, metrics):
            for ix in table.indexes:
                ix.create(c)
    if pg:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
            c.execute(sa.text("VACUUM ANALYZE"))
    progress(f"  loaded in {time.perf_counter() - started:.0f} s")
    return t_end


def _insert(cur: Any, pg: bool, table: str, columns: tuple[str, ...],
            rows: list[tuple[Any, ...]]) -> None:
    cols = ", ".join(f'"{c}"' for c in columns)  # "window" is a reserved word
    if pg:
        with cur.copy(f"COPY {table} ({cols}) FROM STDIN") as copy:
            for r in rows:
                copy.write_row(r)
    else:
        marks = ", ".join("?" * len(columns))
        cur.executemany(f"INSERT INTO {table} ({cols}) VALUES ({marks})", rows)


# databases ---------------------------------------------------------------------------------------
def sqlite_url(cache: Path, n_rows: int, n_metrics: int) -> str:
    return f"sqlite:///{cache / f'anomalies-{n_rows}-{n_metrics}-{SEED}.db'}"


def pg_schema_url(url: str) -> str:
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}options=-csearch_path%3D{SCHEMA}"


def prepare(kind: str, url: str, n_rows: int, n_metrics: int, reload: bool) -> tuple[str, float]:
    """The URL of a loaded database and its data's "now"; loads unless already loaded."""
    marker = {"rows": n_rows, "metrics": n_metrics, "seed": SEED}
    if kind == "sqlite":
        path = Path(sa.engine.make_url(url).database or "")
        meta = path.with_suffix(".json")
        if not reload and path.exists() and meta.exists():
            saved = json.loads(meta.read_text())
            if {k: saved.get(k) for k in marker} == marker:
                _upgrade(url)
                return url, float(saved["t_end"])
        for p in (path, meta, Path(f"{path}-wal"), Path(f"{path}-shm")):
            p.unlink(missing_ok=True)
        engine = make_engine(url)
        upgrade(engine)
        progress(f"loading SQLite {path}")
        t_end = load(engine, n_rows, n_metrics)
        engine.dispose()
        meta.write_text(json.dumps({**marker, "t_end": t_end}))
        return url, t_end
    admin = make_engine(url)
    try:
        with admin.begin() as c:
            found = None
            if c.execute(sa.text("SELECT 1 FROM information_schema.tables WHERE "
                                 "table_schema = :s AND table_name = 'bench_meta'"),
                         {"s": SCHEMA}).first():
                found = c.execute(sa.text(f"SELECT doc FROM {SCHEMA}.bench_meta")).scalar()
            saved = json.loads(found) if found else {}
            if not reload and {k: saved.get(k) for k in marker} == marker:
                _upgrade(pg_schema_url(url))
                return pg_schema_url(url), float(saved["t_end"])
            c.execute(sa.text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
            c.execute(sa.text(f"CREATE SCHEMA {SCHEMA}"))
    finally:
        admin.dispose()
    surl = pg_schema_url(url)
    engine = make_engine(surl)
    upgrade(engine)
    progress(f"loading PostgreSQL schema {SCHEMA}")
    t_end = load(engine, n_rows, n_metrics)
    with engine.begin() as c:
        c.execute(sa.text("CREATE TABLE bench_meta (doc TEXT NOT NULL)"))
        c.execute(sa.text("INSERT INTO bench_meta VALUES (:d)"),
                  {"d": json.dumps({**marker, "t_end": t_end})})
    engine.dispose()
    return surl, t_end


def _upgrade(url: str) -> None:
    """A cached database from an older checkout: bring it to the current head."""
    engine = make_engine(url)
    try:
        upgrade(engine)
    finally:
        engine.dispose()


def drop_pg(url: str) -> None:
    engine = make_engine(url)
    with engine.begin() as c:
        c.execute(sa.text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
    engine.dispose()


def api_token(url: str) -> str | None:
    """A Bearer token for the API when this checkout has users (else None)."""
    try:
        from skyline.store.sql import users
    except ImportError:
        return None
    engine = make_engine(url)
    try:
        if "api_tokens" not in sa.inspect(engine).get_table_names():
            return None
        try:
            users.create_user(engine, "bench", users.generate_password(), is_admin=True)
        except Exception:  # noqa: BLE001 - already there from an earlier run
            pass
        _record, token = users.create_token(engine, "bench", f"bench-{os.getpid()}",
                                            time.time() + 3600)
        return token
    finally:
        engine.dispose()


# the server --------------------------------------------------------------------------------------
def serve_child(url: str, port: int, data_dir: str) -> None:
    """Run in the subprocess: the product's app with every component's routers."""
    import uvicorn

    from skyline.cli.components import REGISTRY
    from skyline.runtime.context import Context
    from skyline.services.webapp import create_app
    from skyline.settings import load_settings
    from skyline.store.redis_client import redis_session

    settings = load_settings(DATA_DIR=data_dir, DATABASE_URL=url)
    with redis_session(settings) as handle:
        ctx = Context(settings, handle)
        ctx.engine = make_engine(url)
        ctx.sql_ready.set()
        routers = []
        for comp in REGISTRY.values():
            if comp.routers is not None:
                routers.extend(comp.routers(ctx))
        app = create_app(ctx, routers)
        uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


@contextmanager
def server(url: str) -> Iterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory(prefix="bench-web-") as data_dir:
        proc = subprocess.Popen([sys.executable, __file__, "--serve-child", url, str(port),
                                 data_dir])
        base = f"http://127.0.0.1:{port}"
        try:
            import httpx

            deadline = time.monotonic() + 60
            while True:
                if proc.poll() is not None:
                    raise SystemExit(f"the web app exited with status {proc.returncode}")
                try:
                    if httpx.get(base + "/api/v1/health", timeout=2).status_code < 500:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit("the web app did not answer within 60 s")
                time.sleep(0.2)
            yield base
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# cases -------------------------------------------------------------------------------------------
def busiest_metric(url: str) -> tuple[str, int]:
    engine = make_engine(url)
    try:
        with engine.connect() as c:
            row = c.execute(
                sa.select(metrics.c.name, sa.func.count().label("n"))
                .join(anomalies, anomalies.c.metric_id == metrics.c.id)
                .group_by(metrics.c.name).order_by(sa.desc("n")).limit(1)).one()
            return str(row.name), int(row.n)
    finally:
        engine.dispose()


def cases(rng: np.random.Generator, t_end: float, n_metrics: int, busiest: str
          ) -> list[tuple[str, Any]]:
    """(name, params or a function of the request number giving params)."""
    names = metric_names(n_metrics)
    picks = [names[int(i)] for i in rng.choice(n_metrics, 500)]
    hosts = max(1, n_metrics // 2 // len(HOST_METRICS))

    def day(i: int) -> dict[str, Any]:
        d = 1 + i % 28
        return {"from": t_end - (d + 1) * DAY, "until": t_end - d * DAY}

    def hour(i: int) -> dict[str, Any]:
        h = 1 + (i * 7) % (24 * 28)
        return {"from": t_end - (h + 1) * 3600, "until": t_end - h * 3600}

    return [
        ("latest", {}),
        ("metric", lambda i: {"metric": picks[i % len(picks)]}),
        ("metric (busiest)", {"metric": busiest}),
        ("metric + day", lambda i: {"metric": busiest, **day(i)}),
        ("pattern one host", lambda i: {"pattern": f"host-{(i * 37) % hosts:04d}.*.*"}),
        ("pattern stats.*.requests.errors", {"pattern": "stats.*.requests.errors"}),
        ("pattern **.errors", {"pattern": "**.errors"}),
        ("pattern host-00[0-4]x.cpu re:", {"pattern": r"re:^host-00[0-4]\d\.cpu\."}),
        ("pattern re: anywhere", {"pattern": r"re:svc-1\d\.latency"}),
        ("pattern labels", {"pattern": 'http_requests_total{code="503",*}'}),
        ("day", day),
        ("hour", hour),
        ("algorithm grubbs", {"algorithm": "grubbs"}),
        ("algorithm rare", {"algorithm": RARE_ALGORITHM}),
        ("algorithm rare + day", lambda i: {"algorithm": RARE_ALGORITHM, **day(i)}),
        ("min_score 1.0", {"min_score": 1.0}),
        ("source boundary + recovered", {"source": "boundary", "status": "recovered"}),
        ("stats.** + ks_test + score 0.8",
         {"pattern": "stats.**", "algorithm": "ks_test", "min_score": 0.8}),
        ("one host + grubbs + day",
         lambda i: {"pattern": f"host-{(i * 37) % hosts:04d}.**", "algorithm": "grubbs",
                    **day(i)}),
        ("page 200: latest", ("deep", {})),
        ("page 200: stats.**", ("deep", {"pattern": "stats.**"})),
        ("page 200: algorithm grubbs", ("deep", {"algorithm": "grubbs"})),
    ]


def deep_cursor(client: Any, base: str, path: str, params: dict[str, Any], pages: int
                ) -> str | None:
    """The `before` cursor of page `pages` (walked page by page, untimed)."""
    cursor = None
    for _ in range(pages - 1):
        r = client.get(base + "/api/v1/anomalies", params={**params, "before": cursor}
                       if cursor else params)
        r.raise_for_status()
        cursor = r.json()["next"]
        if cursor is None:
            return None
    return cursor


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values), q))


def run_cases(base: str, token: str | None, t_end: float, n_metrics: int, busiest: str,
              n_requests: int) -> tuple[list[dict[str, Any]], list[str]]:
    import httpx

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    notes: list[str] = []
    results: list[dict[str, Any]] = []
    with httpx.Client(headers=headers, timeout=60) as client:
        probe = client.get(base + "/anomalies", headers={"Accept": "text/html"})
        targets = [("api", "/api/v1/anomalies")]
        if probe.status_code == 200 and "html" in probe.headers.get("content-type", ""):
            targets.append(("page", "/anomalies"))
        else:
            notes.append(f"page /anomalies skipped: it answered {probe.status_code} "
                         f"{probe.headers.get('content-type', '')}")
        rng = np.random.default_rng(SEED + 1)
        for name, spec in cases(rng, t_end, n_metrics, busiest):
            if isinstance(spec, tuple):
                params = dict(spec[1])
                cursor = deep_cursor(client, base, "/api/v1/anomalies", params, 200)
                if cursor is None:
                    notes.append(f"{name}: fewer than 200 pages")
                    continue
                spec = {**params, "before": cursor}
            for kind, path in targets:
                times: list[float] = []
                rows = 0
                for i in range(-WARMUP, n_requests):
                    params = spec(max(i, 0)) if callable(spec) else spec
                    t0 = time.perf_counter()
                    r = client.get(base + path, params=params)
                    dt = time.perf_counter() - t0
                    if r.status_code != 200:
                        raise SystemExit(f"{kind} {name}: HTTP {r.status_code}: {r.text[:300]}")
                    if i >= 0:
                        times.append(dt * 1000)
                    if kind == "api":
                        rows = len(r.json()["items"])
                results.append({"case": f"{kind}: {name}", "p50_ms": percentile(times, 50),
                                "p99_ms": percentile(times, 99),
                                "rows": rows if kind == "api" else None})
                last = results[-1]
                progress(f"  {last['case']:<46} p50 {last['p50_ms']:7.1f}  "
                         f"p99 {last['p99_ms']:7.1f}")
    return results, notes


def main() -> int:
    if len(sys.argv) == 5 and sys.argv[1] == "--serve-child":
        serve_child(sys.argv[2], int(sys.argv[3]), sys.argv[4])
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--metrics", type=int, default=100_000)
    p.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    p.add_argument("--pg-url", default=PG_URL)
    p.add_argument("--requests", type=int, default=50, help="timed requests per case")
    p.add_argument("--cache", type=Path, default=Path("var/bench-web"))
    p.add_argument("--reload", action="store_true", help="load the data again")
    p.add_argument("--drop", action="store_true", help="drop the PostgreSQL schema at the end")
    a = p.parse_args()
    if a.rows < 1 or a.metrics < 100 or a.requests < 1:
        p.error("--rows >= 1, --metrics >= 100 and --requests >= 1")
    a.cache.mkdir(parents=True, exist_ok=True)
    kinds = ["sqlite", "postgresql"] if a.db == "both" else [a.db]
    summary: dict[str, Any] = {"bench": "web", "rows": a.rows, "metrics": a.metrics}
    worst = 0.0
    for kind in kinds:
        base_url = sqlite_url(a.cache.resolve(), a.rows, a.metrics) if kind == "sqlite" \
            else a.pg_url
        url, t_end = prepare(kind, base_url, a.rows, a.metrics, a.reload)
        busiest, busiest_n = busiest_metric(url)
        token = api_token(url)
        progress(f"{kind}: serving; busiest metric {busiest} ({busiest_n} anomalies)")
        with server(url) as base:
            results, notes = run_cases(base, token, t_end, a.metrics, busiest, a.requests)
        print(f"\n{kind}: {a.rows:,} anomalies, {a.metrics:,} metrics, {a.requests} requests "
              f"per case over HTTP{' with a Bearer token' if token else ''}")
        print(f"{'case':<46} {'p50 ms':>8} {'p99 ms':>8} {'rows':>5}")
        for r in results:
            rows = "" if r["rows"] is None else str(r["rows"])
            print(f"{r['case']:<46} {r['p50_ms']:8.1f} {r['p99_ms']:8.1f} {rows:>5}")
        for n in notes:
            print(f"note: {n}")
        worst = max([worst] + [r["p99_ms"] for r in results])
        summary[kind] = {r["case"]: [round(r["p50_ms"], 1), round(r["p99_ms"], 1)]
                         for r in results}
        if kind == "postgresql" and a.drop:
            drop_pg(a.pg_url)
    summary["max_p99_ms"] = round(worst, 1) if not math.isnan(worst) else None
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
