"""The boundary component: every BOUNDARY_OPTIMUM_RUN_DURATION, the BOUNDARY_METRICS rules
checked on the metrics they name (skyline.analysis.boundary), and the events they decide
published on the anomaly stream with source `boundary` (skyline.analysis.emit).

A run lists the hot store's metrics, matches them against the rules (again only when the set
of names changed), reads the matched series in one pass of the flat reader, judges every check
at once and publishes the events in one round trip. The checks' state (consecutive detections,
open incidents) is kept in memory and written to one Redis hash after each run (only what
changed), and read back at start, so a restart neither forgets an open incident nor restarts a
count. Runs never overlap; an overrun is logged and counted.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import redis

from skyline.algorithms import boundary as alg
from skyline.analysis.boundary import (
    WINDOW_POINTS,
    BoundaryParams,
    BoundaryRules,
    Checker,
    Checks,
    PassStats,
)
from skyline.analysis.emit import publish_all, to_event
from skyline.core.events import AnomalyEvent
from skyline.core.patterns import PatternSet
from skyline.core.types import FloatArray
from skyline.runtime.context import Context, every
from skyline.settings import Settings
from skyline.store import keys
from skyline.store.flatread import FlatReader
from skyline.store.hotstore import HotStore
from skyline.telemetry import Telemetry

log = logging.getLogger(__name__)

COMPONENT = "boundary"
SOURCE = "boundary"


def params_of(s: Settings) -> BoundaryParams:
    return BoundaryParams(min_tolerable_length=s.MIN_TOLERABLE_LENGTH,
                          stale_period=float(s.STALE_PERIOD),
                          max_tolerable_boredom=s.MAX_TOLERABLE_BOREDOM,
                          boredom_set_size=s.BOREDOM_SET_SIZE)


def _ranges(starts: npt.NDArray[np.int64], lens: npt.NDArray[np.int64]
            ) -> npt.NDArray[np.int64]:
    """The positions starts[i] .. starts[i] + lens[i] - 1 of every i, end to end."""
    total = int(lens.sum())
    if not total:
        return np.zeros(0, dtype=np.int64)
    out_starts = np.cumsum(lens) - lens
    return np.repeat(starts - out_starts, lens) + np.arange(total, dtype=np.int64)


def read_tails(reader: FlatReader, names: list[str], points: int, seconds: FloatArray
               ) -> tuple[FloatArray, FloatArray, npt.NDArray[np.int64]]:
    """The last `points` points of every series (flat layout, copied out of the reader),
    each widened (doubling, re-read) until it covers `seconds[i]` and 20 steps of its
    resolution, or holds the whole series. A series shorter than `points` comes whole, so
    a too-short check sees its true length."""
    width = max(1, int(points))
    flat = reader.read(names, tail=width)
    t, v = flat.timestamps.copy(), flat.values.copy()
    counts = flat.counts.copy()
    tails_of = np.full(len(names), width, dtype=np.int64)  # the tail each series was read with
    while len(names):
        ends = np.cumsum(counts)
        starts = ends - counts
        full = counts >= tails_of  # may hold more points than read
        two = counts >= 2
        last = np.where(counts > 0, t[np.maximum(ends - 1, 0)], np.nan) if len(t) else \
            np.full(len(names), np.nan)
        first = np.where(counts > 0, t[np.minimum(starts, max(len(t) - 1, 0))], np.nan) \
            if len(t) else np.full(len(names), np.nan)
        prev = np.where(two, t[np.maximum(ends - 2, 0)], np.nan) if len(t) else last
        span = np.fmax(seconds, 20 * (last - prev))
        short = np.flatnonzero(full & (first > last - span))
        if not len(short):
            break
        width *= 2
        sub = reader.read([names[i] for i in short.tolist()], tail=width)
        tails_of[short] = width
        new_counts = counts.copy()
        new_counts[short] = sub.counts
        out_starts = np.cumsum(new_counts) - new_counts
        nt = np.empty(int(new_counts.sum()))
        nv = np.empty_like(nt)
        keep = np.ones(len(names), dtype=bool)
        keep[short] = False
        dst, src = _ranges(out_starts[keep], counts[keep]), _ranges(starts[keep], counts[keep])
        nt[dst], nv[dst] = t[src], v[src]
        sub_starts = np.cumsum(sub.counts) - sub.counts
        dst, src = _ranges(out_starts[short], sub.counts), _ranges(sub_starts, sub.counts)
        nt[dst], nv[dst] = sub.timestamps[src], sub.values[src]
        t, v, counts = nt, nv, new_counts
    return t, v, counts


def stale_periods(s: Settings, metrics: list[str]) -> FloatArray | None:
    """Each metric's stale period: its CUSTOM_STALE_PERIOD (the first matching pattern), else
    STALE_PERIOD, as upstream's Boundary; None when no custom period is set."""
    if not s.CUSTOM_STALE_PERIOD:
        return None
    out = np.full(len(metrics), float(s.STALE_PERIOD))
    pos = {m: i for i, m in enumerate(metrics)}
    for pattern, seconds in reversed(list(s.CUSTOM_STALE_PERIOD.items())):
        hit = PatternSet([pattern]).filter(metrics)
        if hit:
            out[[pos[m] for m in hit]] = float(seconds)
    return out


