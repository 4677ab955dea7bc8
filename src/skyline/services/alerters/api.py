"""/api/v1/silences (list, add, remove) and /api/v1/alerts/log, mounted on the web app."""

from __future__ import annotations

import getpass
from typing import Any

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, Field
from sqlalchemy.engine import Engine

from skyline.core.errors import InvalidInput, StoreUnavailable
from skyline.core.timeutil import now, parse_duration, parse_time
from skyline.runtime.context import Context
from skyline.store.sql import alerts as q

PREFIX = "/api/v1"


def parse_until(text: str, reference: float | None = None) -> float:
    """'2h', '30m' (from now), ISO 8601 or Unix seconds: when a silence ends."""
    ref = now() if reference is None else reference
    t = text.strip()
    try:
        return ref + parse_duration(t)
    except ValueError:
        pass
    try:
        return parse_time(t, reference=ref)
    except ValueError:
        raise InvalidInput(f"until: not a duration or a time: {text!r} (e.g. 2h, 1d, "
                           "2030-01-01T00:00:00Z)") from None


def default_who() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry, as in some containers
        return ""


class SilenceIn(BaseModel):
    pattern: str = Field(min_length=1, max_length=4096)
    until: str = Field(min_length=1, description="2h, 1d, ISO 8601 or Unix seconds")
    reason: str = Field("", max_length=q.MAX_REASON)
    who: str = Field("", max_length=255)


def _engine(ctx: Context) -> Engine:
    if ctx.engine is None:
        raise StoreUnavailable("SQL database", "(not connected yet)", "starting")
    engine: Engine = ctx.engine
    return engine


def router(ctx: Context) -> APIRouter:
    r = APIRouter(prefix=PREFIX, tags=["alerts"])

    @r.get("/silences")
    def list_silences(include_expired: bool = False) -> dict[str, Any]:
        rows = q.list_silences(_engine(ctx), include_expired=include_expired)
        return {"silences": [s.as_dict() for s in rows]}

    @r.post("/silences", status_code=201)
    def add_silence(body: SilenceIn) -> dict[str, Any]:
        s = q.add_silence(_engine(ctx), body.pattern, parse_until(body.until),
                          reason=body.reason, who=body.who)
        return s.as_dict()

    @r.delete("/silences/{silence_id}", status_code=204)
    def remove_silence(silence_id: int) -> Response:
        q.remove_silence(_engine(ctx), silence_id)
        return Response(status_code=204)

    @r.get("/alerts/log")
    def alert_log(channel: str | None = None, event_id: str | None = None,
                  limit: int = Query(100, ge=1, le=1000)) -> dict[str, Any]:
        return {"log": q.alert_log_rows(_engine(ctx), channel=channel, event_id=event_id,
                                        limit=limit)}

    return r
