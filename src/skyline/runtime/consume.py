"""The loop every stream consumer service runs (panorama, alerters): wait for SQL, read the
anomaly stream through a consumer group, back off while Redis or the database is down."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from skyline.core.errors import StoreUnavailable
from skyline.core.events import AnomalyEvent
from skyline.events.stream import Consumer
from skyline.runtime.context import Backoff, Context, sleep_or_stop
from skyline.store import keys
from skyline.store.redis_client import CONNECTION_ERRORS
from skyline.telemetry import Telemetry


async def wait_for_sql(ctx: Context) -> bool:
    """True once the database is ready; False when asked to stop first."""
    stop = asyncio.create_task(ctx.stopping.wait())
    ready = asyncio.create_task(ctx.sql_ready.wait())
    await asyncio.wait({stop, ready}, return_when=asyncio.FIRST_COMPLETED)
    stop.cancel()
    ready.cancel()
    return not ctx.stopping.is_set()


def sql_outage_as_unavailable(engine: Any, handler: Callable[[Any], None]
                              ) -> Callable[[Any], None]:
    """A database that went away is StoreUnavailable (one line, naming the URL), not a
    traceback per event."""

    def handle(event: Any) -> None:
        try:
            handler(event)
        except sa.exc.OperationalError as e:
            raise StoreUnavailable("SQL database", engine.url.render_as_string(True),
                                   str(e).splitlines()[0]) from None

    return handle


async def consume_events(
    ctx: Context, group: str, handler: Callable[[Any], None], *, claim_idle: float,
    count: int, tel: Telemetry, failure_counter: str,
    setup: Callable[[], Any] | None = None, stream: str = keys.ANOMALY_STREAM,
    parse: Callable[[bytes], Any] = AnomalyEvent.from_json,
) -> None:
    """Hand every event of the anomaly stream to `handler` until stopping. A handler failure
    leaves the event pending (claimed again after `claim_idle`) and backs off."""
    s = ctx.settings
    consumer: Consumer | None = None
    backoff = Backoff("Redis", ctx.redis.url, s.redis.retry_max_backoff)
    sql_backoff = Backoff("SQL database", str(ctx.engine.url.render_as_string(True)),
                          s.redis.retry_max_backoff)
    while not ctx.stopping.is_set():
        try:
            if consumer is None:
                if setup is not None:
                    await asyncio.to_thread(setup)
                consumer = await asyncio.to_thread(
                    Consumer, ctx.client, group, s.instance, claim_idle=claim_idle,
                    stream=stream, parse=parse)
            stats = await asyncio.to_thread(consumer.poll, handler, count=count, block_ms=1000)
        except CONNECTION_ERRORS as e:
            if await sleep_or_stop(ctx.stopping, backoff.failed(e)):
                return
            continue
        backoff.succeeded()
        tel.incr("events_invalid", stats.invalid)
        tel.incr("events_handled", stats.handled)
        if stats.error is not None:
            tel.incr(failure_counter)
            if await sleep_or_stop(ctx.stopping, sql_backoff.failed(stats.error)):
                return
        elif stats.handled:
            sql_backoff.succeeded()
