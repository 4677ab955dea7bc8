"""The alerters component: reads the anomaly stream through its own consumer group
(`alerters`, so panorama's progress and its own are independent), queues deliveries,
and runs one delivery worker per enabled channel."""

from __future__ import annotations

import asyncio
import logging
import time

import redis
import sqlalchemy as sa

from skyline.core.errors import StoreUnavailable
from skyline.core.events import AnomalyEvent
from skyline.events.stream import Consumer
from skyline.runtime.context import Backoff, Context, every, sleep_or_stop
from skyline.services.alerters.channels import enabled_channels, make_channel
from skyline.services.alerters.delivery import ChannelWorker
from skyline.services.alerters.dispatch import Dispatcher
from skyline.store import keys
from skyline.store.redis_client import CONNECTION_ERRORS
from skyline.store.sql import alerts as q

log = logging.getLogger(__name__)

GROUP = "alerters"


def ensure_group(client: redis.Redis) -> None:
    """Create the group at the end of the stream: a first start alerts on new anomalies,
    not on the whole history the stream still holds."""
    try:
        client.xgroup_create(keys.ANOMALY_STREAM, GROUP, id="$", mkstream=True)
    except redis.ResponseError as e:
        if "BUSYGROUP" not in str(e):
            raise


async def run(ctx: Context) -> None:
    tel = ctx.telemetry("alerters")
    stop = asyncio.create_task(ctx.stopping.wait())
    ready = asyncio.create_task(ctx.sql_ready.wait())
    await asyncio.wait({stop, ready}, return_when=asyncio.FIRST_COMPLETED)
    stop.cancel()
    ready.cancel()
    if ctx.stopping.is_set():
        return
    s = ctx.settings
    names = enabled_channels(s) if s.ENABLE_ALERTS else []
    if not names:
        log.info("no alert channel is enabled; alerters idle (see docs/alerts.md)")
        await ctx.stopping.wait()
        return
    channels = [make_channel(n, s) for n in names]
    log.info("alerting on %s with %d rules", ", ".join(names), len(s.ALERTS))
    engine = ctx.engine
    dispatcher = Dispatcher(s, ctx.client, engine, {c.name: c.resolves for c in channels}, tel)
    tasks = [asyncio.create_task(ChannelWorker(c, s, engine, tel, ctx.stopping).run(),
                                 name=f"alerters-{c.name}") for c in channels]

    def purge() -> None:
        cutoff = time.time() - s.alerters.history_days * 86400
        while q.purge_history(engine, cutoff) > 0 and not ctx.stopping.is_set():
            pass

    tasks.append(asyncio.create_task(every(ctx, 3600.0, purge, name="alert history"),
                                     name="alerters-history"))

    def handle(event: AnomalyEvent) -> None:
        try:
            dispatcher.handle(event)
        except sa.exc.OperationalError as e:
            raise StoreUnavailable("SQL database", engine.url.render_as_string(True),
                                   str(e).splitlines()[0]) from None

    consumer: Consumer | None = None
    backoff = Backoff("Redis", ctx.redis.url, s.redis.retry_max_backoff)
    sql_backoff = Backoff("SQL database", str(engine.url.render_as_string(True)),
                          s.redis.retry_max_backoff)
    try:
        while not ctx.stopping.is_set():
            try:
                if consumer is None:
                    await asyncio.to_thread(ensure_group, ctx.client)
                    consumer = await asyncio.to_thread(
                        Consumer, ctx.client, GROUP, s.instance, claim_idle=s.alerters.claim_idle)
                stats = await asyncio.to_thread(consumer.poll, handle, count=200, block_ms=1000)
            except CONNECTION_ERRORS as e:
                if await sleep_or_stop(ctx.stopping, backoff.failed(e)):
                    return
                continue
            backoff.succeeded()
            tel.incr("events_invalid", stats.invalid)
            tel.incr("events_handled", stats.handled)
            if stats.error is not None:
                tel.incr("dispatch_failures")
                if await sleep_or_stop(ctx.stopping, sql_backoff.failed(stats.error)):
                    return
            elif stats.handled:
                sql_backoff.succeeded()
    finally:
        await asyncio.gather(*tasks, return_exceptions=True)
        for c in channels:
            await c.aclose()
