"""Reads the anomaly stream through the `panorama` consumer group and stores each event once.

Delivery is at-least-once and the insert is idempotent on the event id, so a restart, a
re-delivery or a second panorama never duplicates a row. While the database is down, events
stay pending in the stream and are stored when it is back.
"""

from __future__ import annotations

import asyncio
import logging
import time

import sqlalchemy as sa

from skyline.core.errors import StoreUnavailable
from skyline.core.events import AnomalyEvent
from skyline.events.stream import Consumer
from skyline.runtime.context import Backoff, Context, every, sleep_or_stop
from skyline.store import keys
from skyline.store.redis_client import CONNECTION_ERRORS
from skyline.store.sql import save_anomaly
from skyline.store.sql.queries import delete_older_than

log = logging.getLogger(__name__)

GROUP = "panorama"


async def run(ctx: Context) -> None:
    tel = ctx.telemetry("panorama")
    stop = asyncio.create_task(ctx.stopping.wait())
    ready = asyncio.create_task(ctx.sql_ready.wait())
    await asyncio.wait({stop, ready}, return_when=asyncio.FIRST_COMPLETED)
    stop.cancel()
    ready.cancel()
    if ctx.stopping.is_set():
        return
    engine = ctx.engine
    s = ctx.settings

    def sampled_out(event: AnomalyEvent) -> bool:
        """Upstream's sampling: one anomalous event per metric and source per
        PANORAMA_EXPIRY_TIME. The marker holds the stored event's id, so an event handed
        over again (it failed to store, or its consumer died) is still stored."""
        expiry = s.PANORAMA_EXPIRY_TIME
        if expiry <= 0 or event.status != "anomalous":
            return False
        key = keys.panorama_last(event.source, event.metric)
        if ctx.client.set(key, event.id, nx=True, ex=expiry):
            return False
        held = ctx.client.get(key)
        if held is None:
            return False
        return (held if isinstance(held, str) else held.decode()) != event.id

    def store(event: AnomalyEvent) -> None:
        if sampled_out(event):
            tel.incr("events_sampled")
            return
        try:
            inserted = save_anomaly(engine, event)
        except sa.exc.OperationalError as e:
            raise StoreUnavailable("SQL database", engine.url.render_as_string(True),
                                   str(e).splitlines()[0]) from None
        tel.incr("events_stored" if inserted else "events_duplicate")

    retention = None
    if s.panorama.retention_days > 0:
        retention = asyncio.create_task(_retention(ctx), name="panorama-retention")
    consumer: Consumer | None = None
    backoff = Backoff("Redis", ctx.redis.url, s.redis.retry_max_backoff)
    sql_backoff = Backoff("SQL database", str(engine.url.render_as_string(True)),
                          s.redis.retry_max_backoff)
    try:
        while not ctx.stopping.is_set():
            try:
                if consumer is None:
                    consumer = await asyncio.to_thread(
                        Consumer, ctx.client, GROUP, s.instance, claim_idle=s.panorama.claim_idle)
                stats = await asyncio.to_thread(consumer.poll, store, count=500, block_ms=1000)
            except CONNECTION_ERRORS as e:
                if await sleep_or_stop(ctx.stopping, backoff.failed(e)):
                    return
                continue
            backoff.succeeded()
            tel.incr("events_invalid", stats.invalid)
            if stats.error is not None:
                tel.incr("store_failures")
                if await sleep_or_stop(ctx.stopping, sql_backoff.failed(stats.error)):
                    return
            elif stats.handled:
                sql_backoff.succeeded()
    finally:
        # the retention loop ends on ctx.stopping; wait for its current batch
        if retention is not None:
            await retention


async def _retention(ctx: Context) -> None:
    """Delete anomalies older than panorama.retention_days, in batches, every
    panorama.retention_interval; one batch per transaction so no long lock is held."""
    p = ctx.settings.panorama
    tel = ctx.telemetry("panorama")

    def prune() -> None:
        cutoff = time.time() - p.retention_days * 86400
        while not ctx.stopping.is_set():
            try:
                n = delete_older_than(ctx.engine, cutoff, p.retention_batch)
            except sa.exc.OperationalError as e:
                log.warning("retention pass stopped: SQL database error: %s",
                            str(e).splitlines()[0])
                return
            tel.incr("anomalies_expired", n)
            if n < p.retention_batch:
                return

    await every(ctx, p.retention_interval, prune, name="panorama retention")
