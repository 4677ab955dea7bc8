"""Reads the anomaly stream through the `panorama` consumer group and stores each event once.

Delivery is at-least-once and the insert is idempotent on the event id, so a restart, a
re-delivery or a second panorama never duplicates a row. While the database is down, events
stay pending in the stream and are stored when it is back.
"""

from __future__ import annotations

import asyncio
import logging

import sqlalchemy as sa

from skyline.core.errors import StoreUnavailable
from skyline.core.events import AnomalyEvent
from skyline.events.stream import Consumer
from skyline.runtime.context import Backoff, Context, sleep_or_stop
from skyline.store.redis_client import CONNECTION_ERRORS
from skyline.store.sql import save_anomaly

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

    def store(event: AnomalyEvent) -> None:
        try:
            inserted = save_anomaly(engine, event)
        except sa.exc.OperationalError as e:
            raise StoreUnavailable("SQL database", engine.url.render_as_string(True),
                                   str(e).splitlines()[0]) from None
        tel.incr("events_stored" if inserted else "events_duplicate")

    consumer: Consumer | None = None
    backoff = Backoff("Redis", ctx.redis.url, s.redis.retry_max_backoff)
    sql_backoff = Backoff("SQL database", str(engine.url.render_as_string(True)),
                          s.redis.retry_max_backoff)
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