def scope_of(event: AnomalyEvent) -> str:
    """The check of a Boundary event within its metric: its algorithm (one check per metric
    and algorithm)."""
    if event.results:
        return event.results[0].algorithm
    return event.triggered[0] if event.triggered else ""


@dataclass
class BoundaryReport:
    stats: PassStats
    metrics: int = 0  # metrics in the hot store
    matched: int = 0  # metrics some rule checks
    events: list[AnomalyEvent] = field(default_factory=list)
    duration: float = 0.0


class Boundary:
    def __init__(self, settings: Settings, client: redis.Redis) -> None:
        self.s = settings
        self.client = client
        self.rules = BoundaryRules(settings.BOUNDARY_METRICS)
        self.checker = Checker(self.rules, params_of(settings))
        self.store = HotStore(client)
        self.reader = FlatReader(client, initial_bytes=1 << 20)
        self._names: list[str] | None = None
        self._checks: Checks | None = None
        self._stale: FloatArray | None = None
        self._points = 1
        self._seconds = np.zeros(0)
        self._restored = False

    def restore(self) -> int:
        """The checks' states saved by earlier runs (at start)."""
        saved = self.client.hgetall(keys.BOUNDARY_CHECKS)
        n = self.checker.restore({(k.decode() if isinstance(k, bytes) else k):
                                  (v.encode("latin-1") if isinstance(v, str) else v)
                                  for k, v in saved.items()})
        self._restored = True
        if n:
            log.info("boundary: %d checks counting or open restored", n)
        return n

    def _match(self, names: list[str]) -> Checks:
        """The checks of the metrics some rule names, over those metrics only."""
        if self._checks is not None and names == self._names:
            return self._checks
        all_checks = self.rules.match(names)
        rows, inverse = np.unique(all_checks.row, return_inverse=True)
        matched = [names[i] for i in rows.tolist()]
        checks = Checks(matched, inverse.astype(np.int64), all_checks.rule, all_checks.keys)
        self.checker.forget(checks.keys)
        wanted = set(checks.keys)
        stale = [k for k in (x.decode() if isinstance(x, bytes) else x
                             for x in self.client.hkeys(keys.BOUNDARY_CHECKS)) if k not in wanted]
        if stale:  # metrics gone, or rules changed: their saved states with them
            self.client.hdel(keys.BOUNDARY_CHECKS, *stale)
        self._names, self._checks = names, checks
        self._stale = stale_periods(self.s, matched)
        # what a run reads of each matched series: enough points for every pre-check and
        # algorithm, and (widened per series when needed) the seconds of its MIN_AVERAGE
        # window; not the whole series
        p = self.checker.params
        self._points = max(p.min_tolerable_length, p.max_tolerable_boredom, alg.CLIFF_MIN_POINTS,
                           WINDOW_POINTS, *(r.smooth_points for r in self.rules.rules))
        self._seconds = np.zeros(len(matched))
        np.maximum.at(self._seconds, checks.row,
                      self.rules.min_average_seconds[checks.rule])
        return checks

    def run_once(self, now: float | None = None) -> BoundaryReport:
        t0 = time.perf_counter()
        if not self._restored:
            self.restore()
        names = self.store.names()  # sorted
        checks = self._match(names)
        if not len(checks):
            return BoundaryReport(PassStats(), metrics=len(names))
        t, v, counts = read_tails(self.reader, checks.metrics, self._points,
                                  self._seconds)
        when = time.time() if now is None else now
        result = self.checker.run(checks, t, v, counts, when, stale_periods=self._stale)
        created = time.time()
        events = [to_event(pe, SOURCE, created, scope=pe.results[0].algorithm)
                  for pe in result.events]
        publish_all(self.client, events, maxlen=self.s.redis.anomaly_stream_maxlen)
        index_incidents(self.client, events)
        put, gone = self.checker.snapshot()
        if put or gone:
            pipe = self.client.pipeline(transaction=False)
            if put:
                pipe.hset(keys.BOUNDARY_CHECKS, mapping=put)  # type: ignore[arg-type]
            if gone:
                pipe.hdel(keys.BOUNDARY_CHECKS, *gone)
            pipe.execute()
        report = BoundaryReport(result.stats, metrics=len(names), matched=len(checks.metrics),
                                events=events, duration=time.perf_counter() - t0)
        self._log(report)
        return report

    def _log(self, r: BoundaryReport) -> None:
        st = r.stats
        log.info("boundary run: %d metrics, %d matched, %d checks, %d judged (%d stale, %d too "
                 "short, %d boring, %d unchanged), %d detections, events %s in %.3fs",
                 r.metrics, r.matched, st.checks, st.judged, st.stale, st.too_short, st.boring,
                 st.unchanged, st.detections, st.events or "none", r.duration)


