"""Panorama's queries over HTTP: /api/v1/anomalies (filters, keyset pages), one anomaly,
its graph as PNG, and a plain page per anomaly that alerts link to."""

from __future__ import annotations

import asyncio
import html
from typing import Any

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.engine import Engine

from skyline.core.errors import InvalidInput, StoreUnavailable
from skyline.core.timeutil import iso, parse_time
from skyline.plots import anomaly_png
from skyline.runtime.context import Context
from skyline.store.sql import get_anomaly
from skyline.store.sql.queries import MAX_LIMIT, AnomalyQuery, page_as_dict, query_anomalies


def _engine(ctx: Context) -> Engine:
    if ctx.engine is None:
        raise StoreUnavailable("SQL database", "(not connected yet)", "starting")
    engine: Engine = ctx.engine
    return engine


def _time(name: str, text: str | None) -> float | None:
    if text is None:
        return None
    try:
        return parse_time(text)
    except ValueError as e:
        raise InvalidInput(f"{name}: {e}") from None


def router(ctx: Context) -> APIRouter:
    r = APIRouter()

    @r.get("/api/v1/anomalies", tags=["anomalies"])
    def anomalies(
        metric: str | None = None,
        pattern: str | None = Query(None, description="glob or re:regex"),
        from_: str | None = Query(None, alias="from", description="Unix s, ISO 8601, -2h"),
        until: str | None = None,
        algorithm: str | None = None,
        min_score: float | None = None,
        status: str | None = None,
        source: str | None = None,
        limit: int = Query(50, ge=1, le=MAX_LIMIT),
        before: str | None = Query(None, description="`next` of the previous page"),
    ) -> dict[str, Any]:
        from skyline.core.errors import PatternError

        q = AnomalyQuery(metric=metric, pattern=pattern, since=_time("from", from_),
                         until=_time("until", until), algorithm=algorithm,
                         min_score=min_score, status=status, source=source)
        try:
            page = query_anomalies(_engine(ctx), q, limit=limit, before=before)
        except PatternError as e:
            raise InvalidInput(str(e)) from None
        return page_as_dict(page)

    @r.get("/api/v1/anomalies/{event_id}", tags=["anomalies"])
    def anomaly(event_id: str) -> dict[str, Any]:
        e = get_anomaly(_engine(ctx), event_id)
        d = e.to_dict()
        d.pop("window", None)
        d.pop("v", None)
        return d

    @r.get("/api/v1/anomalies/{event_id}/graph.png", tags=["anomalies"])
    async def graph(event_id: str) -> Response:
        e = await asyncio.to_thread(get_anomaly, _engine(ctx), event_id)
        png = await asyncio.to_thread(anomaly_png, e)
        return Response(png, media_type="image/png",
                        headers={"Cache-Control": "public, max-age=86400"})

    @r.get("/anomalies/{event_id}", response_class=HTMLResponse, include_in_schema=False)
    def page(event_id: str) -> HTMLResponse:
        e = get_anomaly(_engine(ctx), event_id)
        h = html.escape
        rows = "".join(
            f"<li><b>{h(x.algorithm)}</b>: {h(x.text)}</li>" for x in e.results
            if x.algorithm in e.triggered or x.verdict)
        body = f"""<!doctype html><html><head><meta charset="utf-8">
<title>Skyline anomaly: {h(e.metric)}</title></head><body style="font-family:sans-serif">
<h1>{h(e.metric)}</h1>
<p>{h(e.status)} at {h(iso(e.timestamp))}: value {e.value:.6g}, score {e.score:.3f},
source {h(e.source)}</p><ul>{rows}</ul>
<img src="/api/v1/anomalies/{h(e.id)}/graph.png" alt="graph of {h(e.metric)}">
<p><a href="/api/v1/anomalies/{h(e.id)}">JSON</a></p></body></html>"""
        return HTMLResponse(body)

    return r
