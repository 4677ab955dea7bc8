"""The thunder component: Skyline watching itself (docs/thunder.md).

Every THUNDER_OPTS.check_interval seconds it runs its checks: Redis and the SQL database
answering, each component's heartbeat, analyzer runs overrunning, the volume of points
received, stale metrics per namespace, and alerts failing delivery. Each check emits one event
when it trips and one when it recovers.

Thunder cannot rely on what it reports on, so its path does not go through Redis or SQL:
- its state (which checks are tripped, heartbeats seen, volume samples) is in memory;
- its alerts are sent by Thunder itself, straight to the channels (skyline.alerting), with its
  own retries, not through the alerters' queue (in SQL) or the anomaly stream (in Redis);
- its events are also published on the anomaly stream, for panorama and the overview, when
  Redis answers (kept in memory until then); the alerters skip them (already sent).
It uses its own Redis client with short timeouts, so a hung Redis delays a round by seconds.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass

import numpy as np
import redis
from sqlalchemy.engine import Engine

from skyline.alerting.base import Channel, attempt
from skyline.alerting.channels import enabled_channels, make_channel
from skyline.alerting.content import Alert, link_for
from skyline.analysis.emit import index_incidents, publish_all
from skyline.core.events import AnomalyEvent
from skyline.core.patterns import PatternSet
from skyline.runtime.context import Context, sleep_or_stop
from skyline.services.thunder.checks import (
    Heartbeats,
    Observation,
    Transition,
    Tripwires,
    Volume,
)
from skyline.settings import Settings
from skyline.settings.show import mask_url
from skyline.settings.thunder import COMPONENTS, ThunderCheck
from skyline.store import keys
from skyline.store.hotstore import HotStore
from skyline.store.redis_client import CONNECTION_ERRORS, get_many, make_client
from skyline.store.sql import alerts as q
from skyline.store.sql import db
from skyline.telemetry import Telemetry

log = logging.getLogger(__name__)

COMPONENT = "thunder"
TIMEOUT = 2.0  # seconds Thunder waits for Redis or SQL before calling it unreachable
MAX_UNPUBLISHED = 10_000
_ERRORS = (*CONNECTION_ERRORS, redis.RedisError, OSError)


def _text(v: bytes | str) -> str:
    return v.decode() if isinstance(v, bytes) else v


def _reason(e: BaseException) -> str:
    text = str(e).splitlines()[0] if str(e) else ""
    return text or type(e).__name__


@dataclass
class Pending:
    event: AnomalyEvent
    channel: str
    kind: str  # alert | resolve
    expiry: int
    next_attempt: float
    attempts: int = 0


class Thunder:
    def __init__(self, settings: Settings, redis_url: str, tel: Telemetry,
                 engine: Engine | None = None) -> None:
        self.s = settings
        self.redis_url = redis_url
        self.client = make_client(redis_url, timeout=TIMEOUT)
        self.store = HotStore(self.client)
        self.tel = tel
        self._engine = engine
        self.trip = Tripwires()
        self.beats = Heartbeats()
        self.volume: Volume | None = None
        self.redis_up = True
        self.sql_up = True
        self.unpublished: list[AnomalyEvent] = []
        self.outbox: list[Pending] = []
        names = enabled_channels(settings) if settings.ENABLE_ALERTS else []
        self.channels: dict[str, Channel] = {n: make_channel(n, settings) for n in names}

    def conf(self, app: str, check: str) -> ThunderCheck:
        return self.s.THUNDER_CHECKS.get(app, {}).get(check) or ThunderCheck()

    # -- one round ------------------------------------------------------------------------
    def observe(self, now: float) -> list[Transition]:
        """Run every check once; the transitions (trips and recoveries) it gives."""
        out: list[Transition] = []

        def note(obs: Observation) -> None:
            c = self.conf(obs.app, obs.check)
            tr = self.trip.observe(obs, now, c.expiry)
            if tr is not None:
                out.append(tr)

        redis_was_up = self.redis_up
        obs = self._redis(now)  # always probed: every check below reads Redis
        if self.conf("redis", "up").run:
            note(obs)
        if self.redis_up and not redis_was_up:
            self.beats.forgive(now)  # no component could write a heartbeat meanwhile
        obs = self._database()
        if self.conf("database", "up").run:
            note(obs)
        if self.redis_up:
            for check in (self._heartbeats, self._run_time, self._metrics_received):
                try:
                    for obs in check(now):
                        note(obs)
                except _ERRORS as e:
                    log.debug("thunder: %s skipped: %s", check.__name__, _reason(e))
            try:
                seen = set()
                for obs in self._stale(now):
                    seen.add(obs.key)
                    note(obs)
                out += self.trip.close_missing("analyzer", "stale_metrics", seen, now)
            except _ERRORS as e:
                log.debug("thunder: stale check skipped: %s", _reason(e))
        if self.sql_up and self.conf("alerters", "delivery").run:
            try:
                seen = set()
                for obs in self._delivery():
                    seen.add(obs.key)
                    note(obs)
                out += self.trip.close_missing("alerters", "delivery", seen, now)
            except Exception as e:  # noqa: BLE001 - a database error is the database check's
                log.debug("thunder: delivery check skipped: %s", _reason(e))
        for tr in out:
            self._record(tr, now)
        return out

    def _record(self, tr: Transition, now: float) -> None:
        e, obs = tr.event, tr.obs
        if e.status == "anomalous":
            self.tel.incr("checks_tripped")
            log.warning("thunder: %s.%s tripped: %s", obs.app, obs.check, obs.text)
        else:
            self.tel.incr("checks_recovered")
            log.warning("thunder: %s.%s recovered: %s", obs.app, obs.check, obs.text)
        self.unpublished.append(e)
        del self.unpublished[:-MAX_UNPUBLISHED]
        if not tr.alert:
            if e.status == "anomalous":
                self.tel.incr("alerts_suppressed_by_expiry")
            return
        c = self.conf(obs.app, obs.check)
        for name in (c.channels if c.channels is not None else self.s.THUNDER_OPTS.channels):
            if name in self.channels:
                self.outbox.append(Pending(e, name, "alert" if e.status == "anomalous"
                                           else "resolve", c.expiry, now))

    # -- the checks -----------------------------------------------------------------------
    def _redis(self, now: float) -> Observation:
        where = mask_url(self.redis_url)
        try:
            self.client.ping()
        except _ERRORS as e:
            self.redis_up = False
            return Observation("redis", "up", True, 0.0, None,
                               f"Redis at {where} is unreachable: {_reason(e)}")
        self.redis_up = True
        return Observation("redis", "up", False, 1.0, None, f"Redis at {where} answers again")

    def _engine_now(self) -> Engine:
        if self._engine is None:
            self._engine = db.make_engine(self.s.database_url, pool_size=1)
        return self._engine

    def _database(self) -> Observation:
        where = mask_url(self.s.database_url)
        try:
            db.check(self._engine_now())
        except Exception as e:  # noqa: BLE001 - any failure to answer is the finding
            self.sql_up = False
            return Observation("database", "up", True, 0.0, None,
                               f"the SQL database at {where} is unreachable: {_reason(e)}")
        self.sql_up = True
        return Observation("database", "up", False, 1.0, None,
                           f"the SQL database at {where} answers again")

    def _heartbeats(self, now: float) -> list[Observation]:
        # the instances that ever flushed telemetry (one set read, not a SCAN of every key)
        pairs = [_text(m).partition(":") for m in self.client.smembers(keys.TELEMETRY_INDEX)]
        watched = [(c, inst) for c, _, inst in pairs if c in COMPONENTS]
        names = [keys.heartbeat(f"{c}.{inst}") for c, inst in watched]
        for (component, _), raw in zip(watched, get_many(self.client, names),
                                       strict=True):
            if raw is None:
                continue
            try:
                self.beats.seen(component, float(json.loads(raw)["time"]))
            except (ValueError, KeyError, TypeError):
                continue
        out = []
        limit = self.s.THUNDER_OPTS.down_after
        for component, t in sorted(self.beats.last.items()):
            if not self.conf(component, "up").run:
                continue
            age = now - t
            if age > limit:
                text = (f"{component} is down: no heartbeat for {age:.0f} s "
                        f"(THUNDER_OPTS.down_after {limit:g} s)")
            else:
                text = f"{component} is up: its heartbeat is {max(age, 0):.0f} s old"
            out.append(Observation(component, "up", age > limit, round(age, 1), limit, text))
        return out

    def _instances(self, component: str) -> list[str]:
        out = []
        for m in self.client.smembers(keys.TELEMETRY_INDEX):
            c, _, inst = _text(m).partition(":")
            if c == component:
                out.append(inst)
        return sorted(out)

    def _run_time(self, now: float) -> list[Observation]:
        c = self.conf("analyzer", "run_time")
        if not c.run:
            return []
        streaks = [float(v) for inst in self._instances("analyzer")
                   if (v := self.client.hget(keys.telemetry_gauges("analyzer", inst),
                                             "overrun_streak")) is not None]
        if not streaks:
            return []
        streak = max(streaks)
        n = c.after_overruns
        tripped = "skyline.thunder.analyzer.run_time" in self.trip.open
        bad = streak > 0 if tripped else streak >= n
        period = self.s.ANALYZER_OPTIMUM_RUN_DURATION
        text = (f"the analyzer overran its {period:g} s run {streak:.0f} times in a row "
                f"(after_overruns {n})" if bad else
                f"analyzer runs finish within {period:g} s again")
        return [Observation("analyzer", "run_time", bad, streak, float(n), text)]

    def _metrics_received(self, now: float) -> list[Observation]:
        c = self.conf("horizon", "metrics_received")
        if not c.run:
            return []
        total, found = 0.0, False
        for inst in self._instances("ingest"):
            for k, v in self.client.hgetall(keys.telemetry("ingest", inst)).items():
                if _text(k).startswith("accepted"):
                    total += float(v)
                    found = True
        if not found:
            return []
        if self.volume is None:
            self.volume = Volume(c.significant_change_window, c.significant_change_over)
        self.volume.add(now, total)
        rates = self.volume.rates(now)
        if rates is None:
            return []
        rate, before = rates
        floor = before * (1 - c.significant_change_percentage / 100)
        bad = before > 0 and rate < floor
        drop = 100 * (1 - rate / before) if before > 0 else 0.0
        text = (f"points received fell to {rate:.3g}/s from {before:.3g}/s "
                f"{c.significant_change_over} s earlier (-{drop:.0f} %, more than "
                f"{c.significant_change_percentage:g} %)" if bad else
                f"points received at {rate:.3g}/s ({before:.3g}/s "
                f"{c.significant_change_over} s earlier)")
        return [Observation("horizon", "metrics_received", bad, round(rate, 3), floor, text)]

    def _stale(self, now: float) -> list[Observation]:
        s = self.s
        if not s.ALERT_ON_STALE_METRICS or not self.conf("analyzer", "stale_metrics").run:
            return []
        names = self.store.names()
        exclude = PatternSet(s.DO_NOT_ALERT_ON_STALE_METRICS)
        spaces = [(p, [n for n in PatternSet([p]).filter(names) if not exclude.any(n)])
                  for p in s.ALERT_ON_STALE_METRICS]
        watched = sorted({n for _, ns in spaces for n in ns})
        if not watched:
            return []
        last_t, _ = self.store.last_points(watched)
        period = np.full(len(watched), float(s.ALERT_ON_STALE_PERIOD))
        # the first CUSTOM_STALE_PERIOD pattern that matches wins: apply them last to first
        for pattern, seconds in reversed(list(s.CUSTOM_STALE_PERIOD.items())):
            hit = set(PatternSet([pattern]).filter(watched))
            if hit:
                idx = np.array([i for i, n in enumerate(watched) if n in hit])
                period[idx] = seconds - seconds / 4
        age = now - last_t
        stale = np.isfinite(age) & (age > period)
        pos = {n: i for i, n in enumerate(watched)}
        out = []
        for pattern, ns in spaces:
            if not ns:
                continue
            idx = np.array([pos[n] for n in ns])
            k = int(stale[idx].sum())
            if k:
                oldest = int(idx[stale[idx]][np.argmax(age[idx][stale[idx]])])
                text = (f"{k} of {len(ns)} metrics of {pattern} sent nothing for longer than "
                        f"their stale period (longest: {watched[oldest]}, "
                        f"{age[oldest]:.0f} s)")
            else:
                text = f"every metric of {pattern} is sending again"
            out.append(Observation("analyzer", "stale_metrics", k > 0, float(k),
                                   float(len(ns)), text, detail=pattern))
        return out

    def _delivery(self) -> list[Observation]:
        c = self.conf("alerters", "delivery")
        out = []
        failing = q.failing(self._engine_now())
        for channel in enabled_channels(self.s):
            failing.setdefault(channel, (0, ""))
        for channel, (n, error) in sorted(failing.items()):
            key = f"skyline.thunder.alerters.delivery.{channel}"
            bad = n > 0 if key in self.trip.open else n >= c.failing_deliveries
            text = (f"{n} alerts on {channel} are waiting for a retry after failing "
                    f"(last error: {error})" if bad else f"{channel} delivers again")
            out.append(Observation("alerters", "delivery", bad, float(n),
                                   float(c.failing_deliveries), text, detail=channel))
        return out

    # -- sending and publishing -----------------------------------------------------------
    async def deliver(self, now: float) -> None:
        """Send every due alert straight to its channel; a failure is retried every
        THUNDER_OPTS.retry_interval until alerters.max_age."""
        due = [p for p in self.outbox if p.next_attempt <= now]
        for p in due:
            ch = self.channels[p.channel]
            alert = Alert(event=p.event, kind=p.kind, expiration=p.expiry,
                          link=link_for(self.s.public_url, p.event.id))
            started = time.perf_counter()
            ok, error, retry = await attempt(ch, alert, self.s.alerters.timeout)
            p.attempts += 1
            await asyncio.to_thread(self._log, p, ok, error, time.perf_counter() - started)
            if ok:
                self.outbox.remove(p)
                self.tel.incr("alerts_sent")
                log.info("thunder: %s sent on %s: %s", p.kind, p.channel, p.event.metric)
                continue
            self.tel.incr("alert_failures")
            if retry and time.time() - p.event.created < self.s.alerters.max_age:
                p.next_attempt = now + self.s.THUNDER_OPTS.retry_interval
                log.warning("thunder: %s on %s failed (attempt %d, retrying): %s", p.kind,
                            p.channel, p.attempts, error)
            else:
                self.outbox.remove(p)
                log.error("thunder: %s on %s given up after %d attempts: %s", p.kind,
                          p.channel, p.attempts, error)

    def _log(self, p: Pending, ok: bool, error: str, duration: float) -> None:
        """The attempt in the alert log (the anomaly page's deliveries), when SQL answers:
        Thunder's sends never wait for SQL."""
        if not self.sql_up:
            return
        try:
            q.log_direct(self._engine_now(), event_id=p.event.id, channel=p.channel,
                         kind=p.kind, metric=p.event.metric, attempt=p.attempts, ok=ok,
                         error=error, duration=duration)
        except Exception as e:  # noqa: BLE001 - the log is a record, not the delivery
            self.tel.incr("alert_log_failures")
            log.debug("thunder: alert log not written: %s", _reason(e))

    def publish(self) -> int:
        """Thunder's events onto the anomaly stream (for panorama and the overview), once
        Redis answers; how many."""
        if not self.unpublished or not self.redis_up:
            return 0
        events = list(self.unpublished)
        try:
            n = publish_all(self.client, events, maxlen=self.s.redis.anomaly_stream_maxlen)
            index_incidents(self.client, events)
        except _ERRORS:
            return 0
        del self.unpublished[:len(events)]
        return n

    async def aclose(self) -> None:
        for ch in self.channels.values():
            await ch.aclose()
        self.client.close()
        if self._engine is not None:
            self._engine.dispose()


def redis_url(ctx: Context) -> str:
    """The URL of the hot store, password included (ctx.redis.url is masked)."""
    if ctx.settings.REDIS_URL is not None:
        return ctx.settings.REDIS_URL.get_secret_value()
    if ctx.redis.embedded is not None:
        return ctx.redis.embedded.url
    return ctx.redis.url


async def run(ctx: Context) -> None:
    s = ctx.settings
    if not s.THUNDER_OPTS.enabled:
        log.info("thunder: THUNDER_OPTS.enabled is false; watching nothing")
        await ctx.stopping.wait()
        return
    th = Thunder(s, redis_url(ctx), ctx.telemetry(COMPONENT))
    log.info("thunder: checks every %gs; alerts on %s", s.THUNDER_OPTS.check_interval,
             ", ".join(s.THUNDER_OPTS.channels) or "no channel (events only)")
    try:
        while not ctx.stopping.is_set():
            started = time.monotonic()
            try:
                await asyncio.to_thread(th.observe, time.time())
                await th.deliver(time.time())
                await asyncio.to_thread(th.publish)
            except Exception:  # one failed round is logged; Thunder lives on
                log.exception("thunder: round failed")
            wait = s.THUNDER_OPTS.check_interval - (time.monotonic() - started)
            if await sleep_or_stop(ctx.stopping, wait):
                break
    finally:
        await th.aclose()
