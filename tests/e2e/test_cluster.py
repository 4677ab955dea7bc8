"""Skyline on a real Redis Cluster (3 masters, 3 replicas: tests/rediscluster.py), through the
real commands as a user spreads it: `skyline serve horizon`, two `skyline serve analyzer`,
`skyline serve panorama`, `skyline serve alerters` and `skyline serve flux` (with the web
app it lives on), each its own
process, all with REDIS_URL naming one node.

Points sent over Graphite plaintext land on their masters; the two analyzers share the
metrics (every metric analysed by exactly one of them per run); the planted spikes reach
SQL and a webhook, once each; points posted to flux land too; the web app's health, metric
list and series read the whole cluster; when one analyzer
is killed the other takes its metrics; a component that cannot run on a cluster refuses to
start with a clear error."""

from __future__ import annotations

import json
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import redis

from skyline.store import keys
from skyline.store.cluster import ClusterStore
from skyline.store.sql import latest_anomalies, latest_runs, make_engine
from skyline.store.sql.runs import RunStats
from tests.alertsinks import HttpSink, validate_signed
from tests.conftest import free_port
from tests.e2e.skylineproc import AUTH, Running, cli, env_for
from tests.rediscluster import RedisCluster

N = 240
SPIKED = [f"cl.svc{i % 7}.m{i}" for i in range(0, N, 40)]  # 6 metrics
INTERVAL = 2  # ANALYZER_OPTIMUM_RUN_DURATION
FLUX_KEY = "F" * 32


def _names() -> list[str]:
    return [f"cl.svc{i % 7}.m{i}" for i in range(N)]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[RedisCluster]:
    c = RedisCluster(tmp_path / "redis")
    yield c
    c.close()


def _send(port: int, lines: list[str]) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall("".join(lines).encode())


def _wait(cond, what: str, timeout: float = 90.0, procs: tuple[Running, ...] = ()):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        for p in procs:
            if p.proc.poll() is not None:
                p.finish()
                raise AssertionError(f"a skyline process exited {p.proc.returncode}: "
                                     f"{p.stderr[-3000:]}")
        time.sleep(0.3)
    raise AssertionError(f"{what} did not happen within {timeout} s")


def _runs(engine, instance: str, after: float) -> list[RunStats]:  # type: ignore[no-untyped-def]
    return [r for r in latest_runs(engine, limit=2000)
            if r.instance == instance and r.started > after]


