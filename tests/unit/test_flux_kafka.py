"""Flux's Kafka consumer, its logic without a broker: messages of each format into points,
malformed ones counted, and offsets committed only for batches whose points are stored (a
stand-in consumer records the commits; the real broker is in tests/e2e/test_kafka.py)."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest

from skyline.core.errors import SettingsError
from skyline.services.flux.kafka import KafkaIngest, parse_messages
from skyline.settings import load_settings

NOW = 1_800_000_000.0
FORMATS = {"g": "plaintext", "j": "json", "i": "influx"}


def _parse(messages, max_bytes=1 << 20):
    return parse_messages(messages, FORMATS, "s", max_bytes, 1000, NOW)


def test_each_format_and_the_malformed():
    p = _parse([
        ("g", 0, 10, b"a.b 1 1799999940\nnot_a_line\n"),
        ("g", 1, 3, b"a.c;dc=eu 2 1799999940"),  # no newline: a message ends its line
        ("j", 0, 0, json.dumps({"metrics": [{"metric": "j.x", "timestamp": 1799999940,
                                             "value": 3}]}).encode()),
        ("j", 0, 1, json.dumps({"metric": "j.y", "value": 4}).encode()),
        ("j", 0, 2, b"{oops"),
        ("i", 0, 7, b"cpu,host=h usage=0.5 1799999940\ncpu,host=h\n"),
        ("g", 0, 11, b""),
        ("g", 0, 12, b"x" * 100),
    ], max_bytes=80)
    (batch,) = p.batches
    ts, vs = batch.arrays()
    assert batch.names == ["a.b", 'a.c{dc="eu"}']
    assert ts.tolist() == [1799999940.0, 1799999940.0] and vs.tolist() == [1.0, 2.0]
    assert batch.rejected == {"bad_line": 1}
    json_x, json_y, influx = p.points
    assert (json_x.names, list(json_x.values)) == (["j.x"], [3.0])
    assert (json_y.names, list(json_y.timestamps)) == (["j.y"], [NOW])  # no timestamp: now
    assert influx.names == ['cpu_usage{host="h"}']
    assert np.asarray(influx.timestamps).tolist() == [1799999940.0]
    assert influx.errors == [(2, "bad_line")]
    assert p.refused == {"bad_json": 1, "empty_message": 1, "message_too_large": 1}
    assert p.messages == 8
    assert p.first == {("g", 0): 10, ("g", 1): 3, ("j", 0): 0, ("i", 0): 7}
    assert p.after == {("g", 0): 13, ("g", 1): 4, ("j", 0): 3, ("i", 0): 8}


def test_settings_are_checked():
    s = load_settings(flux={"kafka_brokers": "127.0.0.1:9092", "kafka_topics": {"m": "json"}})
    assert s.flux.kafka_topics == {"m": "json"}
    with pytest.raises(SettingsError, match="kafka_topics is empty"):
        load_settings(flux={"kafka_brokers": "127.0.0.1:9092"})
    with pytest.raises(SettingsError, match="not a Kafka topic name"):
        load_settings(flux={"kafka_topics": {"bad topic": "json"}})
    with pytest.raises(SettingsError):
        load_settings(flux={"kafka_topics": {"m": "xml"}})
    with pytest.raises(SettingsError, match="set by Skyline itself"):
        load_settings(flux={"kafka_options": {"enable.auto.commit": "true"}})


class _Buffer:
    def __init__(self) -> None:
        self.accepted = 0
        self.stored = 0


class _Ctx:
    def __init__(self, settings):
        self.settings = settings
        self.points = _Buffer()

    def telemetry(self, name):
        from skyline.telemetry import Telemetry
        return Telemetry(name, "test")


class _Consumer:
    def __init__(self) -> None:
        self.commits: list[dict[tuple[str, int], int]] = []

    def commit(self, offsets, asynchronous):
        assert asynchronous is False
        self.commits.append({(tp.topic, tp.partition): tp.offset for tp in offsets})


def test_offsets_are_committed_only_once_their_points_are_stored():
    pytest.importorskip("confluent_kafka")
    settings = load_settings(flux={"kafka_brokers": "b:9092", "kafka_topics": {"g": "plaintext"}})
    ctx = _Ctx(settings)
    consumer = _Consumer()
    k = KafkaIngest(ctx, consumer)  # type: ignore[arg-type]
    # two batches submitted: the buffer had accepted 5 points after the first, 9 after the second
    k._pending.extend([(5, {("g", 0): 11}), (9, {("g", 0): 20, ("g", 1): 4})])
    k._commit()
    assert consumer.commits == []  # nothing stored yet
    ctx.points.stored = 7
    k._commit()
    assert consumer.commits == [{("g", 0): 11}]
    ctx.points.stored = 9
    k._commit()
    assert consumer.commits[-1] == {("g", 0): 20, ("g", 1): 4}
    # a revoked partition's pending offsets are dropped: its next owner reads them again
    k._pending.append((12, {("g", 0): 30, ("g", 1): 9}))

    class TP:
        topic, partition = "g", 1
    k._on_revoke(consumer, [TP()])
    ctx.points.stored = 12
    k._commit()
    assert consumer.commits[-1] == {("g", 0): 30}
    assert not asyncio.iscoroutinefunction(k._commit)
