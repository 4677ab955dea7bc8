"""Luminosity's pages: incidents (open first), one incident's member timeline, and an
anomaly's related metrics. Read through the same store functions as the API."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from skyline.runtime.context import Context
from skyline.services.webapp import data
from skyline.services.webapp.templating import render
from skyline.store.sql import alerts as alert_store
from skyline.store.sql import get_anomaly
from skyline.store.sql import luminosity as q

PAGE_SIZE = 100


def router(ctx: Context) -> APIRouter:
    r = APIRouter(include_in_schema=False)

    @r.get("/luminosity/incidents")
    def incidents_page(request: Request) -> HTMLResponse:
        rows = q.list_incidents(data.engine(ctx), limit=PAGE_SIZE)
        return render(request, "luminosity_incidents.html", incidents=rows, now=time.time())

    @r.get("/luminosity/incidents/{incident_id}")
    def incident_page(request: Request, incident_id: str) -> HTMLResponse:
        engine = data.engine(ctx)
        inc = q.get_incident(engine, incident_id)
        members = sorted(inc.members.values(), key=lambda m: (m.since, m.metric))
        # alerts per incident (rules with group = "incident"): the alert and its resolve
        # are logged under the incident's id, each update under the joining member's event
        deliveries = alert_store.alert_log_rows(engine, event_id=inc.id, limit=200)
        for m in members:
            deliveries += [r for r in alert_store.alert_log_rows(engine, event_id=m.event_id,
                                                                 limit=200)
                           if r["kind"] == "update"]
        deliveries.sort(key=lambda r: (r["created"], r["id"]))
        return render(request, "luminosity_incident.html", i=inc, members=members,
                      now=time.time(), deliveries=deliveries,
                      simultaneous=sum(1 for m in members if m.since == inc.started))

    @r.get("/anomalies/{event_id}/related")
    def related_page(request: Request, event_id: str) -> HTMLResponse:
        engine = data.engine(ctx)
        e = get_anomaly(engine, event_id)
        return render(request, "luminosity_related.html", e=e,
                      related=q.related_metrics(engine, event_id))

    return r
