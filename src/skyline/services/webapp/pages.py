"""The HTML pages: overview, anomalies (filters, keyset pages), one anomaly (chart,
explanations, alert deliveries, silence form), metrics search and one metric's chart, and
the settings. They read through the same functions as the /api/v1 endpoints."""

from __future__ import annotations

import math
import time
from typing import Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from skyline.analysis.config import triggers
from skyline.core.errors import InvalidInput, NotFound
from skyline.core.events import AnomalyEvent
from skyline.core.timeutil import iso, parse_until
from skyline.runtime.context import Context
from skyline.services.webapp import data
from skyline.services.webapp.auth import require_admin
from skyline.services.webapp.health import health
from skyline.services.webapp.models import finite_list
from skyline.services.webapp.templating import render
from skyline.settings.show import as_toml
from skyline.store.sql import alerts as alert_store
from skyline.store.sql import get_anomaly
from skyline.store.sql.anomalies import metric_anomalies
from skyline.store.sql.queries import AnomalyQuery, count_since, query_anomalies
from skyline.store.sql.runs import latest_runs

PAGE_SIZE = 50
SEARCH_PAGE = 200
FILTERS = ("pattern", "metric", "from", "until", "algorithm", "min_score", "status")
# the series page shows this much of the hot store unless asked otherwise
DEFAULT_RANGE = "-1d"


def _chart(timestamps: list[float], values: list[float | None],
           marks: list[dict[str, Any]]) -> dict[str, Any]:
    """What static/chart.js draws: the series, and the anomalies to mark on it."""
    return {"t": timestamps, "v": values, "marks": marks}


def _mark(e: AnomalyEvent, on_line: bool = False) -> dict[str, Any]:
    """An anomaly to mark: at its own value, or (`on_line`) on the charted series' point
    nearest its time, where another source's value may differ."""
    v = None if on_line or not math.isfinite(e.value) else e.value
    return {"t": e.timestamp, "v": v, "label": f"{e.status} (score {e.score:.3g})", "id": e.id}


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
    def overview(request: Request) -> HTMLResponse:
        now = time.time()
        engine = data.engine(ctx)
        runs = latest_runs(engine, 100)
        interval = float(ctx.settings.ANALYZER_OPTIMUM_RUN_DURATION)
        window = 5 * ctx.settings.telemetry.series_interval
        return render(
            request, "overview.html", health=health(ctx),
            counts={"hour": count_since(engine, now - 3600), "day": count_since(engine, now - 86400)},
            latest=query_anomalies(engine, AnomalyQuery(), limit=10).items,
            runs=runs[:10], stats=data.run_stats(runs, interval),
            ingest=data.ingest_rates(ctx, now, window), rate_window=window)

    @r.get("/anomalies")
    def anomalies(request: Request, before: str = "", after: str = "") -> HTMLResponse:
        f = {k: request.query_params.get(k, "") for k in FILTERS}
        algorithms = sorted({*triggers(ctx.settings),
                             *([f["algorithm"]] if f["algorithm"] else [])})
        ctx_: dict[str, Any] = {"f": f, "algorithms": algorithms, "items": [], "next": None,
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
        return render(
            request, "anomaly.html", status=status, e=e, message=message, error=error,
            window_points=len(t),
            chart=_chart(t.tolist(), finite_list(v.tolist()), [_mark(e)]),
            deliveries=alert_store.alert_log_rows(data.engine(ctx), event_id=e.id, limit=200),
            silence_pattern=data.exact_pattern(e.metric))

    @r.get("/anomalies/{event_id}")
    def anomaly(request: Request, event_id: str, silenced: int | None = None) -> HTMLResponse:
        message = ""
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
        t = s.timestamps
        lo = since if since is not None else (float(t[0]) if len(t) else 0.0)
        hi = end if end is not None else time.time()
        found = metric_anomalies(data.engine(ctx), name, lo, hi)
        return render(
            request, "series.html", name=name, from_=from_ or DEFAULT_RANGE, until=until,
            points=len(t), first=float(t[0]) if len(t) else None,
            last=float(t[-1]) if len(t) else None, anomalies=found,
            chart=_chart(t.tolist(), finite_list(s.values.tolist()), [_mark(e, on_line=True) for e in found]))

    @r.get("/settings")
    def settings_page(request: Request) -> HTMLResponse:
        require_admin(request)
        return render(request, "settings.html", toml=as_toml(ctx.settings))

    return r