def index_incidents(client: redis.Redis, events: list[AnomalyEvent]) -> None:
    """Keep keys.OPEN_INCIDENTS (what the overview lists as broken now) in step with
    Boundary's events without touching the analyzer's entries: an anomalous event writes the
    metric's entry unless another source holds it; a recovery removes it only when Boundary's
    own check wrote it."""
    if not events:
        return
    metrics = list(dict.fromkeys(e.metric for e in events))
    held = dict(zip(metrics, client.hmget(keys.OPEN_INCIDENTS, metrics), strict=True))
    owner: dict[str, str | None] = {}
    for m, raw in held.items():
        try:
            entry = json.loads(raw) if raw is not None else None
        except ValueError:
            entry = None
        owner[m] = (f"{entry.get('source')}/{entry.get('check', '')}"
                    if isinstance(entry, dict) else None)
    pipe = client.pipeline(transaction=False)
    for e in events:
        mine = f"{SOURCE}/{scope_of(e)}"
        if e.status == "anomalous":
            if owner[e.metric] not in (None, mine):
                continue
            pipe.hset(keys.OPEN_INCIDENTS, e.metric, json.dumps({
                "since": e.since if e.since is not None else e.timestamp,
                "last_event": e.timestamp, "band_low": e.band_low, "band_high": e.band_high,
                "score": e.score, "value": e.value, "source": e.source, "event": e.id,
                "check": scope_of(e)}, allow_nan=False))
            owner[e.metric] = mine
        elif owner[e.metric] == mine:
            pipe.hdel(keys.OPEN_INCIDENTS, e.metric)
            owner[e.metric] = None
    pipe.execute()


def record(tel: Telemetry, r: BoundaryReport) -> None:
    st = r.stats
    tel.incr("runs")
    tel.incr("checks", st.checks)
    tel.incr("judged", st.judged)
    tel.incr("detections", st.detections)
    tel.incr("exception_stale", st.stale)
    tel.incr("exception_too_short", st.too_short)
    tel.incr("exception_boring", st.boring)
    for status, n in st.events.items():
        tel.incr(f"events_{status}", n)
    tel.gauge("metrics_matched", r.matched)
    tel.gauge("run_seconds", r.duration)


async def run(ctx: Context) -> None:
    s = ctx.settings
    tel = ctx.telemetry(COMPONENT)
    if not s.BOUNDARY_METRICS:
        log.info("boundary: BOUNDARY_METRICS is empty; checking nothing (docs/boundary.md)")
        await ctx.stopping.wait()
        return
    boundary = Boundary(s, ctx.client)
    log.info("boundary: %d rules, a run every %gs", len(s.BOUNDARY_METRICS),
             s.BOUNDARY_OPTIMUM_RUN_DURATION)

    def one_run() -> None:
        record(tel, boundary.run_once())

    def overrun(took: float) -> None:
        tel.incr("overruns")

    await every(ctx, s.BOUNDARY_OPTIMUM_RUN_DURATION, one_run, name=COMPONENT,
                on_overrun=overrun)
