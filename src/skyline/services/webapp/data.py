"""What the pages and the /api/v1 read endpoints both need: parameter parsing with clear
messages, and reads from the hot store and SQL through the store layer's functions."""

from __future__ import annotations

import bisect
import re
import statistics
from dataclasses import dataclass, field

import numpy as np
from sqlalchemy.engine import Engine

from skyline.core.errors import InvalidInput, NotFound, PatternError, StoreUnavailable
from skyline.core.events import STATUSES
from skyline.core.patterns import REGEX_PREFIX, compile_pattern
from skyline.core.timeutil import parse_time
from skyline.core.types import Series
from skyline.runtime.context import Context
from skyline.services.webapp.models import RunStatsOut
from skyline.store import history as hist
from skyline.store import keys
from skyline.store.sql.queries import AnomalyQuery
from skyline.store.sql.runs import RunStats
from skyline.telemetry.counters import collect

MAX_METRICS_PAGE = 1000


def engine(ctx: Context) -> Engine:
    if ctx.engine is None:
        raise StoreUnavailable("SQL database", "(not connected yet)", "starting")
    e: Engine = ctx.engine
    return e


def time_param(name: str, text: str | None) -> float | None:
    """A `from`/`until` parameter: Unix seconds, ISO 8601, 'now' or '-2h'; None when empty."""
    if text is None or not text.strip():
        return None
    try:
        return parse_time(text)
    except ValueError as e:
        raise InvalidInput(f"{name}: {e}") from None


def check_pattern(pattern: str | None) -> str | None:
    if pattern is None or not pattern.strip():
        return None
    try:
        compile_pattern(pattern)
    except PatternError as e:
        raise InvalidInput(f"pattern: {e}") from None
    return pattern


def anomaly_query(*, metric: str | None = None, pattern: str | None = None,
                  from_: str | None = None, until: str | None = None,
                  algorithm: str | None = None, min_score: float | None = None,
                  status: str | None = None, source: str | None = None) -> AnomalyQuery:
    """The store's query from request parameters (empty strings, as forms send them, are
    no filter); InvalidInput naming the parameter at fault."""
    since, end = time_param("from", from_), time_param("until", until)
    if since is not None and end is not None and since > end:
        raise InvalidInput("from is after until")
    if status is not None and status not in ("", *STATUSES):
        raise InvalidInput(f"status must be one of {', '.join(STATUSES)}, not {status!r}")
    return AnomalyQuery(metric=metric or None, pattern=check_pattern(pattern), since=since,
                        until=end, algorithm=(algorithm or "").strip() or None,
                        min_score=min_score, status=status or None, source=source or None)


@dataclass(frozen=True)
class MetricsPage:
    names: list[str]
    total: int
    next: str | None


def list_metrics(ctx: Context, pattern: str | None, limit: int, cursor: str | None
                 ) -> MetricsPage:
    """Metric names matching `pattern` (all when None), sorted, `limit` after `cursor` (the
    last name of the page before)."""
    if not 1 <= limit <= MAX_METRICS_PAGE:
        raise InvalidInput(f"limit must be between 1 and {MAX_METRICS_PAGE}, not {limit}")
    names = ctx.store.names(check_pattern(pattern))
    start = bisect.bisect_right(names, cursor) if cursor else 0
    page = names[start : start + limit]
    more = start + limit < len(names)
    return MetricsPage(page, len(names), page[-1] if more and page else None)


def search_pattern(text: str | None) -> str | None:
    """The search box: a pattern as written when it has a wildcard or is a regex, otherwise
    the text anywhere in the name (`**text**`), which is what people typing 'cpu' expect."""
    t = (text or "").strip()
    if not t:
        return None
    if t.startswith(REGEX_PREFIX) or "*" in t or "?" in t:
        return t
    return f"**{t}**"


def read_series(ctx: Context, name: str, since: float | None, until: float | None) -> Series:
    """The hot-store series of `name` between since and until; NotFound for a metric the
    index does not know."""
    if since is not None and until is not None and since > until:
        raise InvalidInput("from is after until")
    series = ctx.store.read_one(name, since=since, until=until)
    if not len(series.timestamps) and not ctx.client.sismember(keys.METRIC_INDEX, name):
        raise NotFound(f"no metric named {name!r}")
    return series


@dataclass
class LongSeries:
    """A metric's points over a range that may reach past its raw FULL_DURATION series: the
    long history's bucket means (at `resolution`, each at its bucket's start) before
    `downsampled_before`, the raw points from there on (docs/mirage.md)."""

    timestamps: np.ndarray
    values: np.ndarray
    raw_points: int
    resolution: int | None = None
    downsampled_before: float | None = None


