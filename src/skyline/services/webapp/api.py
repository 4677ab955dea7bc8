"""The read side of /api/v1, served by the web app alone (`skyline serve webapp`): metrics,
series, anomalies (list, detail, window, graph), analyzer runs and stats. Everything reads
through store-layer functions; bad parameters are 400 {"error": ...}, unknown names 404."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response

from skyline.plots import anomaly_png
from skyline.runtime.context import Context
from skyline.services.webapp import data, oncall
from skyline.services.webapp.auth import require_admin
from skyline.services.webapp.health import health
from skyline.services.webapp.models import (
    AckIn,
    AckOut,
    AnomalyOut,
    AnomalyPageOut,
    ErrorOut,
    IncidentOut,
    MetricsOut,
    NowOut,
    RunOut,
    RunsOut,
    RunStatsOut,
    SeriesOut,
    SilenceRefOut,
    StaleSourceOut,
    finite_list,
)
from skyline.store.sql import get_anomaly
from skyline.store.sql.queries import MAX_LIMIT, query_anomalies
from skyline.store.sql.runs import latest_runs

PREFIX = "/api/v1"
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorOut, "description": "a parameter is invalid"},
    404: {"model": ErrorOut, "description": "no such metric or anomaly"},
    503: {"model": ErrorOut, "description": "Redis or the SQL database is unreachable"},
}
TIME_HELP = "Unix seconds, ISO 8601 (UTC unless zoned), 'now', or relative like -2h"
MAX_RUNS = 1000


def series_out(name: str, t: Any, v: Any) -> SeriesOut:
    return SeriesOut(metric=name, points=len(t), timestamps=t.tolist(),
                     values=finite_list(v.tolist()))


def router(ctx: Context) -> APIRouter:
    r = APIRouter(prefix=PREFIX, responses=ERRORS)

    @r.get("/metrics", tags=["metrics"], response_model=MetricsOut)
    def metrics(
        pattern: str | None = Query(None, description="glob (`*`, `**`) or re:regex"),
        limit: int = Query(100, ge=1, le=data.MAX_METRICS_PAGE),
        cursor: str | None = Query(None, description="`next` of the previous page"),
    ) -> MetricsOut:
        page = data.list_metrics(ctx, pattern, limit, cursor)
        return MetricsOut(metrics=page.names, total=page.total, next=page.next)

    @r.get("/series/{name:path}", tags=["metrics"], response_model=SeriesOut)
    def series(
        name: str = Path(description="the metric name"),
        from_: str | None = Query(None, alias="from", description=TIME_HELP),
        until: str | None = Query(None, description=TIME_HELP),
    ) -> SeriesOut:
        """The metric's points from `from` to `until`: raw where the hot store still holds
        them (FULL_DURATION), before that the long history's bucket means (up to
        mirage.history_days back)."""
        s = data.read_long_series(ctx, name, data.time_param("from", from_),
                                  data.time_param("until", until))
        out = series_out(name, s.timestamps, s.values)
        out.resolution, out.downsampled_before = s.resolution, s.downsampled_before
        return out

    @r.get("/anomalies", tags=["anomalies"], response_model=AnomalyPageOut)
    def anomalies(
        metric: str | None = Query(None, description="one metric, by exact name"),
        pattern: str | None = Query(None, description="glob (`*`, `**`) or re:regex"),
        from_: str | None = Query(None, alias="from", description=TIME_HELP),
        until: str | None = Query(None, description=TIME_HELP),
        algorithm: str | None = Query(None, description="among the triggered algorithms"),
        min_score: float | None = Query(None, allow_inf_nan=False),
        status: str | None = Query(None, description="anomalous, vetoed, recovered or "
                                   "new_level"),
        source: str | None = Query(None, description="analyzer, mirage, boundary..."),
        limit: int = Query(50, ge=1, le=MAX_LIMIT),
        before: str | None = Query(None, description="`next` of a page: older anomalies"),
        after: str | None = Query(None, description="`prev` of a page: newer anomalies"),
    ) -> AnomalyPageOut:
        q = data.anomaly_query(metric=metric, pattern=pattern, from_=from_, until=until,
                               algorithm=algorithm, min_score=min_score, status=status,
                               source=source)
        page = query_anomalies(data.engine(ctx), q, limit=limit, before=before or None,
                               after=after or None)
        return AnomalyPageOut(items=[AnomalyOut.of(e) for e in page.items], next=page.next,
                              prev=page.prev)

    @r.get("/anomalies/{event_id}", tags=["anomalies"], response_model=AnomalyOut)
    def anomaly(event_id: str) -> AnomalyOut:
        return AnomalyOut.of(get_anomaly(data.engine(ctx), event_id))

    @r.get("/anomalies/{event_id}/window", tags=["anomalies"], response_model=SeriesOut)
    def window(event_id: str) -> SeriesOut:
        """The window the detector saw, as stored with the event."""
        e = get_anomaly(data.engine(ctx), event_id)
        t, v = e.window_arrays()
        return series_out(e.metric, t, v)

    @r.get("/anomalies/{event_id}/graph.png", tags=["anomalies"], response_class=Response,
           responses={200: {"content": {"image/png": {}}, "description": "PNG graph"}})
    async def graph(event_id: str) -> Response:
        e = await asyncio.to_thread(get_anomaly, data.engine(ctx), event_id)
        png = await asyncio.to_thread(anomaly_png, e)
        return Response(png, media_type="image/png",
                        headers={"Cache-Control": "private, max-age=86400"})

    @r.get("/analyzer/runs", tags=["analyzer"], response_model=RunsOut)
    def runs(limit: int = Query(20, ge=1, le=MAX_RUNS)) -> RunsOut:
        return RunsOut(runs=[RunOut.of(x) for x in latest_runs(data.engine(ctx), limit)])

    @r.get("/analyzer/stats", tags=["analyzer"], response_model=RunStatsOut)
    def stats(runs: int = Query(100, ge=1, le=MAX_RUNS, description="newest runs covered")
              ) -> RunStatsOut:
        return data.run_stats(latest_runs(data.engine(ctx), runs),
                              float(ctx.settings.ANALYZER_OPTIMUM_RUN_DURATION))

    @r.get("/incidents", tags=["incidents"], response_model=NowOut)
    def incidents() -> NowOut:
        """What is broken now: open incidents (who silenced or acknowledged each), metrics
        and sources with no data, late components, and the status word the overview shows."""
        now = oncall.what_now(ctx, health(ctx))
        return NowOut(
            time=now.time, status=now.status, reasons=now.reasons,
            incidents=[_incident_out(i, now.time) for i in now.incidents],
            stale=[StaleSourceOut(source=s.source, stale=s.stale, total=s.total,
                                  stopped=s.stopped, last_seen=s.last_seen, names=s.names)
                   for s in now.stale],
            late_components=dict(now.late_components),
            stopped_components=dict(now.stopped_components))

    @r.post("/incidents/ack", tags=["incidents"], response_model=AckOut,
            responses={403: {"model": ErrorOut, "description": "the user is not an admin"}})
    def acknowledge(request: Request, body: AckIn) -> AckOut:
        """Acknowledge a metric's open incident (until it closes); 404 when none is open."""
        user = require_admin(request)
        ack = oncall.acknowledge(ctx, body.metric, user.username, body.note)
        ctx.telemetry("webapp").incr("incidents_acknowledged")
        return AckOut(who=ack.who, at=ack.at, note=ack.note)

    return r


def _incident_out(i: oncall.Incident, now: float) -> IncidentOut:
    s = i.silence
    return IncidentOut(
        metric=i.metric, namespace=oncall.namespace(i.metric), since=i.since,
        duration=i.duration(now), last_event=i.last_event, value=i.value,
        band_low=i.band_low, band_high=i.band_high, score=i.score, source=i.source,
        event=i.event,
        silence=None if s is None else SilenceRefOut(id=s.id, pattern=s.pattern,
                                                      until=s.expires, who=s.who,
                                                      reason=s.reason),
        ack=None if i.ack is None else AckOut(who=i.ack.who, at=i.ack.at, note=i.ack.note))
