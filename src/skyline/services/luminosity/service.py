"""The luminosity service: two consumer groups on the anomaly stream.

- `incidents`: every event, at once. A metric's incident that begins (an `anomalous` event)
  is grouped (skyline.analysis.grouping: the hot store's tails of the metric and of the
  candidate incidents' origins, correlated); an ended one (recovered, new level, vetoed)
  ends its membership. Incidents are written to SQL and each change to the incident stream.
  Open incidents are read back from SQL at start, so ids and members survive restarts.
- `luminosity`: anomalous events in scope (CORRELATE_ALERTS_ONLY, LUMINOSITY_CORRELATE_ALL,
  LUMINOSITY_CORRELATE_NAMESPACES_ONLY, LUMINOSITY_CORRELATION_MAPS), once the points after
  the anomaly have arrived (luminosity.after + max_lag steps, at most luminosity.max_wait):
  every candidate metric's tail read at once, correlated, the top related metrics stored.

Both are idempotent: an event handled twice gives the same rows.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import numpy as np
import redis

from skyline.analysis.correlation import (
    Anomaly,
    CorrelationParams,
    correlate_flat,
    relate_flat,
    resolution,
    window_columns,
)
from skyline.analysis.grouping import Grouper, GroupingRules
from skyline.core.events import AnomalyEvent
from skyline.core.luminosity import Incident
from skyline.core.patterns import PatternSet
from skyline.runtime.consume import consume_events, sql_outage_as_unavailable, wait_for_sql
from skyline.runtime.context import Context
from skyline.settings import Settings
from skyline.store import keys
from skyline.store.flatread import FlatReader
from skyline.store.hotstore import HotStore
from skyline.store.sql.luminosity import open_incidents, save_correlations, save_incident
from skyline.telemetry import Telemetry

log = logging.getLogger(__name__)

CORRELATE_GROUP = "luminosity"
INCIDENT_GROUP = "incidents"
INCIDENT_STREAM_MAXLEN = 100_000
_PROBE_POINTS = 64  # points read to learn a metric's resolution


def params_of(s: Settings) -> CorrelationParams:
    lu = s.luminosity
    return CorrelationParams(before=lu.before, after=lu.after, max_lag=lu.max_lag,
                             threshold=s.LUMINOL_CROSS_CORRELATION_THRESHOLD,
                             min_change=lu.min_change, top=lu.top)


def rules_of(s: Settings) -> GroupingRules:
    lu = s.luminosity
    return GroupingRules(window=lu.incident_window, prefix_depth=lu.incident_prefix_depth,
                         maps=tuple(tuple(v) for v in s.LUMINOSITY_CORRELATION_MAPS.values()),
                         min_coefficient=lu.incident_min_coefficient,
                         min_baseline=lu.incident_min_baseline, before=lu.incident_before)


class Scope:
    """Which anomalies are correlated, and against which metrics."""

    def __init__(self, s: Settings) -> None:
        self.all = s.LUMINOSITY_CORRELATE_ALL or not s.CORRELATE_ALERTS_ONLY
        self.alerting = PatternSet(r.pattern for r in s.ALERTS)
        self.namespaces = list(s.LUMINOSITY_CORRELATE_NAMESPACES_ONLY)
        self.maps = [PatternSet(v) for v in s.LUMINOSITY_CORRELATION_MAPS.values()]

    def wanted(self, metric: str) -> bool:
        return self.all or self.alerting.any(metric)

    def candidates(self, metric: str, names: list[str]) -> list[str]:
        maps = [m for m in self.maps if m.any(metric)]
        if maps:
            names = [n for n in names if any(m.any(n) for m in maps)]
        for p in self.namespaces:
            one = PatternSet([p])
            if one.any(metric):
                names = one.filter(names)
        return names


class Luminosity:
    def __init__(self, settings: Settings, client: redis.Redis, engine: Any,
                 tel: Telemetry, stopping: asyncio.Event) -> None:
        self.s = settings
        self.client = client
        self.engine = engine
        self.tel = tel
        self.stopping = stopping
        self.params = params_of(settings)
        self.rules = rules_of(settings)
        self.group_params = self.rules.params(self.params)
        self.scope = Scope(settings)
        self.store = HotStore(client)
        self.reader = FlatReader(client)
        self.grouper: Grouper | None = None

    # -- reading the hot store ------------------------------------------------------------

    def _step(self, metric: str) -> float | None:
        flat = FlatReader(self.client, initial_bytes=_PROBE_POINTS * 16).read(
            [metric], tail=_PROBE_POINTS)
        return resolution(flat.timestamps)

    # -- incidents ------------------------------------------------------------------------

    def load(self) -> None:
        """The open incidents from SQL (called before the first event, and again after a
        Redis outage: SQL holds the truth)."""
        self.grouper = Grouper(self.rules, self._relate, open_incidents(self.engine))

    def _relate(self, metric: str, since: float, others: Any) -> dict[str, tuple[float, float]]:
        step = self._step(metric)
        if step is None:
            return {}
        names = [metric, *others]
        _, columns = window_columns(np.array([since]), step, self.group_params)
        flat = FlatReader(self.client).read(names, tail=columns + 5)
        return relate_flat(names, flat.timestamps, flat.values, flat.counts,
                           Anomaly(metric, since), step, self.group_params,
                           self.rules.min_baseline)

    def group(self, event: AnomalyEvent) -> None:
        if self.grouper is None:
            self.load()
        assert self.grouper is not None
        if self.rules.window <= 0:
            return
        if event.status == "anomalous":
            since = event.since if event.since is not None else event.timestamp
            placed = self.grouper.anomalous(event.metric, since, event.id)
            if not placed.changed:
                return
            self._write(placed.incident, "opened" if placed.opened else "joined", event)
            self.tel.incr("incidents_opened" if placed.opened else "incident_members_joined")
        else:
            inc = self.grouper.ended(event.metric, event.timestamp)
            if inc is None:
                return
            self._write(inc, "ended" if inc.is_open else "closed", event)
            if not inc.is_open:
                self.tel.incr("incidents_closed")

    def _write(self, inc: Incident, change: str, event: AnomalyEvent) -> None:
        save_incident(self.engine, inc)
        # `event`: the anomaly event that made the change (without its window of points), so
        # an alert per incident (the alerters' incident consumer) says what the member did
        # without a lookup
        body = {"incident": inc.id, "change": change, "metric": event.metric,
                "origin": inc.origin, "started": inc.started, "ended": inc.ended,
                "members": sorted(inc.members), "open_members": inc.open_members,
                "event": {**event.to_dict(), "window": ""}}  # the points stay in Redis
        self.client.xadd(keys.INCIDENT_STREAM, {"data": json.dumps(body, allow_nan=False)},
                         maxlen=INCIDENT_STREAM_MAXLEN, approximate=True)

    # -- related metrics ------------------------------------------------------------------

    def correlate(self, event: AnomalyEvent) -> None:
        if event.status != "anomalous" or not self.scope.wanted(event.metric):
            return
        if event.since is not None and event.since < event.timestamp:
            return  # a re-alert: correlated when the incident began
        step = self._step(event.metric)
        if step is None:
            self.tel.incr("correlations_skipped")
            return
        p = self.params
        ready = event.timestamp + (p.after + p.max_lag) * step
        deadline = time.monotonic() + min(self.s.luminosity.max_wait, ready - time.time())
        while time.time() < ready and time.monotonic() < deadline \
                and not self.stopping.is_set():
            time.sleep(min(1.0, max(0.0, ready - time.time())))
        names = self.scope.candidates(event.metric, self.store.names())
        if event.metric not in names:
            names.append(event.metric)
        _, columns = window_columns(np.array([event.timestamp]), step, p)
        flat = self.reader.read(names, tail=columns + 5)
        since = self._open_since()
        [related] = correlate_flat(
            names, flat.timestamps, flat.values, flat.counts,
            [Anomaly(event.metric, event.timestamp)], step, p, anomalous_since=since,
            related_period=float(self.s.LUMINOSITY_RELATED_TIME_PERIOD))
        save_correlations(self.engine, event.id, event.timestamp, related)
        self.tel.incr("anomalies_correlated")
        self.tel.incr("related_metrics", len(related))

    def _open_since(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for k, v in self.client.hgetall(keys.OPEN_INCIDENTS).items():
            try:
                out[k.decode() if isinstance(k, bytes) else k] = float(json.loads(v)["since"])
            except (ValueError, KeyError, TypeError):
                continue  # an entry this version does not read: not flagged
        return out


async def run(ctx: Context) -> None:
    s = ctx.settings
    if not s.LUMINOSITY_ENABLED:
        await ctx.stopping.wait()
        return
    tel = ctx.telemetry("luminosity")
    if not await wait_for_sql(ctx):
        return
    lum = Luminosity(s, ctx.client, ctx.engine, tel, ctx.stopping)
    claim = s.luminosity.claim_idle
    await asyncio.gather(
        consume_events(ctx, INCIDENT_GROUP, sql_outage_as_unavailable(ctx.engine, lum.group),
                       claim_idle=claim, count=100, tel=tel,
                       failure_counter="grouping_failures", setup=lum.load),
        consume_events(ctx, CORRELATE_GROUP,
                       sql_outage_as_unavailable(ctx.engine, lum.correlate),
                       claim_idle=claim, count=20, tel=tel,
                       failure_counter="correlation_failures"),
    )
