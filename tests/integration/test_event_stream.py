"""AnomalyEvents through the Redis stream with consumer groups."""

from __future__ import annotations

import time

import numpy as np

from skyline.events import AnomalyEvent
from skyline.events.stream import Consumer, publish
from skyline.store import keys


def _event(i: int) -> AnomalyEvent:
    return AnomalyEvent.build(metric=f"m.{i}", timestamp=1000.0 + i, value=float(i), score=1.0,
                              source="analyzer", window_timestamps=np.arange(3.0),
                              window_values=np.ones(3))


def test_publish_consume_ack(redis_client):
    consumer = Consumer(redis_client, "panorama", "p1")
    for i in range(5):
        publish(redis_client, _event(i))
    seen: list[AnomalyEvent] = []
    stats = consumer.poll(seen.append, block_ms=100)
    assert stats.handled == 5
    assert [e.metric for e in seen] == [f"m.{i}" for i in range(5)]
    assert seen[0] == _event(0)
    assert redis_client.xpending(keys.ANOMALY_STREAM, "panorama")["pending"] == 0
    assert consumer.poll(seen.append, block_ms=50).handled == 0


def test_groups_each_get_every_event(redis_client):
    a = Consumer(redis_client, "panorama", "p1")
    b = Consumer(redis_client, "alerters", "a1")
    publish(redis_client, _event(1))
    got_a, got_b = [], []
    a.poll(got_a.append, block_ms=100)
    b.poll(got_b.append, block_ms=100)
    assert len(got_a) == len(got_b) == 1


def test_events_of_a_dead_consumer_are_redelivered(redis_client):
    dead = Consumer(redis_client, "panorama", "dead", claim_idle=0.2)
    for i in range(3):
        publish(redis_client, _event(i))

    def die(event: AnomalyEvent) -> None:
        raise RuntimeError("consumer crashed while handling")

    stats = dead.poll(die, block_ms=100)
    assert stats.failed == 1 and stats.handled == 0 and isinstance(stats.error, RuntimeError)
    time.sleep(0.3)
    alive = Consumer(redis_client, "panorama", "alive", claim_idle=0.2)
    seen: list[AnomalyEvent] = []
    stats = alive.poll(seen.append, block_ms=100)
    assert stats.claimed == 3 and stats.handled == 3
    assert sorted(e.metric for e in seen) == ["m.0", "m.1", "m.2"]
    assert redis_client.xpending(keys.ANOMALY_STREAM, "panorama")["pending"] == 0


def test_invalid_entries_are_dropped_and_counted(redis_client):
    consumer = Consumer(redis_client, "panorama", "p1")
    redis_client.xadd(keys.ANOMALY_STREAM, {"data": "{not json"})
    publish(redis_client, _event(7))
    seen: list[AnomalyEvent] = []
    stats = consumer.poll(seen.append, block_ms=100)
    assert stats.invalid == 1 and stats.handled == 1
    assert seen[0].metric == "m.7"