def test_two_analyzers_share_a_cluster_and_one_takes_over_when_the_other_dies(
        cluster: RedisCluster, tmp_path: Path) -> None:
    data = tmp_path / "var"
    url = f"redis://127.0.0.1:{cluster.ports[0]}/0"
    sink = HttpSink(validate_signed("s3cret")).__enter__()
    cfg = tmp_path / "skyline.toml"
    cfg.write_text(f"""
[[ALERTS]]
pattern = "cl.**"
channel = "webhook"
expiration = 3600

[alerters]
poll_interval = 0.2

[alerters.webhook]
enabled = true
url = "{sink.url}/hook"
secret = "s3cret"
""")
    base = env_for(data, free_port(), SKYLINE_REDIS_URL=url, SKYLINE_CONFIG=str(cfg),
                   SKYLINE_ANALYZER_OPTIMUM_RUN_DURATION=str(INTERVAL),
                   SKYLINE_ANALYZER_PROCESSES="1", SKYLINE_PANORAMA_EXPIRY_TIME="0",
                   SKYLINE_DATABASE_URL=f"sqlite:///{tmp_path / 'skyline.db'}")
    plaintext = int(base["SKYLINE_HORIZON__PLAINTEXT_PORT"])
    horizon = Running(base, tmp_path, "serve", "horizon")
    panorama = Running(base, tmp_path, "serve", "panorama")
    a = Running({**base, "SKYLINE_INSTANCE_NAME": "analyzer-a"}, tmp_path, "serve", "analyzer")
    b = Running({**base, "SKYLINE_INSTANCE_NAME": "analyzer-b"}, tmp_path, "serve", "analyzer")
    web = Running({**base, "SKYLINE_FLUX_API_KEYS": json.dumps({FLUX_KEY: ""})}, tmp_path,
                  "serve", "flux")
    alerters = Running(base, tmp_path, "serve", "alerters")
    procs = (horizon, panorama, a, b, web, alerters)
    http = f"http://127.0.0.1:{base['SKYLINE_WEBAPP_PORT']}"
    engine = make_engine(f"sqlite:///{tmp_path / 'skyline.db'}")
    store = ClusterStore(cluster.seeds[:1], timeout=5)
    try:
        names = _names()
        now = time.time()
        t = now - 60.0 * np.arange(1, 181)[::-1]
        lines = []
        for i, name in enumerate(names):
            v = np.random.default_rng(i).normal(100.0, 5.0, len(t))
            lines += [f"{name} {x:.3f} {int(ts)}\n" for ts, x in zip(t, v, strict=True)]
        _wait(lambda: _try_send(plaintext, lines), "horizon listening", procs=procs)

        # every point lands on its metric's master, and the index lists every metric
        _wait(lambda: store.count() == N, "the cluster's index listing every metric",
              procs=procs)
        flat = store.read(names)
        assert flat.counts.tolist() == [len(t)] * N
        assert (flat.stats.missing, flat.stats.wrong_type) == (0, 0)

        # both analyzers joined; each analyses its share of the metrics, together all
        members = redis.RedisCluster.from_url(url)
        try:
            _wait(lambda: len(members.zrange(keys.ANALYZER_MEMBERS, 0, -1)) == 2,
                  "two analyzers sharing the cluster", procs=procs)
        finally:
            members.close()
        shared = time.time() + INTERVAL  # runs started after both saw two members

        def both_ran() -> tuple[RunStats, RunStats] | None:
            ra, rb = _runs(engine, "analyzer-a", shared), _runs(engine, "analyzer-b", shared)
            return (ra[0], rb[0]) if ra and rb else None

        ra, rb = _wait(both_ran, "a run of each analyzer after both joined", procs=procs)
        assert ra.metrics + rb.metrics == N
        assert min(ra.metrics, rb.metrics) > N / 4  # a real share each (by slot range)
        assert not {"WrongType", "DeletedByRoomba"} & (set(ra.exceptions) | set(rb.exceptions))

        # spikes: each planted one is found once
        t_spike = now + 30
        _send(plaintext, [f"{m} 400 {int(t_spike)}\n" for m in SPIKED])
        rows = _wait(lambda: [r for r in latest_anomalies(engine, limit=200)
                              if r.metric in SPIKED] if len([
                                  r for r in latest_anomalies(engine, limit=200)
                                  if r.metric in SPIKED]) >= len(SPIKED) else None,
                     "every planted spike stored by panorama", procs=procs)
        assert sorted(r.metric for r in rows) == sorted(SPIKED)
        assert all(r.status == "anomalous" and r.value == 400 for r in rows)
        alerted = _wait(lambda: [a["alert"]["metric"] for a in sink.accepted
                                 if a["alert"]["metric"] in SPIKED]
                        if {a["alert"]["metric"] for a in sink.accepted} >= set(SPIKED)
                        else None, "a webhook alert for every planted spike", procs=procs)

        # the web app sees the whole cluster; flux writes to it
        health = web.wait_healthy(http)
        body = {"key": FLUX_KEY, "metrics": [
            {"metric": names[3], "timestamp": int(now) + 30, "value": 7.5}]}
        posted = httpx.post(f"{http}/flux/metric_data_post", json=body)
        assert posted.status_code in (200, 204), posted.text
        _wait(lambda: store.read([names[3]]).counts[0] == len(t) + 1, "the flux point stored",
              procs=procs)
        assert store.read([names[3]]).values[-1] == 7.5
        assert health["redis"]["metrics"] == N, health
        listed = httpx.get(f"{http}/api/v1/metrics", params={"limit": 1000}, headers=AUTH)
        assert listed.status_code == 200 and listed.json()["total"] == N
        assert sorted(listed.json()["metrics"]) == sorted(names)
        series = httpx.get(f"{http}/api/v1/series/{SPIKED[1]}", headers=AUTH).json()
        assert series["points"] == len(t) + 1 and series["values"][-1] == 400
        assert httpx.get(f"{http}/", headers=AUTH).status_code == 200

        # one analyzer dies without leaving: its lease expires, the other takes every metric
        b.proc.send_signal(signal.SIGKILL)
        b.finish()
        killed = time.time()
        took_over = _wait(lambda: [r for r in _runs(engine, "analyzer-a", killed)
                                   if r.metrics == N],
                          "the surviving analyzer taking every metric", procs=(horizon, a))
        assert took_over
        time.sleep(1)  # a second delivery of the same alert would have come by now
        alerted = [a["alert"]["metric"] for a in sink.accepted if a["alert"]["metric"] in SPIKED]
    finally:
        store.close()
        engine.dispose()
        for p in procs:
            if p.proc.poll() is None:
                p.stop()
        sink.__exit__(None, None, None)
    assert sorted(alerted) == sorted(SPIKED)  # once each
    logs = a.stderr + horizon.stderr + panorama.stderr + web.stderr + alerters.stderr
    assert "Traceback" not in logs, logs[-3000:]
    assert "share the cluster's metrics" in a.stderr


