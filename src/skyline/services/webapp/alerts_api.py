"""/api/v1/silences (list, add, remove) and /api/v1/alerts/log: SQL the web app reads and
writes itself, so `skyline serve webapp` serves them whether or not alerters run beside it
(alerters pick up silence changes within their silence cache's refresh)."""

from __future__ import annotations

import getpass
from typing import Any

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field
from sqlalchemy.engine import Engine

from skyline.core.errors import StoreUnavailable
from skyline.core.timeutil import parse_until
from skyline.runtime.context import Context
from skyline.services.webapp.auth import require_admin
from skyline.store.sql import alerts as q

PREFIX = "/api/v1"
__all__ = ["default_who", "parse_until", "router"]


def default_who() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry, as in some containers
        return ""


class SilenceIn(BaseModel):
    pattern: str = Field(min_length=1, max_length=4096)
    until: str = Field(min_length=1, description="2h, 1d, ISO 8601 or Unix seconds")
    reason: str = Field("", max_length=q.MAX_REASON)
    who: str = Field("", max_length=255, description="ignored when logged in: the author "
                     "is the user who adds the silence")


class SilenceOut(BaseModel):
    id: int
    pattern: str
    created: float
    until: float = Field(description="Unix seconds when the silence ends")
    reason: str
    who: str


class SilencesOut(BaseModel):
    silences: list[SilenceOut]


class AlertLogRowOut(BaseModel):
    id: int
    delivery_id: int | None
    event_id: str | None
    channel: str
    kind: str
    metric: str
    attempt: int
    status: str
    error: str
    duration: float
    created: float


class AlertLogOut(BaseModel):
    log: list[AlertLogRowOut] = Field(description="newest first")


# answered by the web app's one error handler, whose ErrorOut schema the app's OpenAPI holds
_ERROR = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorOut"}}}}


def _engine(ctx: Context) -> Engine:
    if ctx.engine is None:
        raise StoreUnavailable("SQL database", "(not connected yet)", "starting")
    engine: Engine = ctx.engine
    return engine


def router(ctx: Context) -> APIRouter:
    r = APIRouter(prefix=PREFIX, tags=["alerts"])

    @r.get("/silences", response_model=SilencesOut)
    def list_silences(include_expired: bool = False) -> dict[str, Any]:
        rows = q.list_silences(_engine(ctx), include_expired=include_expired)
        return {"silences": [s.as_dict() for s in rows]}

    @r.post("/silences", status_code=201, response_model=SilenceOut,
            responses={403: {"description": "the user is not an admin", **_ERROR}})
    def add_silence(request: Request, body: SilenceIn) -> dict[str, Any]:
        user = require_admin(request)
        # the author is who is logged in; `who` only names one when nobody is (auth off)
        who = user.username if user.via != "open" else (body.who or user.username)
        s = q.add_silence(_engine(ctx), body.pattern, parse_until(body.until),
                          reason=body.reason, who=who)
        return s.as_dict()

    @r.delete("/silences/{silence_id}", status_code=204, response_class=Response,
              responses={404: {"description": "no such silence", **_ERROR},
                         403: {"description": "the user is not an admin", **_ERROR}})
    def remove_silence(request: Request, silence_id: int) -> Response:
        require_admin(request)
        q.remove_silence(_engine(ctx), silence_id)
        return Response(status_code=204)

    @r.get("/alerts/log", response_model=AlertLogOut)
    def alert_log(channel: str | None = None, event_id: str | None = None,
                  limit: int = Query(100, ge=1, le=1000)) -> dict[str, Any]:
        return {"log": q.alert_log_rows(_engine(ctx), channel=channel, event_id=event_id,
                                        limit=limit)}

    return r
