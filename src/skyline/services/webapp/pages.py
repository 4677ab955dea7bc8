"""The HTML pages: overview, anomalies (filters, keyset pages), one anomaly (chart,
explanations, alert deliveries, silence form), metrics search and one metric's chart, and
the settings. They read through the same functions as the /api/v1 endpoints."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from skyline.algorithms.counters import strictly_increasing
from skyline.analysis.config import triggers
from skyline.core.errors import InvalidInput, NotFound
from skyline.core.events import AnomalyEvent
from skyline.core.luminosity import RelatedMetric
from skyline.core.patterns import PatternSet
from skyline.core.timeutil import iso, parse_until
from skyline.runtime.context import Context
from skyline.services.webapp import data, oncall
from skyline.services.webapp.auth import require_admin
from skyline.services.webapp.health import health
from skyline.services.webapp.models import finite_list
from skyline.services.webapp.templating import render
from skyline.settings import origins
from skyline.settings.show import as_toml
from skyline.store.sql import alerts as alert_store
from skyline.store.sql import get_anomaly
from skyline.store.sql import ionosphere as ion_store
from skyline.store.sql.anomalies import metric_anomalies
from skyline.store.sql.luminosity import incident_of_event, related_metrics
from skyline.store.sql.queries import AnomalyQuery, count_since, query_anomalies
from skyline.store.sql.runs import latest_runs

PAGE_SIZE = 50
SEARCH_PAGE = 200
FILTERS = ("pattern", "metric", "from", "until", "algorithm", "min_score", "status")
# the series page shows this much of the hot store unless asked otherwise
DEFAULT_RANGE = "-1d"
# seconds between refreshes of the overview's "broken now" part (?refresh= changes it)
OVERVIEW_REFRESH = 30.0
# expired silences listed under the active ones
SILENCES_ENDED_SHOWN = 20
# the series page's range buttons
RANGE_PRESETS = (("1 h", "-1h"), ("6 h", "-6h"), ("24 h", "-1d"), ("7 d", "-7d"),
                 ("30 d", "-30d"))


def _chart(timestamps: list[float], values: list[float | None],
           marks: list[dict[str, Any]], *, band: tuple[float | None, float | None] | None = None,
           no_data_since: float | None = None, y_label: str = "value") -> dict[str, Any]:
    """What static/chart.js draws: the series as charted, the events to mark on it, the
    band the detector expected, and where a series that stopped went quiet."""
    return {"t": timestamps, "v": values, "marks": marks,
            "band": list(band) if band and (band[0] is not None or band[1] is not None)
            else None,
            "no_data_since": no_data_since, "now": time.time(), "y_label": y_label}


def _mark(e: AnomalyEvent) -> dict[str, Any]:
    """An event to mark: on the charted series' point nearest its time (chart.js), so that
    the mark is on the line's scale whatever the event quoted (a counter's rate, another
    source's value)."""
    return {"t": e.timestamp, "v": None, "label": f"{e.status} (score {e.score:.3g})",
            "id": e.id, "status": e.status}


def _mirage_chart(ctx: Context, e: AnomalyEvent) -> dict[str, Any] | None:
    """The history Mirage judged the event on (its `hours` before it, from the long history
    and the raw series as they are now), when Mirage judged it."""
    st = next((x for x in (e.stages or ()) if x.stage == "mirage"
               and x.verdict in ("confirm", "veto")), None)
    if st is None:
        return None
    hours = float(st.figures.get("hours", 168.0))
    try:
        long = data.read_long_series(ctx, e.metric, e.timestamp - hours * 3600,
                                     e.timestamp + 3600)
    except (NotFound, InvalidInput):
        return None
    if not len(long.timestamps):
        return None
    return _chart(long.timestamps.tolist(), finite_list(long.values.tolist()), [_mark(e)],
                  y_label="value (bucket means before the raw points)")


def _covering(silences: list[alert_store.Silence], metric: str) -> alert_store.Silence | None:
    """The active silence that covers `metric` (the one ending last), if any."""
    hits = [s for s in silences if PatternSet([s.pattern]).any(metric)]
    return max(hits, key=lambda s: s.expires) if hits else None


def _is_counter(ctx: Context, name: str, values: np.ndarray) -> bool:
    """Whether the analyzer analyses `name` as a counter's rate: forced by
    MONOTONIC_METRIC_NAMESPACES / NON_DERIVATIVE_MONOTONIC_METRICS, else detected as it is."""
    s = ctx.settings
    if s.NON_DERIVATIVE_MONOTONIC_METRICS and PatternSet(s.NON_DERIVATIVE_MONOTONIC_METRICS).any(name):
        return False
    if s.MONOTONIC_METRIC_NAMESPACES and PatternSet(s.MONOTONIC_METRIC_NAMESPACES).any(name):
        return True
    if not s.analyzer.detect_counters or len(values) < 2:
        return False
    return bool(strictly_increasing(values, np.array([len(values)]))[0])