def _try_send(port: int, lines: list[str]) -> bool:
    try:
        _send(port, lines)
    except OSError:
        return False
    return True


def test_a_component_not_ready_for_a_cluster_refuses_to_start(
        cluster: RedisCluster, tmp_path: Path) -> None:
    url = f"redis://127.0.0.1:{cluster.ports[1]}/0"
    env = env_for(tmp_path / "var", free_port(), SKYLINE_REDIS_URL=url)
    r = cli(env, "serve", "boundary", timeout=60)
    assert r.returncode != 0
    assert "Redis Cluster" in r.stderr and "boundary" in r.stderr
    assert "Traceback" not in r.stderr


def test_a_master_killed_mid_load_loses_no_point_and_the_next_run_covers_every_metric(
        cluster: RedisCluster, tmp_path: Path) -> None:
    """Points stream into horizon while a master is killed: its replica is promoted, the
    write buffer keeps what it could not store meanwhile, and every point sent is stored
    once the cluster is whole again; the analyzer's next run reads every metric."""
    url = f"redis://127.0.0.1:{cluster.ports[0]}/0"
    db = f"sqlite:///{tmp_path / 'skyline.db'}"
    base = env_for(tmp_path / "var", free_port(), SKYLINE_REDIS_URL=url,
                   SKYLINE_ANALYZER_OPTIMUM_RUN_DURATION=str(INTERVAL),
                   SKYLINE_ANALYZER_PROCESSES="1", SKYLINE_DATABASE_URL=db)
    plaintext = int(base["SKYLINE_HORIZON__PLAINTEXT_PORT"])
    horizon = Running(base, tmp_path, "serve", "horizon")
    analyzer = Running(base, tmp_path, "serve", "analyzer")
    procs = (horizon, analyzer)
    names = _names()
    store = ClusterStore(cluster.seeds[:1], timeout=5)
    store.refresh()  # learns every node: the seed is the master killed below
    engine = make_engine(db)
    sent = 0
    try:
        t0 = int(time.time()) - 600
        ticks = 60  # one point per metric per second of metric time

        def tick(k: int) -> list[str]:
            return [f"{n} {k} {t0 + k}\n" for n in names]

        _wait(lambda: _try_send(plaintext, tick(0)), "horizon listening", procs=procs)
        sent = 1
        progress = threading.Event()

        def sender() -> None:
            # keeps sending through the kill and the election (the nodes answer CLUSTERDOWN
            # meanwhile): horizon's buffer must hold those points until a master takes them
            nonlocal sent
            with socket.create_connection(("127.0.0.1", plaintext), timeout=30) as s:
                for k in range(1, ticks):
                    s.sendall("".join(tick(k)).encode())
                    sent += 1
                    if k == 10:
                        progress.set()
                    time.sleep(0.15)

        thread = threading.Thread(target=sender)
        thread.start()
        assert progress.wait(60)
        cluster.kill_master(0)  # returns once the replica serves its slots
        killed_at = sent
        thread.join(120)
        assert not thread.is_alive()
        assert killed_at < ticks - 5  # points were sent after the kill, not only before

        def stored() -> bool:
            flat = store.read(names)
            per = np.split(flat.timestamps, np.cumsum(flat.counts)[:-1])
            return all(len(np.unique(t)) == sent for t in per)

        _wait(stored, "every point sent stored on the masters after the failover",
              procs=procs)
        after = time.time() + INTERVAL
        run = _wait(lambda: [r for r in latest_runs(engine, limit=200)
                             if r.started > after and r.metrics == N],
                    "an analyzer run over every metric after the failover", procs=procs)
        assert run
    finally:
        store.close()
        engine.dispose()
        for p in procs:
            if p.proc.poll() is None:
                p.stop()
    assert sent == 60
    assert "Traceback" not in horizon.stderr, horizon.stderr[-3000:]
