"""The trimming loop: one bounded pass every roomba.interval seconds."""

from __future__ import annotations

import logging
import time

from skyline.runtime.context import Context, every
from skyline.store.roomba import HistoryPolicy, Roomba

log = logging.getLogger(__name__)


async def run(ctx: Context) -> None:
    s = ctx.settings
    history = HistoryPolicy(resolution=s.MIRAGE_ANALYSIS_RESOLUTION,
                            span=s.mirage.history_days * 86400,
                            batch=s.mirage.history_batch) if s.mirage.history_days > 0 else None
    roomba = Roomba(ctx.client, retention=s.retention, batch_size=s.roomba.batch_size,
                    history=history, cluster=ctx.redis.cluster)
    tel = ctx.telemetry("roomba")

    def one_pass() -> None:
        started = time.monotonic()
        stats = roomba.run_pass(time.time(), s.roomba.max_keys_per_pass)
        tel.incr("passes")
        tel.incr("series_examined", stats.examined)
        tel.incr("series_rewritten", stats.rewritten)
        tel.incr("series_deleted", stats.deleted)
        tel.incr("points_removed", stats.points_removed)
        tel.incr("corrupt_series_repaired", stats.corrupt_repaired)
        tel.incr("wrong_type_keys_removed", stats.wrong_type_removed)
        tel.incr("conflicts", stats.conflicts)
        tel.incr("history_written", stats.history_written)
        tel.incr("history_buckets_moved", stats.buckets_moved)
        tel.incr("history_corrupt_replaced", stats.history_corrupt)
        tel.gauge("pass_seconds", time.monotonic() - started)
        if stats.corrupt_repaired or stats.wrong_type_removed:
            log.warning("roomba repaired %d corrupt series and removed %d keys of the wrong type",
                        stats.corrupt_repaired, stats.wrong_type_removed)
        log.debug("roomba pass: %s", stats)

    await every(ctx, s.roomba.interval, one_pass, name="roomba")
