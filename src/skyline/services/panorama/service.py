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

from skyline.core.events import AnomalyEvent
from skyline.runtime.consume import consume_events, sql_outage_as_unavailable, wait_for_sql
from skyline.runtime.context import Context, every
from skyline.store import keys
from skyline.store.sql import save_anomaly
from skyline.store.sql.ionosphere import record_event_matches
from skyline.store.sql.queries import delete_older_than

log = logging.getLogger(__name__)

GROUP = "panorama"


async def run(ctx: Context) -> None:
    tel = ctx.telemetry("panorama")
    if not await wait_for_sql(ctx):
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
        if event.stages and record_event_matches(engine, event):
            tel.incr("ionosphere_matches")
        if sampled_out(event):
            tel.incr("events_sampled")
            return
        inserted = save_anomaly(engine, event)
        tel.incr("events_stored" if inserted else "events_duplicate")

    retention = None
    if s.panorama.retention_days > 0:
        retention = asyncio.create_task(_retention(ctx), name="panorama-retention")
    try:
        await consume_events(ctx, GROUP, sql_outage_as_unavailable(engine, store),
                             claim_idle=s.panorama.claim_idle, count=500, tel=tel,
                             failure_counter="store_failures")
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
