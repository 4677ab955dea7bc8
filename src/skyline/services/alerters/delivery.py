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
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from skyline.alerting.base import Channel, attempt
from skyline.alerting.content import Alert, incident_link, link_for
from skyline.core.errors import NotFound
from skyline.core.events import AnomalyEvent
from skyline.plots import anomaly_png
from skyline.runtime.context import Backoff, sleep_or_stop
from skyline.settings import Settings
from skyline.store.sql import alerts as q
from skyline.store.sql.luminosity import get_incident
from skyline.telemetry import Telemetry

log = logging.getLogger(__name__)

BATCH = 20


def retry_delay(attempts: int, initial: float, maximum: float) -> float:
    """Seconds before retry number `attempts` (1 = the first retry)."""
    return float(min(maximum, initial * 2 ** max(0, attempts - 1)))


def current_incident(engine: Engine, body: dict[str, Any]) -> dict[str, Any]:
    """An incident stream entry with the members and state the incident has now (an
    update queued a while ago tells the members that joined since; members in the order
    they began). The entry as it was when the incident is not (yet) in SQL."""
    try:
        inc = get_incident(engine, str(body.get("incident")))
    except NotFound:
        return body
    members = sorted(inc.members.values(), key=lambda m: (m.since, m.metric))
    return {**body, "origin": inc.origin, "started": inc.started, "ended": inc.ended,
            "members": [m.metric for m in members], "open_members": inc.open_members}


async def build_alert(d: q.Delivery, settings: Settings, want_graph: bool,
                      engine: Engine | None = None) -> Alert:
    event = AnomalyEvent.from_dict(d.payload["event"])
    incident = d.payload.get("incident")
    if isinstance(incident, dict) and engine is not None:
        incident = await asyncio.to_thread(current_incident, engine, incident)
    graph = None
    if want_graph and settings.alerters.graph and event.window:
        # drawing takes tens of milliseconds to seconds: never on the event loop
        graph = await asyncio.to_thread(anomaly_png, event)
    link = (incident_link(settings.public_url, str(incident.get("incident")))
            if isinstance(incident, dict) else link_for(settings.public_url, event.id))
    return Alert(event=event, kind=d.kind, link=link,
                 options=dict(d.payload.get("options") or {}),
                 expiration=int(d.payload.get("expiration", 3600)), graph=graph,
                 incident=incident if isinstance(incident, dict) else None)


class ChannelWorker:
    def __init__(self, channel: Channel, settings: Settings, engine: Engine, tel: Telemetry,
                 stopping: asyncio.Event):
        self.channel = channel
        self.s = settings
        self.engine = engine
        self.tel = tel
        self.stopping = stopping
        self.lease = settings.alerters.timeout + 30.0
        self.woken = asyncio.Event()

    def wake(self) -> None:
        """Something was queued for this channel: look at the queue now (event-loop thread)."""
        self.woken.set()

    async def _idle(self, seconds: float) -> bool:
        """Wait for a wake-up or `seconds`; True when asked to stop meanwhile. The poll stays
        for retries that come due and rows queued by another process."""
        stop = asyncio.ensure_future(self.stopping.wait())
        woke = asyncio.ensure_future(self.woken.wait())
        try:
            await asyncio.wait({stop, woke}, timeout=seconds,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            woke.cancel()
        self.woken.clear()
        return self.stopping.is_set()

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
            await self.deliver_batch(due)
            if len(due) < BATCH and await self._idle(a.poll_interval):
                return

    async def deliver_batch(self, due: list[q.Delivery]) -> list[str]:
        """Send `due` and record the outcomes; returns each one's new status, in order.

        Different metrics go side by side (a burst of anomalies is not sent one round trip
        after another), each metric's deliveries in queue order (an alert before its
        resolve); the outcomes are recorded together in one transaction."""
        by_metric: dict[str, list[int]] = {}
        for i, d in enumerate(due):
            by_metric.setdefault(d.metric, []).append(i)
        gate = asyncio.Semaphore(self.s.alerters.concurrency)
        statuses: list[str] = ["pending"] * len(due)  # not reached: the lease runs out
        sent: dict[int, q.Attempt] = {}

        async def in_order(indexes: list[int]) -> None:
            async with gate:
                for i in indexes:
                    if self.stopping.is_set():
                        return  # the lease runs out and the row is picked up after restart
                    outcome = await self._send(due[i])
                    if isinstance(outcome, str):
                        statuses[i] = outcome
                    else:
                        sent[i] = outcome

        await asyncio.gather(*(in_order(ix) for ix in by_metric.values()))
        if sent:
            order = sorted(sent)
            recorded = await asyncio.to_thread(q.record_attempts, self.engine,
                                               [sent[i] for i in order])
            for i, status in zip(order, recorded, strict=True):
                statuses[i] = status
                self._report(sent[i], status)
        return statuses

    async def _send(self, d: q.Delivery) -> q.Attempt | str:
        """One attempt, not yet recorded; or the status of a delivery settled without one."""
        a = self.s.alerters
        name = self.channel.name
        if time.time() - d.created > a.max_age:
            await asyncio.to_thread(q.expire, self.engine, d)
            log.warning("%s: gave up the %s for %s (event %s): older than alerters.max_age",
                        name, d.kind, d.metric, d.event_id)
            self.tel.incr(f"{name}_expired")
            return "expired"
        try:
            alert = await build_alert(d, self.s, self.channel.wants_graph, self.engine)
        except Exception as e:  # noqa: BLE001 - a malformed row must not stop the channel
            log.error("%s: cannot build the alert of delivery %d: %s", name, d.id, e)
            await asyncio.to_thread(q.record_attempt, self.engine, d, ok=False,
                                    error=f"cannot build the alert: {e}", retry_at=None)
            return "expired"
        if alert.update and alert.incident is not None and alert.incident.get("ended"):
            # the incident closed before its update came due: the resolve says it all
            await asyncio.to_thread(q.expire, self.engine, d, None,
                                    "not sent: the incident closed before the update was due")
            return "expired"
        started = time.monotonic()
        ok, error, retry = await attempt(self.channel, alert, a.timeout)
        took = time.monotonic() - started
        retry_at = None
        if not ok and retry:
            at = time.time() + retry_delay(d.attempts + 1, a.retry_initial, a.retry_max)
            if at - d.created <= a.max_age:
                retry_at = at
        return q.Attempt(d, ok, error, took, retry_at)

    def _report(self, outcome: q.Attempt, status: str) -> None:
        d = outcome.delivery
        name = self.channel.name
        if outcome.ok:
            log.info("%s: sent %s for %s (event %s) in %.2f s", name, d.kind, d.metric,
                     d.event_id, outcome.duration)
            self.tel.incr(f"{name}_sent")
            return
        self.tel.incr(f"{name}_failed")
        then = (f"retrying in {outcome.retry_at - time.time():.0f} s"
                if outcome.retry_at is not None else "giving up")
        log.warning("%s: %s for %s failed (attempt %d): %s; %s", name, d.kind, d.metric,
                    d.attempts + 1, outcome.error, then)
        if status == "expired":
            self.tel.incr(f"{name}_expired")
