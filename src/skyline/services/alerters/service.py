"""The alerters component: reads the anomaly stream through its own consumer group
(`alerters`, so panorama's progress and its own are independent), and Luminosity's incident
stream when a rule alerts per incident; queues deliveries, and runs one delivery worker per
enabled channel."""

from __future__ import annotations

import asyncio
import logging
import time

import redis

from skyline.alerting.channels import enabled_channels, make_channel
from skyline.events.stream import parse_json_object
from skyline.runtime.consume import consume_events, sql_outage_as_unavailable, wait_for_sql
from skyline.runtime.context import Context, every
from skyline.services.alerters.delivery import ChannelWorker
from skyline.services.alerters.dispatch import Dispatcher
from skyline.store import keys
from skyline.store.sql import alerts as q

log = logging.getLogger(__name__)

GROUP = "alerters"


def ensure_group(client: redis.Redis, stream: str = keys.ANOMALY_STREAM) -> None:
    """Create the group at the end of the stream: a first start alerts on new anomalies,
    not on the whole history the stream still holds."""
    try:
        client.xgroup_create(stream, GROUP, id="$", mkstream=True)
    except redis.ResponseError as e:
        if "BUSYGROUP" not in str(e):
            raise


async def run(ctx: Context) -> None:
    tel = ctx.telemetry("alerters")
    if not await wait_for_sql(ctx):
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
    workers = {c.name: ChannelWorker(c, s, engine, tel, ctx.stopping) for c in channels}
    loop = asyncio.get_running_loop()

    def queued(channel: str) -> None:
        # called from the stream consumer's thread
        worker = workers.get(channel)
        if worker is not None:
            loop.call_soon_threadsafe(worker.wake)

    dispatcher = Dispatcher(s, ctx.client, engine, {c.name: c.resolves for c in channels}, tel,
                            queued)
    tasks = [asyncio.create_task(w.run(), name=f"alerters-{name}")
             for name, w in workers.items()]

    def purge() -> None:
        cutoff = time.time() - s.alerters.history_days * 86400
        while q.purge_history(engine, cutoff) > 0 and not ctx.stopping.is_set():
            pass

    tasks.append(asyncio.create_task(every(ctx, 3600.0, purge, name="alert history"),
                                     name="alerters-history"))

    consumers = [consume_events(ctx, GROUP, sql_outage_as_unavailable(engine, dispatcher.handle),
                                claim_idle=s.alerters.claim_idle, count=200, tel=tel,
                                failure_counter="dispatch_failures",
                                setup=lambda: ensure_group(ctx.client))]
    if dispatcher.grouping and any(r.group == "incident" for r in s.ALERTS):
        # rules alerting once per incident read Luminosity's incident stream
        consumers.append(consume_events(
            ctx, GROUP, sql_outage_as_unavailable(engine, dispatcher.handle_incident),
            claim_idle=s.alerters.claim_idle, count=200, tel=tel,
            failure_counter="dispatch_failures", stream=keys.INCIDENT_STREAM,
            parse=parse_json_object,
            setup=lambda: ensure_group(ctx.client, keys.INCIDENT_STREAM)))
    try:
        await asyncio.gather(*consumers)
    finally:
        await asyncio.gather(*tasks, return_exceptions=True)
        for c in channels:
            await c.aclose()
