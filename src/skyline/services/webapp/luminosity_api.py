"""/api/v1/luminosity/incidents (incidents across metrics, open first; /api/v1/incidents is
the overview's list of metrics broken now) and /api/v1/anomalies/{event_id}/related (the metrics that moved with an anomaly): what the
luminosity component stored in SQL (docs/luminosity.md)."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from skyline.core.luminosity import Incident
from skyline.runtime.context import Context
from skyline.services.webapp.alerts_api import _ERROR, _engine
from skyline.store.sql import get_anomaly
from skyline.store.sql import luminosity as q

PREFIX = "/api/v1"


class RelatedOut(BaseModel):
    metric: str
    rank: int = Field(description="1: the best")
    coefficient: float = Field(description="Pearson's coefficient at lag 0")
    shifted_coefficient: float = Field(description="the coefficient at the best lag")
    shift_seconds: float = Field(description="the best lag; > 0: it moved after the anomaly")
    change: float = Field(description="how far it moved, in robust standard deviations")
    score: float
    anomalous: bool = Field(description="it had an incident of its own near the time")


class RelatedListOut(BaseModel):
    event_id: str
    related: list[RelatedOut]


class MemberOut(BaseModel):
    metric: str
    event_id: str
    since: float
    ended: float | None
    relation: str = Field(description="origin, correlated, prefix or map")
    coefficient: float | None
    shift_seconds: float | None


class IncidentOut(BaseModel):
    id: str
    status: Literal["open", "closed"]
    origin: str = Field(description="the earliest member: the probable cause")
    started: float
    ended: float | None
    members: list[MemberOut] = Field(description="in the order they began")


class IncidentsOut(BaseModel):
    incidents: list[IncidentOut] = Field(description="open first, then newest first")


def incident_dict(inc: Incident) -> dict[str, Any]:
    return {
        "id": inc.id, "status": "open" if inc.is_open else "closed", "origin": inc.origin,
        "started": inc.started, "ended": inc.ended,
        "members": [{"metric": m.metric, "event_id": m.event_id, "since": m.since,
                     "ended": m.ended, "relation": m.relation, "coefficient": m.coefficient,
                     "shift_seconds": m.shift_seconds}
                    for m in sorted(inc.members.values(), key=lambda m: (m.since, m.metric))],
    }


def router(ctx: Context) -> APIRouter:
    r = APIRouter(prefix=PREFIX, tags=["luminosity"])

    @r.get("/luminosity/incidents", response_model=IncidentsOut)
    def list_incidents(status: Literal["open", "closed"] | None = None,
                       limit: int = Query(50, ge=1, le=500)) -> dict[str, Any]:
        rows = q.list_incidents(_engine(ctx), limit=limit, status=status)
        return {"incidents": [incident_dict(i) for i in rows]}

    @r.get("/luminosity/incidents/{incident_id}", response_model=IncidentOut,
           responses={404: {"description": "no such incident", **_ERROR}})
    def get_incident(incident_id: str) -> dict[str, Any]:
        return incident_dict(q.get_incident(_engine(ctx), incident_id))

    @r.get("/anomalies/{event_id}/related", response_model=RelatedListOut,
           responses={404: {"description": "no such anomaly", **_ERROR}})
    def related(event_id: str) -> dict[str, Any]:
        engine = _engine(ctx)
        get_anomaly(engine, event_id)  # NotFound: 404, as every path naming an anomaly
        rows = q.related_metrics(engine, event_id)
        return {"event_id": event_id, "related": [
            {"metric": x.metric, "rank": x.rank, "coefficient": x.coefficient,
             "shifted_coefficient": x.shifted_coefficient, "shift_seconds": x.shift_seconds,
             "change": x.change, "score": x.score, "anomalous": x.anomalous} for x in rows]}

    return r
