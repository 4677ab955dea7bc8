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

import json
import logging
import math
import time
from collections.abc import Callable
from typing import Any

import redis
from sqlalchemy.engine import Engine

from skyline.core.errors import InvalidInput
from skyline.core.events import AnomalyEvent
from skyline.core.patterns import PatternSet
from skyline.services.alerters.routing import BoundaryRouter, Route, Router
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
        self.boundary = BoundaryRouter(settings.BOUNDARY_METRICS,
                                       settings.BOUNDARY_ALERTER_OPTS, channels)
        self.tel = tel
        self.silences = Silences(lambda: q.list_silences(self.engine))
        # rules with group = "incident" alert per incident only while Luminosity groups;
        # otherwise they alert per metric like any rule
        self.grouping = (settings.LUMINOSITY_ENABLED
                         and settings.luminosity.incident_window > 0)

    def _split(self, routes: list[Route]) -> tuple[list[Route], list[Route]]:
        """(per metric, per incident)."""
        if not self.grouping:
            return routes, []
        return ([r for r in routes if r.group != "incident"],
                [r for r in routes if r.group == "incident"])

    def handle(self, event: AnomalyEvent) -> None:
        if not self.s.ENABLE_ALERTS:
            return
        if event.source == "thunder":
            # Thunder sends its alerts itself, straight to the channels (it must not depend
            # on this queue, in SQL, when SQL is what is down): stored, not queued here
            return
        if event.status == "vetoed":
            # a candidate a stage vetoed: stored by panorama, never alerted
            self.tel.incr("events_vetoed")
            return
        if event.source == "boundary":
            if not self.s.BOUNDARY_ENABLE_ALERTS:
                return
            routes = self.boundary.routes(event)
        else:
            routes, grouped = self._split(self.router.routes(event.metric))
            if grouped and event.status == "anomalous":
                # alerted through the incident stream (handle_incident), once per incident
                self.tel.incr("alerts_grouped", len(grouped))
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
            key = keys.alert_last(r.channel, event.metric, r.scope)
            if not self.client.set(key, event.id, nx=True, ex=r.expiration):
                held = self.client.get(key)
                if held is not None and _text(held) != event.id:
                    self.tel.incr("alerts_deduplicated")
                    return
                again = held is not None
        if r.share is not None and not again and not self._within_share(event, r, now):
            return
        if not again and self._rate_limited(r.channel, event.id, event.metric, now):
            return
        payload = {"event": event.to_dict(), "options": r.options, "expiration": r.expiration,
                   "rule": r.rule}
        if q.enqueue(self.engine, event_id=event.id, channel=r.channel,
                     kind="alert", metric=event.metric, payload=payload):
            self.tel.incr("alerts_queued")
            self.queued(r.channel)
        if r.channel in self.resolving:
            self.client.set(keys.alert_open(r.channel, event.metric, r.scope), event.id,
                            ex=OPEN_TTL)

    def _within_share(self, event: AnomalyEvent, r: Route, now: float) -> bool:
        """A source's own limit on a channel (BOUNDARY_ALERTER_OPTS: at most `limit` Boundary
        alerts per `window` seconds), counted apart from the channel's rate_limit."""
        assert r.share is not None
        limit, period = r.share
        source = event.source
        rkey = keys.alert_rate(r.channel, int(now // period), source)
        pipe = self.client.pipeline()
        pipe.incr(rkey)
        pipe.expire(rkey, period * 2)
        count = int(pipe.execute()[0])
        if count <= limit:
            return True
        if count == limit + 1:
            log.warning("channel %s reached its %s limit (%d per %d s); further %s alerts "
                        "in this window are dropped and logged", r.channel, source, limit,
                        period, source)
        self.tel.incr(f"{source}_alerts_rate_limited")
        q.log_not_sent(self.engine, event_id=event.id, channel=r.channel, kind="alert",
                       metric=event.metric, status="rate_limited",
                       reason=f"over {limit} {source} alerts per {period} s")
        return False

    def _rate_limited(self, channel: str, event_id: str, metric: str, now: float) -> bool:
        """Count one alert in the channel's rate window; True (logged) when over the limit."""
        ch = self.s.alerters.channel(channel)
        if ch.rate_limit <= 0:
            return False
        window = int(now // ch.rate_period)
        rkey = keys.alert_rate(channel, window)
        pipe = self.client.pipeline()
        pipe.incr(rkey)
        pipe.expire(rkey, ch.rate_period * 2)
        count = int(pipe.execute()[0])
        if count <= ch.rate_limit:
            return False
        if count == ch.rate_limit + 1:
            log.warning("channel %s reached its rate limit (%d per %d s); further "
                        "alerts in this window are dropped and logged", channel,
                        ch.rate_limit, ch.rate_period)
        self.tel.incr("alerts_rate_limited")
        q.log_not_sent(self.engine, event_id=event_id, channel=channel, kind="alert",
                       metric=metric, status="rate_limited",
                       reason=f"over {ch.rate_limit} alerts per {ch.rate_period} s")
        return True

    # -- one alert per incident (rules with group = "incident") ------------------------------

    def handle_incident(self, body: dict[str, Any]) -> None:
        """One change of a Luminosity incident (the incident stream): the first member a
        grouped rule matches alerts on its channel, later members update that alert (at most
        one queued update per alerters.incident_update_delay), the close resolves it."""
        if not self.s.ENABLE_ALERTS or not self.grouping:
            return
        incident = str(body.get("incident") or "")
        change = body.get("change")
        raw = body.get("event")
        if not incident or not isinstance(raw, dict):
            return  # not an entry this version alerts on (an older luminosity's)
        try:
            event = AnomalyEvent.from_dict(raw)
        except InvalidInput as e:
            log.warning("incident %s: unreadable event in the incident stream: %s", incident, e)
            self.tel.incr("events_invalid")
            return
        now = time.time()
        if change == "closed":
            for channel in sorted(self.resolving):
                self._resolve_incident(incident, body, event, channel)
            return
        if change not in ("opened", "joined") or event.status != "anomalous":
            return
        if event.source == "boundary":
            return  # Boundary's events alert on their rule's channels (BOUNDARY_METRICS)
        _, routes = self._split(self.router.routes(event.metric))
        if not routes:
            return
        if now - event.timestamp > self.s.alerters.max_age:
            self.tel.incr("events_too_old")
            return
        silence = self.silences.match(event.metric, now)
        if silence is not None:
            self.tel.incr("alerts_silenced", len(routes))
            return
        for r in routes:
            self._incident_alert(incident, body, event, r, now)

    def _incident_alert(self, incident: str, body: dict[str, Any], event: AnomalyEvent,
                        r: Route, now: float) -> None:
        payload = {"event": event.to_dict(), "incident": body, "options": r.options,
                   "expiration": r.expiration, "rule": r.rule}
        key = keys.alert_incident(r.channel, incident)
        mark = json.dumps({"event": event.id, "rule": r.rule})
        if self.client.set(key, mark, nx=True, ex=OPEN_TTL):
            if self._rate_limited(r.channel, incident, event.metric, now):
                self.client.delete(key)  # the next member tries again
                return
        else:
            held = self._held(key)
            if held.get("event") != event.id:
                self._incident_update(incident, payload, event, r, now)
                return
            # the stream handed the opening member over again: queue it again (a no-op)
        if q.enqueue(self.engine, event_id=incident, channel=r.channel, kind="alert",
                     metric=event.metric, payload=payload):
            self.tel.incr("alerts_queued")
            self.queued(r.channel)

    def _incident_update(self, incident: str, payload: dict[str, Any], event: AnomalyEvent,
                         r: Route, now: float) -> None:
        delay = self.s.alerters.incident_update_delay
        if delay > 0:
            ukey = keys.alert_incident_update(r.channel, incident)
            if not self.client.set(ukey, event.id, nx=True, ex=max(1, math.ceil(delay))):
                held = self.client.get(ukey)
                if held is None or _text(held) != event.id:
                    # the queued update goes out with the member list as it is then
                    self.tel.incr("incident_updates_coalesced")
                    return
        if q.enqueue(self.engine, event_id=event.id, channel=r.channel, kind="update",
                     metric=event.metric, payload=payload, due=now + delay):
            self.tel.incr("incident_updates_queued")
            if delay <= 0:
                self.queued(r.channel)

    def _held(self, key: str) -> dict[str, Any]:
        raw = self.client.get(key)
        try:
            held = json.loads(_text(raw)) if raw is not None else {}
        except ValueError:
            return {}
        return held if isinstance(held, dict) else {}

    def _resolve_incident(self, incident: str, body: dict[str, Any], event: AnomalyEvent,
                          channel: str) -> None:
        key = keys.alert_incident(channel, incident)
        held = self._held(key)
        if not held:
            return
        rule = held.get("rule")
        rules = self.s.ALERTS
        r = rules[rule] if isinstance(rule, int) and 0 <= rule < len(rules) else None
        payload = {"event": event.to_dict(), "incident": body,
                   "options": dict(r.options) if r is not None and r.channel == channel else {},
                   "expiration": r.expiration if r is not None else 0, "rule": rule}
        if q.enqueue(self.engine, event_id=incident, channel=channel, kind="resolve",
                     metric=str(body.get("origin") or event.metric), payload=payload):
            self.tel.incr("resolves_queued")
            self.queued(channel)
        self.client.delete(key, keys.alert_incident_update(channel, incident))

    def _resolve(self, event: AnomalyEvent, r: Route, now: float) -> None:
        open_key = keys.alert_open(r.channel, event.metric, r.scope)
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
        self.client.delete(open_key, keys.alert_last(r.channel, event.metric, r.scope))
