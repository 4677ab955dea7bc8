"""/api/v1 for Ionosphere (docs/ionosphere.md): feedback on an anomaly (which teaches a
profile), profiles (list, get, disable/enable, delete), matches (list, review), and a dry-run
check of a series against a metric's profiles. Writes need an admin, as silences do."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel, Field

from skyline.analysis import ionosphere as ion
from skyline.core.ionosphere import Profile
from skyline.runtime.context import Context
from skyline.services.webapp.alerts_api import _ERROR, _engine
from skyline.services.webapp.auth import require_admin
from skyline.store.sql import ionosphere as q

PREFIX = "/api/v1"
MAX_ID = 2**31 - 1
MAX_CHECK_POINTS = 100_000
ProfileId = Path(ge=1, le=MAX_ID)
_ADMIN: dict[int | str, dict[str, Any]] = {403: {"description": "the user is not an admin", **_ERROR}}
_MISSING: dict[int | str, dict[str, Any]] = {404: {"description": "no such anomaly, profile or match", **_ERROR}}
_BAD: dict[int | str, dict[str, Any]] = {400: {"description": "the request cannot be used", **_ERROR}}


class FeedbackIn(BaseModel):
    label: Literal["not_anomalous", "anomalous"] = Field(
        description="not_anomalous: teach that this is normal (repeats are vetoed); "
        "anomalous: a real anomaly (repeats are always confirmed)")
    note: str = Field("", max_length=4000)
    who: str = Field("", max_length=255, description="ignored when logged in")


class ProfileOut(BaseModel):
    id: int
    metric: str
    label: str
    start: float
    end: float
    resolution: float
    points: int
    anchor: float = Field(description="the taught anomaly's timestamp")
    event_id: str | None
    who: str
    note: str
    created: float
    enabled: bool
    validated: bool
    matched_count: int
    last_matched: float | None
    parent_id: int | None
    features: dict[str, float]
    features_version: int
    disabled_reason: str


class ProfileSeriesOut(ProfileOut):
    timestamps: list[float]
    values: list[float]


class ProfilesOut(BaseModel):
    profiles: list[ProfileOut] = Field(description="newest first")


class FeedbackOut(BaseModel):
    id: int
    event_id: str
    metric: str
    label: str
    who: str
    note: str
    created: float
    profile_id: int | None


class MatchOut(BaseModel):
    id: int
    profile_id: int
    metric: str
    event_id: str
    timestamp: float
    method: str
    similarity: float = Field(description="the shape's correlation")
    figures: dict[str, float]
    applied: bool = Field(description="false: recorded in shadow mode, the candidate alerted")
    created: float
    validated: bool | None = Field(description="null: not reviewed; false: a wrong match")
    reviewed_by: str


class MatchesOut(BaseModel):
    matches: list[MatchOut] = Field(description="newest candidate first")


class EventFeedbackOut(BaseModel):
    event_id: str
    feedback: list[FeedbackOut]
    matches: list[MatchOut]


class DisableIn(BaseModel):
    reason: str = Field("", max_length=4000)


class ChangedOut(BaseModel):
    profile_ids: list[int] = Field(description="the profiles changed")


class ReviewIn(BaseModel):
    valid: bool = Field(description="false: a wrong match; its profile (and those learnt "
                        "from it) is disabled")


class CheckIn(BaseModel):
    metric: str = Field(min_length=1, max_length=4096)
    timestamps: list[float] = Field(max_length=MAX_CHECK_POINTS)
    values: list[float] = Field(max_length=MAX_CHECK_POINTS)
    at: float | None = Field(None, description="the candidate's time (default: the last "
                             "timestamp)")


class CheckMatchOut(BaseModel):
    label: str
    profile_id: int
    correlation: float
    window_hours: float
    area_diff: float
    low: float
    high: float


class CheckOut(BaseModel):
    metric: str
    profiles: int = Field(description="enabled profiles checked")
    verdict: Literal["confirm", "veto", "none"] = Field(
        description="what the stage would answer in mode on")
    matches: list[CheckMatchOut]


def profile_dict(p: Profile) -> dict[str, Any]:
    return p.summary()


def _who(request: Request, given: str) -> str:
    user = require_admin(request)
    return user.username if user.via != "open" else (given or user.username)


def router(ctx: Context) -> APIRouter:
    r = APIRouter(prefix=PREFIX, tags=["ionosphere"], responses={
        503: {"description": "Redis or the SQL database is unreachable", **_ERROR}})

    @r.post("/anomalies/{event_id}/feedback", status_code=201, response_model=ProfileOut,
            responses={**_ADMIN, **_MISSING, **_BAD})
    def feedback(request: Request, body: FeedbackIn,
                 event_id: str = Path(max_length=64)) -> dict[str, Any]:
        """Teach from an anomaly: its stored window becomes a profile with this label, live
        at the stage's next candidate."""
        who = _who(request, body.who)
        p = ion.teach(_engine(ctx), ctx.client, event_id, body.label, who, body.note)
        return profile_dict(p)

    @r.get("/anomalies/{event_id}/feedback", response_model=EventFeedbackOut)
    def event_feedback(event_id: str = Path(max_length=64)) -> dict[str, Any]:
        """An anomaly's feedback and the profile matches recorded for it."""
        engine = _engine(ctx)
        return {"event_id": event_id,
                "feedback": [vars(f) for f in q.feedback_for(engine, event_id)],
                "matches": [m.summary() for m in q.list_matches(engine, event_id=event_id)]}

    @r.get("/ionosphere/profiles", response_model=ProfilesOut)
    def profiles(metric: str | None = Query(None, max_length=4096),
                 enabled: bool | None = None,
                 limit: int = Query(200, ge=1, le=1000)) -> dict[str, Any]:
        rows = q.list_profiles(_engine(ctx), metric, enabled=enabled, limit=limit)
        return {"profiles": [profile_dict(p) for p in rows]}

    @r.get("/ionosphere/profiles/{profile_id}", response_model=ProfileSeriesOut,
           responses=_MISSING)
    def profile(profile_id: int = ProfileId) -> dict[str, Any]:
        p = q.get_profile(_engine(ctx), profile_id)
        return {**profile_dict(p), "timestamps": p.timestamps().tolist(),
                "values": [float(x) for x in p.values]}

    @r.post("/ionosphere/profiles/{profile_id}/disable", response_model=ChangedOut,
            responses={**_ADMIN, **_MISSING})
    def disable(request: Request, body: DisableIn,
                profile_id: int = ProfileId) -> dict[str, Any]:
        """Disable a profile and those learnt from it."""
        who = _who(request, "")
        reason = body.reason or f"disabled by {who}"
        return {"profile_ids": ion.disable(_engine(ctx), ctx.client, profile_id, reason)}

    @r.post("/ionosphere/profiles/{profile_id}/enable", response_model=ChangedOut,
            responses={**_ADMIN, **_MISSING})
    def enable(request: Request, profile_id: int = ProfileId) -> dict[str, Any]:
        _who(request, "")
        return {"profile_ids": ion.disable(_engine(ctx), ctx.client, profile_id,
                                           enabled=True)}

    @r.delete("/ionosphere/profiles/{profile_id}", status_code=204, response_class=Response,
              responses={**_ADMIN, **_MISSING})
    def delete(request: Request, profile_id: int = ProfileId) -> Response:
        _who(request, "")
        ion.delete(_engine(ctx), ctx.client, profile_id)
        return Response(status_code=204)

    @r.get("/ionosphere/matches", response_model=MatchesOut)
    def matches(profile_id: int | None = Query(None, ge=1, le=MAX_ID),
                metric: str | None = Query(None, max_length=4096),
                event_id: str | None = Query(None, max_length=64),
                limit: int = Query(200, ge=1, le=1000)) -> dict[str, Any]:
        rows = q.list_matches(_engine(ctx), profile_id=profile_id, metric=metric,
                              event_id=event_id, limit=limit)
        return {"matches": [m.summary() for m in rows]}

    @r.post("/ionosphere/matches/{match_id}/review", response_model=ChangedOut,
            responses={**_ADMIN, **_MISSING})
    def review(request: Request, body: ReviewIn,
               match_id: int = Path(ge=1, le=MAX_ID)) -> dict[str, Any]:
        """Say a match was right or wrong; the profile ids a wrong one disabled."""
        who = _who(request, "")
        return {"profile_ids": ion.review(_engine(ctx), ctx.client, match_id, body.valid, who)}

    @r.post("/ionosphere/check", response_model=CheckOut, responses=_BAD)
    def check(body: CheckIn) -> dict[str, Any]:
        """A dry run: the series (its last point the candidate) against the metric's
        enabled profiles, with the stage's rules. Nothing is recorded."""
        return check_dict(ctx, body.metric, body.timestamps, body.values, body.at)

    return r


def check_dict(ctx: Context, metric: str, timestamps: Any, values: Any,
               at: float | None) -> dict[str, Any]:
    config = ion.IonosphereConfig.from_settings(ctx.settings)
    ps = q.list_profiles(_engine(ctx), metric, enabled=True, limit=100_000)
    return {"metric": metric, **ion.dry_run(ps, timestamps, values, at, config.rules)}
