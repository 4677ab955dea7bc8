"""Publishing AnomalyEvents to the Redis stream and consuming them through consumer groups.

Delivery is at-least-once: a consumer acknowledges after handling, and events left pending by
a consumer that died are claimed by another after `claim_idle` seconds. Handlers must be
idempotent on the event id.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import redis

from skyline.core.errors import InvalidInput
from skyline.core.events import AnomalyEvent
from skyline.store import keys

log = logging.getLogger(__name__)

FIELD = b"data"


def publish(client: redis.Redis, event: AnomalyEvent, *, maxlen: int = 100_000) -> str:
    entry_id = client.xadd(keys.ANOMALY_STREAM, {FIELD: event.to_json()}, maxlen=maxlen,
                           approximate=True)
    return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)


def parse_json_object(text: bytes | str) -> dict[str, Any]:
    """A stream entry holding a JSON object (the incident stream)."""
    try:
        data = json.loads(text)
    except ValueError as e:
        raise InvalidInput(f"not JSON: {e}") from None
    if not isinstance(data, dict):
        raise InvalidInput("not a JSON object")
    return data


def _id_of(event: Any, entry_id: Any) -> str:
    if isinstance(event, AnomalyEvent):
        return event.id
    if isinstance(event, dict):
        return str(event.get("incident") or entry_id)
    return str(entry_id)


def _metric_of(event: Any) -> str:
    if isinstance(event, AnomalyEvent):
        return event.metric
    if isinstance(event, dict):
        return str(event.get("metric", "?"))
    return "?"


@dataclass
class ConsumeStats:
    handled: int = 0
    claimed: int = 0
    invalid: int = 0
    failed: int = 0
    error: BaseException | None = None


class Consumer:
    """One consumer in a group. `poll` reads new events (and claims stale pending ones) and
    acknowledges each event whose handler returned without raising."""

    def __init__(self, client: redis.Redis, group: str, name: str, *, claim_idle: float = 60.0,
                 stream: str = keys.ANOMALY_STREAM,
                 parse: Callable[[bytes], Any] = AnomalyEvent.from_json):
        """`parse` turns an entry's `data` field into what the handler gets (an AnomalyEvent
        on the anomaly stream; a dict on the incident stream); InvalidInput drops it."""
        self.client = client
        self.parse = parse
        self.group = group
        self.name = name
        self.stream = stream
        self.claim_idle_ms = int(claim_idle * 1000)
        self._claim_cursor = "0-0"
        self.ensure_group()

    def ensure_group(self) -> None:
        try:
            self.client.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except redis.ResponseError as e:
            if "BUSYGROUP" not in str(e):
                raise

    def _handle(self, entries: list, handler: Callable[[Any], None],
                stats: ConsumeStats) -> None:
        for entry_id, fields in entries:
            if fields is None:  # trimmed away while pending
                self.client.xack(self.stream, self.group, entry_id)
                continue
            try:
                event = self.parse(fields.get(FIELD, b""))
            except InvalidInput as e:
                log.warning("dropping invalid event %s from %s: %s", entry_id, self.stream, e)
                stats.invalid += 1
                self.client.xack(self.stream, self.group, entry_id)
                continue
            try:
                handler(event)
            except Exception as e:  # noqa: BLE001 - a failing handler must not stop the consumer
                # Stop at the first failure (a database outage would fail every event, and
                # log each): this and the rest of the batch stay pending and are claimed
                # again after claim_idle.
                log.error("handling event %s (%s) failed: %s; it stays pending and is retried",
                          _id_of(event, entry_id), _metric_of(event), e)
                stats.failed += 1
                stats.error = e
                return
            self.client.xack(self.stream, self.group, entry_id)
            stats.handled += 1

    def poll(self, handler: Callable[[Any], None], *, count: int = 100,
             block_ms: int | None = 1000) -> ConsumeStats:
        stats = ConsumeStats()
        # events another consumer took and never acknowledged
        result = cast(list[Any], self.client.xautoclaim(
            self.stream, self.group, self.name, self.claim_idle_ms,
            start_id=self._claim_cursor, count=count))
        next_cursor, claimed = result[0], result[1]
        self._claim_cursor = next_cursor.decode() if isinstance(next_cursor, bytes) else next_cursor
        if claimed:
            stats.claimed += len(claimed)
            self._handle(claimed, handler, stats)
        resp = cast(list[Any], self.client.xreadgroup(
            self.group, self.name, {self.stream: ">"}, count=count, block=block_ms))
        for _stream, entries in resp or []:
            self._handle(entries, handler, stats)
        return stats
