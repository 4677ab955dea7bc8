"""Kafka ingest against a real Kafka-protocol broker (Tansu, started here) and a real
`skyline run`: the three message formats, malformed messages counted and skipped, lag in
/metrics, and a restart of Skyline mid-stream that loses no point (offsets are committed only
once the points are stored)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port
from tests.e2e.skylineproc import AUTH, Running, env_for
from tests.servers import tansu

pytestmark = pytest.mark.system

kafka = pytest.importorskip("confluent_kafka", reason="the kafka extra (confluent-kafka)")
admin_mod = pytest.importorskip("confluent_kafka.admin")

TOPICS = {"graphite": "plaintext", "skyjson": "json", "influx": "influx"}


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[str]:
    proc, address = tansu(tmp_path)
    try:
        admin = admin_mod.AdminClient({"bootstrap.servers": address})
        futures = admin.create_topics([admin_mod.NewTopic("graphite", 2, 1),
                                       admin_mod.NewTopic("skyjson", 1, 1),
                                       admin_mod.NewTopic("influx", 1, 1)])
        for f in futures.values():
            f.result(timeout=30)
        yield address
    finally:
        proc.close()


def _start(tmp: Path, port: int, broker: str) -> Running:
    env = env_for(tmp / "var", port, SKYLINE_INGEST__FLUSH_INTERVAL="0.2",
                  SKYLINE_FLUX__KAFKA_BROKERS=broker,
                  SKYLINE_FLUX__KAFKA_TOPICS=json.dumps(TOPICS),
                  SKYLINE_FLUX__KAFKA_MAX_MESSAGES="200")
    run = Running(env, tmp)
    run.wait_healthy(f"http://127.0.0.1:{port}", timeout=120)
    return run


def _points(base: str, name: str) -> list[list[float]]:
    r = httpx.get(f"{base}/api/v1/series/{name}", headers=AUTH)
    if r.status_code == 404:
        return []
    r.raise_for_status()
    body = r.json()
    return [[t, v] for t, v in zip(body["timestamps"], body["values"], strict=True)]


def _metrics(base: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for line in httpx.get(f"{base}/metrics").text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            name = name.split("{", 1)[0]  # the instance label
            out[name] = out.get(name, 0.0) + float(value)
    return out


def _stop(run: Running) -> None:
    assert run.stop() == 0, run.stderr
    assert "Traceback" not in run.stderr, run.stderr


def test_formats_malformed_and_lag(tmp_path, broker):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    run = _start(tmp_path, port, broker)
    try:
        now = int(time.time())
        producer = kafka.Producer({"bootstrap.servers": broker})
        producer.produce("graphite", f"kafka.plain.a 1.5 {now - 120}\n"
                         f"kafka.plain.a 2.5 {now - 60}\n".encode(), partition=0)
        producer.produce("graphite", b"this is not a graphite line at all\n", partition=1)
        producer.produce("graphite", f"kafka.plain.b;dc=eu 7 {now - 60}".encode(),
                         partition=1)
        producer.produce("skyjson", json.dumps({"metrics": [
            {"metric": "kafka.json.c", "timestamp": now - 60, "value": 3},
            {"metric": "kafka.json.c", "timestamp": now - 30, "value": "bad"}]}).encode())
        producer.produce("skyjson", b"{not json")
        producer.produce("influx", f"kafka_cpu,host=h1 usage=0.25,temp=41i "
                         f"{(now - 60) * 10**9}\n".encode())
        producer.produce("influx", b"kafka_cpu,host=h1\n")
        producer.flush(30)

        expected = {
            "kafka.plain.a": [[now - 120, 1.5], [now - 60, 2.5]],
            'kafka.plain.b{dc="eu"}': [[now - 60, 7.0]],
            "kafka.json.c": [[now - 60, 3.0]],
            'kafka_cpu_usage{host="h1"}': [[now - 60, 0.25]],
            'kafka_cpu_temp{host="h1"}': [[now - 60, 41.0]],
        }
        deadline = time.monotonic() + 60
        got: dict[str, list[list[float]]] = {}
        while time.monotonic() < deadline:
            got = {name: _points(base, name) for name in expected}
            if got == expected:
                break
            time.sleep(0.3)
        assert got == expected, run.stderr[-3000:]

        # each malformed message is counted under its reason and skipped; lag reaches 0
        deadline = time.monotonic() + 30
        m: dict[str, float] = {}
        while time.monotonic() < deadline:
            m = _metrics(base)
            if m.get("skyline_flux_kafka_lag") == 0 and m.get(
                    "skyline_ingest_rejected_kafka_bad_json_total"):
                break
            time.sleep(0.3)
        # the garbage plaintext line and the Influx line without fields
        assert m.get("skyline_ingest_rejected_kafka_bad_line_total") == 2, m
        assert m.get("skyline_ingest_rejected_kafka_bad_value_total") == 1, m
        assert m.get("skyline_ingest_rejected_kafka_bad_json_total") == 1, m
        assert m.get("skyline_flux_kafka_messages_total") == 7, m
        assert m.get("skyline_flux_kafka_lag") == 0, m
    finally:
        _stop(run)


def test_restart_mid_stream_loses_no_point(tmp_path, broker):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    run = _start(tmp_path, port, broker)
    metrics = [f"kafka.restart.m{i}" for i in range(4)]
    per_metric = 400
    now = int(time.time())
    start = now - 2 * per_metric
    done = threading.Event()

    def produce() -> None:
        # a steady stream over ~12 s, spread over both partitions, while Skyline restarts
        p = kafka.Producer({"bootstrap.servers": broker, "linger.ms": 5})
        for k in range(per_metric):
            for j, name in enumerate(metrics):
                p.produce("graphite", f"{name} {k} {start + k}".encode(), partition=j % 2)
            p.poll(0)
            time.sleep(0.03)
        p.flush(30)
        done.set()

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    try:
        # wait until part of the stream is stored, then restart Skyline mid-stream
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(_points(base, metrics[0])) < 40:
            time.sleep(0.2)
        first = len(_points(base, metrics[0]))
        assert 0 < first < per_metric, "the restart must come mid-stream"
        _stop(run)
        run = _start(tmp_path, port, broker)
        producer.join(timeout=120)
        assert done.is_set()
        expected = [[float(start + k), float(k)] for k in range(per_metric)]
        deadline = time.monotonic() + 90
        got: dict[str, list[list[float]]] = {}
        while time.monotonic() < deadline:
            got = {name: _points(base, name) for name in metrics}
            if all(got[name] == expected for name in metrics):
                break
            time.sleep(0.5)
        for name in metrics:
            assert got[name] == expected, (name, len(got[name]), run.stderr[-3000:])
    finally:
        _stop(run)