def _rate(t: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A counter as the analyzer sees it: its increase per point, a reset (a fall) a gap."""
    dv = np.diff(v)
    return t[1:], np.where(dv >= 0, dv, np.nan)


def _normalised(v: np.ndarray) -> np.ndarray:
    """Robust z-scores (median, scaled MAD; the spread when the MAD is 0), so metrics of any
    unit share one axis; a flat series is drawn at 0."""
    ok = np.isfinite(v)
    if not ok.any():
        return v
    med = float(np.median(v[ok]))
    scale = 1.4826 * float(np.median(np.abs(v[ok] - med)))
    if scale <= 0:
        scale = float(np.std(v[ok]))
    return (v - med) / scale if scale > 0 else v - med


def _on_grid(grid: np.ndarray, t: np.ndarray, v: np.ndarray, tolerance: float) -> np.ndarray:
    """`v` at each grid time: the point nearest it within `tolerance` seconds, else NaN."""
    out = np.full(len(grid), np.nan)
    if not len(t) or not len(grid):
        return out
    i = np.clip(np.searchsorted(t, grid), 1, max(1, len(t) - 1))
    left = np.clip(i - 1, 0, len(t) - 1)
    right = np.clip(i, 0, len(t) - 1)
    pick = np.where(np.abs(t[left] - grid) <= np.abs(t[right] - grid), left, right)
    near = np.abs(t[pick] - grid) <= tolerance
    out[near] = v[pick[near]]
    return out


def related_chart(ctx: Context, e: AnomalyEvent, related: list[RelatedMetric]
                  ) -> dict[str, Any] | None:
    """The anomalous metric and its related metrics on one time axis, each normalised
    (robust z-score; counters as their rate): from the window's start to a few steps past
    the lags Luminosity allowed, read from the hot store (the event's own window when the
    metric's points are gone). None without related metrics."""
    if not related:
        return None
    wt, wv = e.window_arrays()
    step = float(np.median(np.diff(wt))) if len(wt) > 2 else 60.0
    lu = ctx.settings.luminosity
    lo = float(wt[0]) if len(wt) else e.timestamp - lu.before * step
    hi = e.timestamp + (lu.after + lu.max_lag + 5) * step

    def read(name: str) -> tuple[np.ndarray, np.ndarray]:
        try:
            s = data.read_series(ctx, name, lo, hi)
        except NotFound:
            return np.empty(0), np.empty(0)
        t, v = s.timestamps, s.values.astype(np.float64)
        if _is_counter(ctx, name, v):
            t, v = _rate(t, v)
        return t, v

    grid, main = read(e.metric)
    if len(grid) < 2:
        grid, main = wt, wv.astype(np.float64)
    lines = []
    for r in related:
        t, v = read(r.metric)
        lines.append({
            "label": f"{r.metric} (r {r.shifted_coefficient:+.2f}, lag {r.shift_seconds:+.0f} s)",
            "v": finite_list(_normalised(_on_grid(grid, t, v, step / 2)).tolist())})
    chart = _chart(grid.tolist(), finite_list(_normalised(main).tolist()), [_mark(e)],
                   y_label="normalised (robust z-score)")
    chart["label"] = e.metric
    chart["lines"] = lines
    return chart


def _min_score(text: str) -> float | None:
    if not text.strip():
        return None
    try:
        x = float(text)
    except ValueError:
        raise InvalidInput(f"min_score: not a number: {text!r}") from None
    if x != x or x in (float("inf"), float("-inf")):
        raise InvalidInput(f"min_score: not a finite number: {text!r}")
    return x


def router(ctx: Context) -> APIRouter:
    r = APIRouter(include_in_schema=False, default_response_class=HTMLResponse)

    @r.get("/")
    def overview(request: Request, refresh: float = Query(OVERVIEW_REFRESH, ge=2, le=3600)
                 ) -> HTMLResponse:
        now = time.time()
        engine = data.engine(ctx)
        runs = latest_runs(engine, 100)
        interval = float(ctx.settings.ANALYZER_OPTIMUM_RUN_DURATION)
        window = 5 * ctx.settings.telemetry.series_interval
        h = health(ctx)
        return render(
            request, "overview.html", health=h, now=oncall.what_now(ctx, h, now),
            refresh=f"{refresh:g}",
            counts={"hour": count_since(engine, now - 3600), "day": count_since(engine, now - 86400)},
            latest=query_anomalies(engine, AnomalyQuery(), limit=10).items,
            runs=runs[:10], stats=data.run_stats(runs, interval),
            ingest=data.ingest_rates(ctx, now, window), rate_window=window)

    @r.get("/overview/now")
    def overview_now(request: Request) -> HTMLResponse:
        """The overview's "broken now" part alone, which the page refreshes in place."""
        return render(request, "_now.html", now=oncall.what_now(ctx, health(ctx)))

    @r.post("/incidents/ack", response_model=None)
    def acknowledge(request: Request, metric: str = Form(..., max_length=4096),
                    note: str = Form("", max_length=oncall.MAX_NOTE)) -> Response:
        user = require_admin(request)
        oncall.acknowledge(ctx, metric, user.username, note)
        ctx.telemetry("webapp").incr("incidents_acknowledged")
        return RedirectResponse("/", status_code=303)

    @r.get("/anomalies")
    def anomalies(request: Request, before: str = "", after: str = "") -> HTMLResponse:
        f = {k: request.query_params.get(k, "") for k in FILTERS}
        algorithms = sorted({*triggers(ctx.settings),
                             *([f["algorithm"]] if f["algorithm"] else [])})
        ctx_: dict[str, Any] = {"f": f, "algorithms": algorithms, "items": [], "next": None,
                                "presets": RANGE_PRESETS,
                                "prev": None, "cursor_before": before, "cursor_after": after}
        try:
            q = data.anomaly_query(metric=f["metric"], pattern=f["pattern"], from_=f["from"],
                                   until=f["until"], algorithm=f["algorithm"],
                                   min_score=_min_score(f["min_score"]), status=f["status"])
            page = query_anomalies(data.engine(ctx), q, limit=PAGE_SIZE,
                                   before=before or None, after=after or None)
        except (InvalidInput, NotFound) as e:
            status = 404 if isinstance(e, NotFound) else 400
            return render(request, "anomalies.html", status=status, error=str(e), **ctx_)
        ctx_.update(items=page.items, next=page.next, prev=page.prev)
        return render(request, "anomalies.html", **ctx_)

    def detail(request: Request, event_id: str, *, status: int = 200, message: str = "",
               error: str = "") -> HTMLResponse:
        e = get_anomaly(data.engine(ctx), event_id)
        t, v = e.window_arrays()
        related = related_metrics(data.engine(ctx), e.id)
        return render(
            request, "anomaly.html", status=status, e=e, message=message, error=error,
            related=related, related_chart=related_chart(ctx, e, related),
            incident=incident_of_event(data.engine(ctx), e.id),
            window_points=len(t), window_start=float(t[0]) if len(t) else None,
            feedback=ion_store.feedback_for(data.engine(ctx), e.id),
            matches=ion_store.list_matches(data.engine(ctx), event_id=e.id),
            chart=_chart(t.tolist(), finite_list(v.tolist()), [_mark(e)],
                         band=(e.band_low, e.band_high)),
            mirage_chart=_mirage_chart(ctx, e),
            deliveries=alert_store.alert_log_rows(data.engine(ctx), event_id=e.id, limit=200),
            silence_pattern=data.exact_pattern(e.metric),
            silence=_covering(alert_store.list_silences(data.engine(ctx)), e.metric))

    @r.get("/anomalies/{event_id}")
    def anomaly(request: Request, event_id: str, silenced: int | None = None,
                taught: int | None = None) -> HTMLResponse:
        message = ""
        if taught is not None:
            message = (f"Taught: profile #{taught} is live from the next analysis "
                       "(see Teach Ionosphere below).")
        if silenced is not None:
            found = [s for s in alert_store.list_silences(data.engine(ctx)) if s.id == silenced]
            if found:
                s = found[0]
                message = f"Silenced {s.pattern} until {iso(s.expires)} (silence {s.id})."
        return detail(request, event_id, message=message)

    @r.post("/anomalies/{event_id}/silence", response_model=None)
    def silence(request: Request, event_id: str, duration: str = Form("1d"),
                reason: str = Form("", max_length=alert_store.MAX_REASON)) -> Response:
        user = require_admin(request)
        e = get_anomaly(data.engine(ctx), event_id)
        who = user.username
        try:
            s = alert_store.add_silence(data.engine(ctx), data.exact_pattern(e.metric),
                                        parse_until(duration), reason=reason.strip(), who=who)
        except InvalidInput as err:
            return detail(request, event_id, status=400, error=str(err))
        ctx.telemetry("webapp").incr("silences_added")
        return RedirectResponse(f"/anomalies/{e.id}?silenced={s.id}", status_code=303)

    @r.get("/series")
    def series_search(request: Request, q: str = "", cursor: str = "") -> HTMLResponse:
        try:
            page = data.list_metrics(ctx, data.search_pattern(q), SEARCH_PAGE, cursor or None)
        except InvalidInput as e:
            return render(request, "series_search.html", status=400, error=str(e), q=q,
                          cursor=cursor, names=[], total=0, next=None)
        return render(request, "series_search.html", q=q, cursor=cursor, names=page.names,
                      total=page.total, next=page.next)

    @r.get("/series/{name:path}")
    def series(request: Request, name: str) -> HTMLResponse:
        from_ = request.query_params.get("from", "")
        until = request.query_params.get("until", "")
        since = data.time_param("from", from_ or DEFAULT_RANGE)
        end = data.time_param("until", until)
        s = data.read_series(ctx, name, since, end)
        t, v = s.timestamps, s.values
        now = time.time()
        counter = _is_counter(ctx, name, v)
        long: data.LongSeries | None = None
        if counter:
            t, v = _rate(t, v)
        else:  # older than the raw series: the long history's bucket means
            long = data.read_long_series(ctx, name, since, end)
            if long.downsampled_before is None:
                long = None
            else:
                t, v = long.timestamps, long.values
        lo = since if since is not None else (float(t[0]) if len(t) else 0.0)
        hi = end if end is not None else now
        found = metric_anomalies(data.engine(ctx), name, lo, hi)
        last = float(s.timestamps[-1]) if len(s.timestamps) else None
        quiet = (last is not None and end is None
                 and now - last > float(ctx.settings.STALE_PERIOD) > 0)
        incident = oncall.open_incident(ctx, name)
        band = (incident.band_low, incident.band_high) if incident else None
        return render(
            request, "series.html", name=name, from_=from_ or DEFAULT_RANGE, until=until,
            presets=RANGE_PRESETS, points=len(s.timestamps), long=long,
            first=float(s.timestamps[0]) if len(s.timestamps) else None, last=last,
            anomalies=found, counter=counter, no_data_since=last if quiet else None,
            incident=incident,
            chart=_chart(t.tolist(), finite_list(v.tolist()), [_mark(e) for e in found],
                         band=band, no_data_since=last if quiet else None,
                         y_label="increase per point (counter)" if counter else "value"))

    def silences_page(request: Request, *, status: int = 200, message: str = "",
                      error: str = "", form: dict[str, str] | None = None) -> HTMLResponse:
        engine = data.engine(ctx)
        now = time.time()
        rows = alert_store.list_silences(engine, include_expired=True, now=now)
        active = [x for x in rows if x.expires > now]
        ended = sorted((x for x in rows if x.expires <= now), key=lambda x: -x.expires)
        return render(request, "silences.html", status=status, message=message, error=error,
                      active=active, ended=ended[:SILENCES_ENDED_SHOWN], now=now,
                      form=form or {"pattern": request.query_params.get("pattern", ""),
                                    "duration": "1d", "reason": ""})

    @r.get("/silences")
    def silences(request: Request) -> HTMLResponse:
        return silences_page(request)

    @r.post("/silences", response_model=None)
    def add_silence(request: Request, pattern: str = Form(..., max_length=4096),
                    duration: str = Form("1d", max_length=100),
                    reason: str = Form("", max_length=alert_store.MAX_REASON)) -> Response:
        user = require_admin(request)
        form = {"pattern": pattern, "duration": duration, "reason": reason}
        try:
            s = alert_store.add_silence(data.engine(ctx), pattern.strip(),
                                        parse_until(duration), reason=reason.strip(),
                                        who=user.username)
        except InvalidInput as err:
            return silences_page(request, status=400, error=str(err), form=form)
        ctx.telemetry("webapp").incr("silences_added")
        return silences_page(request, message=f"Silenced {s.pattern} until {iso(s.expires)} "
                             f"(silence {s.id}).")

    @r.post("/silences/{silence_id}/end", response_model=None)
    def end_silence(request: Request, silence_id: int) -> Response:
        require_admin(request)
        s = alert_store.end_silence(data.engine(ctx), silence_id)
        ctx.telemetry("webapp").incr("silences_ended")
        return silences_page(request, message=f"Ended silence {s.id} ({s.pattern}).")

    @r.get("/settings")
    def settings_page(request: Request, changed: bool = False) -> HTMLResponse:
        require_admin(request)
        s = ctx.settings
        groups = origins.grouped(s)
        return render(request, "settings.html", toml=as_toml(s), groups=groups,
                      summary=origins.detector_summary(s), only_changed=changed,
                      changed=sum(g.changed for g in groups), origin_text=origins.ORIGIN_TEXT,
                      config_file=origins.config_file(s))

    return r