def read_long_series(ctx: Context, name: str, since: float | None,
                     until: float | None) -> LongSeries:
    """read_series, preceded by the long history's buckets where `since` is older than the
    raw series' first point (24 h / 7 d / 30 d charts and the API)."""
    s = read_series(ctx, name, since, until)
    out = LongSeries(s.timestamps, s.values, len(s.timestamps))
    first = float(s.timestamps[0]) if len(s.timestamps) else until
    if since is None or (first is not None and since >= first):
        return out
    raw = ctx.client.get(keys.history(name))
    if not isinstance(raw, bytes):
        return out
    try:
        b = hist.decode(raw)
    except hist.CorruptHistory:
        return out
    end = first if first is not None else float("inf")
    if until is not None:
        end = min(end, until)
    b = b.window(since, end)
    if not len(b):
        return out
    return LongSeries(np.concatenate([b.timestamps, s.timestamps]),
                      np.concatenate([b.mean, s.values]), len(s.timestamps),
                      b.resolution, float(b.timestamps[-1] + b.resolution))


def exact_pattern(metric: str) -> str:
    """A silence pattern that matches this one name and no other: the name itself unless it
    holds characters a glob would read as wildcards."""
    if metric.startswith(REGEX_PREFIX) or re.search(r"[*?]", metric):
        return f"{REGEX_PREFIX}^{re.escape(metric)}$"
    return metric


def run_stats(runs: list[RunStats], interval: float) -> RunStatsOut:
    """Figures over `runs` (newest first)."""
    if not runs:
        return RunStatsOut(runs=0, interval=interval, first_started=None, last_started=None,
                           duration_mean=None, duration_p50=None, duration_max=None,
                           overruns=0, metrics_last=None, analysed_last=None, anomalies=0)
    durations = [r.duration for r in runs]
    return RunStatsOut(
        runs=len(runs), interval=interval, first_started=runs[-1].started,
        last_started=runs[0].started, duration_mean=statistics.fmean(durations),
        duration_p50=statistics.median(durations), duration_max=max(durations),
        overruns=sum(1 for d in durations if d > interval), metrics_last=runs[0].metrics,
        analysed_last=runs[0].analysed, anomalies=sum(r.anomalies for r in runs))


@dataclass(frozen=True)
class IngestRow:
    protocol: str
    accepted_rate: float
    rejected_rate: float
    accepted_total: float
    rejected_total: float
    #: rejected points by reason (totals), largest first: "325 rejected" alone says nothing
    reasons: list[tuple[str, float]] = field(default_factory=list)


def _split(counter: str, protocols: set[str]) -> tuple[str, str] | None:
    """("accepted"|"rejected", protocol) of an ingest counter: accepted_<protocol>, or
    rejected_<protocol>_<reason> where protocol and reason may both hold "_" (remote_write),
    so the longest known protocol wins."""
    what, _, rest = counter.partition("_")
    if what == "accepted" and rest:
        return what, rest
    if what != "rejected" or not rest:
        return None
    known = [p for p in protocols if rest.startswith(p + "_")]
    return what, max(known, key=len) if known else rest.rsplit("_", 1)[0]


def ingest_rates(ctx: Context, now: float, window: float) -> list[IngestRow]:
    """Per protocol: points accepted and rejected per second over the last `window` seconds,
    from the skyline.ingest.* self-metric series (each point is a counter's increase over one
    telemetry interval), and the totals from the counters' hashes (all instances summed)."""
    counters: dict[str, float] = {}
    for component, _instance, name, kind, value in collect(ctx.client):
        if component == "ingest" and kind == "counter":
            counters[name] = counters.get(name, 0.0) + value
    protocols = {n.partition("_")[2] for n in counters if n.startswith(("accepted_", "received_"))}
    totals: dict[str, list[float]] = {}
    rates: dict[str, list[float]] = {}
    reasons: dict[str, dict[str, float]] = {}
    names: list[str] = []
    for name, value in counters.items():
        split = _split(name, protocols)
        if split is None:
            continue
        what, protocol = split
        col = 0 if what == "accepted" else 1
        totals.setdefault(protocol, [0.0, 0.0])[col] += value
        if what == "rejected" and value:
            reason = name.removeprefix(f"rejected_{protocol}_") or "unknown"
            by_reason = reasons.setdefault(protocol, {})
            by_reason[reason] = by_reason.get(reason, 0.0) + value
        rates.setdefault(protocol, [0.0, 0.0])
        names.append(name)
    prefix = f"{ctx.settings.telemetry.series_prefix}.ingest."
    for name, s in zip(names, ctx.store.read([prefix + n for n in names], since=now - window),
                       strict=True):
        split = _split(name, protocols)
        assert split is not None
        rates[split[1]][0 if split[0] == "accepted" else 1] += float(s.values.sum()) / window
    return [IngestRow(p, rates[p][0], rates[p][1], totals[p][0], totals[p][1],
                      sorted(reasons.get(p, {}).items(), key=lambda kv: -kv[1]))
            for p in sorted(totals)]
