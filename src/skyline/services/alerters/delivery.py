"""Delivering queued alerts: one worker per channel, so a slow or failing channel delays
only its own alerts, never analysis, the stream consumer or another channel.

Each attempt is bounded by alerters.timeout and recorded in the alert log; a failure is
retried after alerters.retry_initial seconds, doubling up to alerters.retry_max, until the
alert is older than alerters.max_age, when it is given up (and logged as expired). The
queue is a SQL table, so pending alerts survive a restart.
"""

from __future__ import annotations

import asyncio
import logging
import time

import httpx
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from skyline.core.events import AnomalyEvent
from skyline.plots import anomaly_png
from skyline.runtime.context import Backoff, sleep_or_stop
from skyline.services.alerters.base import Channel, DeliveryError
from skyline.services.alerters.content import Alert, link_for
from skyline.settings import Settings
from skyline.store.sql import alerts as q
from skyline.telemetry import Telemetry

log = logging.getLogger(__name__)

BATCH = 20


def retry_delay(attempts: int, initial: float, maximum: float) -> float:
    """Seconds before retry number `attempts` (1 = the first retry)."""
    return float(min(maximum, initial * 2 ** max(0, attempts - 1)))


async def build_alert(d: q.Delivery, settings: Settings, want_graph: bool) -> Alert:
    event = AnomalyEvent.from_dict(d.payload["event"])
    graph = None
    if want_graph and settings.alerters.graph:
        # drawing takes tens of milliseconds to seconds: never on the event loop
        graph = await asyncio.to_thread(anomaly_png, event)
    return Alert(event=event, kind=d.kind, link=link_for(settings.public_url, event.id),
                 options=dict(d.payload.get("options") or {}),
                 expiration=int(d.payload.get("expiration", 3600)), graph=graph)


async def attempt(channel: Channel, alert: Alert, timeout: float) -> tuple[bool, str, bool]:
    """One send: (delivered, error, worth retrying)."""
    try:
        await asyncio.wait_for(channel.send(alert), timeout)
    except DeliveryError as e:
        return False, str(e), e.retry
    except TimeoutError:
        return False, f"no answer within {timeout:g} s (alerters.timeout)", True
    except httpx.HTTPError as e:
        return False, f"{type(e).__name__}: {e}" if str(e) else type(e).__name__, True
    except OSError as e:
        return False, e.strerror or str(e) or type(e).__name__, True
    return True, "", False


class ChannelWorker:
    def __init__(self, channel: Channel, settings: Settings, engine: Engine, tel: Telemetry,
                 stopping: asyncio.Event):
        self.channel = channel
        self.s = settings
        self.engine = engine
        self.tel = tel
        self.stopping = stopping
        self.lease = settings.alerters.timeout + 30.0

    async def run(self) -> None:
        a = self.s.alerters
        backoff = Backoff("SQL database", "(alert queue)", self.s.redis.retry_max_backoff)
        while not self.stopping.is_set():
            try:
                due = await asyncio.to_thread(q.claim_due, self.engine, self.channel.name,
                                              lease=self.lease, limit=BATCH)
            except sa.exc.OperationalError as e:
                if await sleep_or_stop(self.stopping, backoff.failed(e)):
                    return
                continue
            backoff.succeeded()
            for d in due:
                if self.stopping.is_set():
                    break  # the lease runs out and the row is picked up after restart
                await self.deliver(d)
            if len(due) < BATCH and await sleep_or_stop(self.stopping, a.poll_interval):
                return

    async def deliver(self, d: q.Delivery) -> str:
        a = self.s.alerters
        name = self.channel.name
        now = time.time()
        if now - d.created > a.max_age:
            await asyncio.to_thread(q.expire, self.engine, d)
            log.warning("%s: gave up the %s for %s (event %s): older than alerters.max_age",
                        name, d.kind, d.metric, d.event_id)
            self.tel.incr(f"{name}_expired")
            return "expired"
        try:
            alert = await build_alert(d, self.s, self.channel.wants_graph)
        except Exception as e:  # noqa: BLE001 - a malformed row must not stop the channel
            log.error("%s: cannot build the alert of delivery %d: %s", name, d.id, e)
            await asyncio.to_thread(q.record_attempt, self.engine, d, ok=False,
                                    error=f"cannot build the alert: {e}", retry_at=None)
            return "expired"
        started = time.monotonic()
        ok, error, retry = await attempt(self.channel, alert, a.timeout)
        took = time.monotonic() - started
        retry_at = None
        if not ok and retry:
            at = time.time() + retry_delay(d.attempts + 1, a.retry_initial, a.retry_max)
            if at - d.created <= a.max_age:
                retry_at = at
        status = await asyncio.to_thread(q.record_attempt, self.engine, d, ok=ok, error=error,
                                         duration=took, retry_at=retry_at)
        if ok:
            log.info("%s: sent %s for %s (event %s) in %.2f s", name, d.kind, d.metric,
                     d.event_id, took)
            self.tel.incr(f"{name}_sent")
        else:
            self.tel.incr(f"{name}_failed")
            then = (f"retrying in {retry_at - time.time():.0f} s" if retry_at is not None
                    else "giving up")
            log.warning("%s: %s for %s failed (attempt %d): %s; %s", name, d.kind, d.metric,
                        d.attempts + 1, error, then)
            if status == "expired":
                self.tel.incr(f"{name}_expired")
        return status
