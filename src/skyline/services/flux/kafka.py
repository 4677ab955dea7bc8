"""Kafka ingest: flux consumes topics of Graphite plaintext lines, Skyline JSON bodies or
Influx line protocol (flux.kafka_* settings; the optional extra `kafka`, confluent-kafka).

At least once. Offsets are committed for the consumer group only after every point parsed
from the messages before them is in the hot store: the write buffer counts the points it has
accepted and how many of them a flush has stored, so a batch notes the first count after it
is submitted and its offsets are committed once the second has passed it. A Skyline that stops
or dies mid-stream therefore reads again, on its next start, whatever it had not stored; a
point read twice is the same (timestamp, value) and the series keeps it once. A batch that
finds the write buffer full is read again (the consumer seeks back) rather than dropped.

Malformed input is counted under the `kafka` protocol of the ingest self-metrics
(`rejected_kafka_<reason>`: bad lines, bad JSON, oversized messages) and skipped, never
retried. Lag, the messages each assigned partition holds beyond the consumer's position,
summed, is flux's gauge `kafka_lag`.

The blocking client calls (poll, commit, close) and the parsing run in a worker thread; only
the submission to the write path runs on the event loop, which owns it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from skyline.ingest import plaintext
from skyline.ingest.batch import Batch
from skyline.runtime.context import Context, sleep_or_stop
from skyline.services.flux import jsonbody, lineproto
from skyline.services.flux.points import Points, submit
from skyline.settings.model import FluxSettings

log = logging.getLogger(__name__)

PROTOCOL = "kafka"
_POLL_SECONDS = 0.5
_LAG_EVERY = 5.0  # seconds between two lag measurements
_CLOSE_WAIT = 15.0  # seconds a stopping consumer waits for its last points to be stored
TopicPartition = tuple[str, int]


@dataclass
class Parsed:
    """One poll's messages, parsed: per topic format the points, and what they came from."""

    batches: list[Batch] = field(default_factory=list)
    points: list[Points] = field(default_factory=list)
    refused: Counter[str] = field(default_factory=Counter)
    #: per partition: the offset of its first message in this poll and the one after its last
    first: dict[TopicPartition, int] = field(default_factory=dict)
    after: dict[TopicPartition, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    messages: int = 0


def parse_messages(messages: list[tuple[str, int, int, bytes | None]],
                   formats: Mapping[str, str], precision: str, max_bytes: int,
                   max_metrics: int, now: float) -> Parsed:
    """(topic, partition, offset, value) messages into points (pure: the unit tests drive
    it). Plaintext and Influx messages of a topic are parsed together (one message, one or
    more whole lines); each JSON message is one body."""
    out = Parsed()
    lines: dict[str, list[bytes]] = {"plaintext": [], "influx": []}
    for topic, partition, offset, value in messages:
        tp = (topic, partition)
        out.first.setdefault(tp, offset)
        out.after[tp] = offset + 1
        out.messages += 1
        fmt = formats.get(topic)
        if value is None or not value.strip():
            out.refused["empty_message"] += 1
        elif len(value) > max_bytes:
            out.refused["message_too_large"] += 1
        elif fmt == "json":
            try:
                _key, items = jsonbody.items_of(jsonbody.load(value), max_metrics)
            except jsonbody.BadBody as e:
                out.refused[e.reason] += 1
            except jsonbody.TooMany:
                out.refused["too_many_metrics"] += 1
            else:
                out.points.append(jsonbody.parse_items(items, now))
        elif fmt in lines:
            lines[fmt].append(value)
        else:  # a topic matched by a pattern the settings did not name (cannot happen)
            out.refused["unknown_topic"] += 1
    if lines["plaintext"]:
        batch = Batch()
        plaintext.parse_lines(b"\n".join(lines["plaintext"]), batch)
        out.batches.append(batch)
    if lines["influx"]:
        out.points.append(lineproto.parse(b"\n".join(lines["influx"]), precision, now))
    return out


class KafkaIngest:
    """One consumer of flux.kafka_topics in the flux.kafka_group group."""

    def __init__(self, ctx: Context, consumer: Any | None = None):
        self.ctx = ctx
        self.flux: FluxSettings = ctx.settings.flux
        self.telemetry = ctx.telemetry("flux")
        self._consumer = consumer
        #: (the write buffer's accepted count after a batch, that batch's next offsets)
        self._pending: deque[tuple[int, dict[TopicPartition, int]]] = deque()
        self._ready: dict[TopicPartition, int] = {}  # stored, to commit
        self._assigned: set[TopicPartition] = set()
        self._logged: set[str] = set()
        self._lag_at = 0.0

    # the client (worker thread) ----------------------------------------------------------
    def config(self) -> dict[str, Any]:
        f = self.flux
        conf: dict[str, Any] = {
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 6000,
            "max.partition.fetch.bytes": min(f.max_body_bytes, 1_048_576),
        }
        conf.update(f.kafka_options)
        conf.update({
            "bootstrap.servers": f.kafka_brokers,
            "group.id": f.kafka_group,
            # offsets are committed by hand, only for stored points
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "error_cb": self._client_error,
        })
        if f.kafka_password is not None:
            conf["sasl.password"] = f.kafka_password.get_secret_value()
        return conf

    def _open(self) -> None:
        from confluent_kafka import Consumer  # the optional extra

        self._consumer = Consumer(self.config())
        self._consumer.subscribe(list(self.flux.kafka_topics), on_assign=self._on_assign,
                                 on_revoke=self._on_revoke, on_lost=self._on_revoke)

    def _on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        self._assigned |= {(p.topic, p.partition) for p in partitions}
        log.info("kafka: assigned %s", ", ".join(f"{p.topic}[{p.partition}]"
                                                 for p in partitions) or "nothing")

    def _on_revoke(self, consumer: Any, partitions: list[Any]) -> None:
        # Their uncommitted messages go to the partitions' next owner, which reads them again
        # (points stored twice are kept once); committing for them now could move the
        # group's offset past points this process has not stored yet.
        gone = {(p.topic, p.partition) for p in partitions}
        self._assigned -= gone
        for _mark, offsets in self._pending:
            for tp in gone & offsets.keys():
                del offsets[tp]
        for tp in gone & self._ready.keys():
            del self._ready[tp]

    def _client_error(self, err: Any) -> None:
        self.telemetry.incr("kafka_errors")
        self._log_once(f"kafka: {err}")

    def _log_once(self, message: str) -> None:
        if message not in self._logged and len(self._logged) < 100:
            self._logged.add(message)
            log.error("%s", message)

    def _poll(self) -> Parsed:
        consumer = self._consumer
        assert consumer is not None
        msgs = consumer.consume(self.flux.kafka_max_messages, _POLL_SECONDS)
        raw: list[tuple[str, int, int, bytes | None]] = []
        errors: list[str] = []
        for m in msgs:
            err = m.error()
            if err is not None:
                errors.append(str(err))
                continue
            raw.append((m.topic(), m.partition(), m.offset(), m.value()))
        parsed = parse_messages(raw, self.flux.kafka_topics, self.flux.kafka_influx_precision,
                                self.flux.max_body_bytes,
                                self.ctx.settings.FLUX_MAX_METRICS_PER_POST, time.time())
        parsed.errors = errors
        return parsed

    def _commit(self) -> None:
        """Commit the offsets of the batches whose points are all stored."""
        stored = self.ctx.points.stored
        while self._pending and self._pending[0][0] <= stored:
            _mark, offsets = self._pending.popleft()
            self._ready.update(offsets)
        if not self._ready or self._consumer is None:
            return
        from confluent_kafka import KafkaException, TopicPartition

        ready = dict(self._ready)
        try:
            self._consumer.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in
                                           ready.items()], asynchronous=False)
        except KafkaException as e:  # kept, and tried again after the next batch
            self.telemetry.incr("kafka_commit_errors")
            self._log_once(f"kafka: commit failed: {e}")
            return
        for tp, o in ready.items():
            if self._ready.get(tp) == o:
                del self._ready[tp]
        self.telemetry.incr("kafka_commits")

    def _seek_back(self, first: dict[TopicPartition, int]) -> None:
        from confluent_kafka import TopicPartition

        assert self._consumer is not None
        for (t, p), o in first.items():
            if (t, p) in self._assigned:
                self._consumer.seek(TopicPartition(t, p, o))

    def _measure_lag(self) -> None:
        if self._consumer is None or not self._assigned:
            return
        from confluent_kafka import TopicPartition

        lag = 0
        positions = self._consumer.position([TopicPartition(t, p) for t, p in self._assigned])
        for tp in positions:
            if tp.offset < 0:
                continue  # nothing read yet: the position is not known
            _low, high = self._consumer.get_watermark_offsets(tp, cached=True)
            if high >= 0:
                lag += max(0, high - tp.offset)
        self.telemetry.gauge("kafka_lag", lag)

    def _close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()  # leaves the group: its partitions go to the others now

    # the event loop ------------------------------------------------------------------------
    def _submit(self, parsed: Parsed) -> bool:
        """Hand the points to the write path; False when the buffer was full."""
        ingest = self.ctx.ingest
        for reason, n in parsed.refused.items():
            ingest.reject(PROTOCOL, reason, n)
        full = False
        now = time.time()
        for batch in parsed.batches:
            for reason, n in batch.rejected.items():
                ingest.reject(PROTOCOL, reason, n)
            if batch.names:
                stamps, values = batch.arrays()
                r = ingest.submit(PROTOCOL, batch.names, stamps, values, now=now)
                full |= "buffer_full" in r.rejected
        for points in parsed.points:
            full |= submit(ingest, PROTOCOL, points, "", now).buffer_full
        return not full

    async def run(self) -> None:
        ctx = self.ctx
        if self._consumer is None:
            try:
                await asyncio.to_thread(self._open)
            except ImportError:
                log.error("flux.kafka_brokers is set but confluent-kafka is not installed "
                          "(pip install 'skyline-anomaly[kafka]'); no Kafka ingest")
                return
        log.info("kafka: consuming %s from %s as group %s", ", ".join(self.flux.kafka_topics),
                 self.flux.kafka_brokers, self.flux.kafka_group)
        try:
            while not ctx.stopping.is_set():
                await ctx.ingest.wait_writable()
                parsed = await asyncio.to_thread(self._poll)
                for e in parsed.errors:
                    self._client_error(e)
                if parsed.messages:
                    self.telemetry.incr("kafka_messages", parsed.messages)
                    if self._submit(parsed):
                        self._pending.append((ctx.points.accepted, dict(parsed.after)))
                    else:
                        self.telemetry.incr("kafka_redelivered", parsed.messages)
                        await asyncio.to_thread(self._seek_back, parsed.first)
                        await sleep_or_stop(ctx.stopping, 1.0)
                if self._pending or self._ready:
                    await asyncio.to_thread(self._commit)
                if time.monotonic() >= self._lag_at:
                    self._lag_at = time.monotonic() + _LAG_EVERY
                    await asyncio.to_thread(self._measure_lag)
            await self._finish()
        finally:
            await asyncio.to_thread(self._close)

    async def _finish(self) -> None:
        """Stopping: the runner keeps flushing the buffer meanwhile; commit what it stores."""
        deadline = time.monotonic() + _CLOSE_WAIT
        while self._pending and time.monotonic() < deadline:
            await asyncio.to_thread(self._commit)
            if self._pending:
                await asyncio.sleep(0.1)
        await asyncio.to_thread(self._commit)
        if self._pending:
            log.warning("kafka: stopped before %d batches were stored; they are read again "
                        "at the next start", len(self._pending))
