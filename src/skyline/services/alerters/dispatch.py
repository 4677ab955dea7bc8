"""From an anomaly event to queued deliveries: route, silence, de-duplicate, rate-limit,
enqueue. Runs in the stream consumer's thread; never sends anything itself, so a slow
channel cannot hold up the reading of events.

Redis keeps the short-lived state (de-duplication per channel and metric for the rule's
expiration, the per-channel rate window, which channels have an open alert to resolve);
SQL keeps the queue. Each step is safe to repeat, because the stream may hand the same
event over twice: the de-duplication marker holds the event id that set it, and the queue
is unique on (event, channel, kind).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import redis
from sqlalchemy.engine import Engine

from skyline.core.events import AnomalyEvent
from skyline.core.patterns import PatternSet
from skyline.services.alerters.routing import Route, Router
from skyline.settings import Settings
from skyline.store import keys
from skyline.store.sql import alerts as q
from skyline.telemetry import Telemetry

log = logging.getLogger(__name__)

# how long a channel remembers an open alert it may have to resolve
OPEN_TTL = 7 * 86400
SILENCE_REFRESH = 5.0


def _text(v: bytes | str) -> str:
    return v if isinstance(v, str) else v.decode()


class Silences:
    """Active silence patterns, re-read from SQL at most every few seconds (a new silence
    takes effect within SILENCE_REFRESH seconds, not one query per event)."""

    def __init__(self, load: Callable[[], list[q.Silence]], refresh: float = SILENCE_REFRESH):
        self._load = load
        self._refresh = refresh
        self._at = -1e18
        self._rows: list[q.Silence] = []
        self._set = PatternSet()

    def invalidate(self) -> None:
        self._at = -1e18

    def match(self, metric: str, now: float) -> q.Silence | None:
        if time.monotonic() - self._at > self._refresh:
            self._rows = self._load()
            self._set = PatternSet(s.pattern for s in self._rows)
            self._at = time.monotonic()
        for i in self._set.all(metric):
            s = self._rows[i]
            if s.expires > now:
                return s
        return None


class Dispatcher:
    def __init__(self, settings: Settings, client: redis.Redis, engine: Engine,
                 channels: dict[str, bool], tel: Telemetry,
                 queued: Callable[[str], None] = lambda channel: None):
        """`channels`: enabled channel name -> whether it resolves on recovery; `queued` is
        told the channel of every delivery queued, so its worker need not wait for a poll."""
        self.s = settings
        self.queued = queued
        self.client = client
        self.engine = engine
        self.resolving = {n for n, r in channels.items() if r}
        self.router = Router(settings.ALERTS, channels)
        self.tel = tel
        self.silences = Silences(lambda: q.list_silences(self.engine))

    def handle(self, event: AnomalyEvent) -> None:
        if not self.s.ENABLE_ALERTS:
            return
        if event.status == "vetoed":
            # a candidate a stage vetoed: stored by panorama, never alerted
            self.tel.incr("events_vetoed")
            return
        routes = self.router.routes(event.metric)
        if not routes:
            return
        now = time.time()
        if event.status in ("recovered", "new_level"):
            for r in routes:
                if r.channel in self.resolving:
                    self._resolve(event, r, now)
            return
        if now - event.timestamp > self.s.alerters.max_age:
            self.tel.incr("events_too_old")
            return
        silence = self.silences.match(event.metric, now)
        if silence is not None:
            log.debug("%s silenced by silence %d (%s)", event.metric, silence.id, silence.pattern)
            self.tel.incr("alerts_silenced", len(routes))
            return
        for r in routes:
            self._alert(event, r, now)

    def _alert(self, event: AnomalyEvent, r: Route, now: float) -> None:
        again = False  # this very event was handled before (the stream re-delivered it)
        if r.expiration > 0:
            key = keys.alert_last(r.channel, event.metric)
            if not self.client.set(key, event.id, nx=True, ex=r.expiration):
                held = self.client.get(key)
                if held is not None and _text(held) != event.id:
                    self.tel.incr("alerts_deduplicated")
                    return
                again = held is not None
        ch = self.s.alerters.channel(r.channel)
        if ch.rate_limit > 0 and not again:
            window = int(now // ch.rate_period)
            rkey = keys.alert_rate(r.channel, window)
            pipe = self.client.pipeline()
            pipe.incr(rkey)
            pipe.expire(rkey, ch.rate_period * 2)
            count = int(pipe.execute()[0])
            if count > ch.rate_limit:
                if count == ch.rate_limit + 1:
                    log.warning("channel %s reached its rate limit (%d per %d s); further "
                                "alerts in this window are dropped and logged", r.channel,
                                ch.rate_limit, ch.rate_period)
                self.tel.incr("alerts_rate_limited")
                q.log_not_sent(self.engine,
                               event_id=event.id, channel=r.channel, kind="alert",
                               metric=event.metric, status="rate_limited",
                               reason=f"over {ch.rate_limit} alerts per {ch.rate_period} s")
                return
        payload = {"event": event.to_dict(), "options": r.options, "expiration": r.expiration,
                   "rule": r.rule}
        if q.enqueue(self.engine, event_id=event.id, channel=r.channel,
                     kind="alert", metric=event.metric, payload=payload):
            self.tel.incr("alerts_queued")
            self.queued(r.channel)
        if r.channel in self.resolving:
            self.client.set(keys.alert_open(r.channel, event.metric), event.id, ex=OPEN_TTL)

    def _resolve(self, event: AnomalyEvent, r: Route, now: float) -> None:
        open_key = keys.alert_open(r.channel, event.metric)
        if not self.client.exists(open_key):
            return
        payload = {"event": event.to_dict(), "options": r.options, "expiration": r.expiration,
                   "rule": r.rule}
        if q.enqueue(self.engine, event_id=event.id, channel=r.channel,
                     kind="resolve", metric=event.metric, payload=payload):
            self.tel.incr("resolves_queued")
            self.queued(r.channel)
        # deleted only once queued: a crash in between re-sends, never loses, the resolve;
        # and the next anomaly of this metric opens a new incident at once
        self.client.delete(open_key, keys.alert_last(r.channel, event.metric))
