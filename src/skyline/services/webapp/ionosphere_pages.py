"""Ionosphere's pages: teaching from the anomaly page ("Not anomalous - teach", "Real
anomaly"), the profiles page (per metric), one profile with its matches drawn over it and the
"wrong match" / disable / enable / delete buttons. Forms carry the CSRF token (the middleware
checks it on every POST); writes need an admin, as silences do."""

from __future__ import annotations

from typing import Any

import numpy as np
from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from skyline.analysis import ionosphere as ion
from skyline.core.errors import InvalidInput, NotFound
from skyline.core.ionosphere import Profile
from skyline.core.timeutil import iso
from skyline.runtime.context import Context
from skyline.services.webapp import data
from skyline.services.webapp.auth import require_admin
from skyline.services.webapp.models import finite_list
from skyline.services.webapp.templating import render
from skyline.store.sql import get_anomaly
from skyline.store.sql import ionosphere as q

MATCHES_DRAWN = 5
MATCHES_LISTED = 100


def profile_chart(ctx: Context, p: Profile, matches: list[Any]) -> dict[str, Any]:
    """The profile's series, with the newest matches' candidate windows drawn over the part
    of the profile they matched (their own values, aligned at the match's offset)."""
    import time

    t = p.timestamps()
    lines = []
    for m in matches[:MATCHES_DRAWN]:
        try:
            e = get_anomaly(data.engine(ctx), m.event_id)
        except NotFound:
            continue
        wt, wv = e.window_arrays()
        n = int(m.figures.get("points", 0))
        j = int(round(m.figures.get("offset", 0.0) / p.resolution))
        if len(wt) < 2 or n < 2 or j < 0 or j + n > len(t):
            continue
        grid = e.timestamp - p.resolution * np.arange(n - 1, -1, -1)
        v = np.full(len(t), np.nan)
        v[j:j + n] = np.interp(grid, wt, wv)
        lines.append({"label": f"match {m.id} ({iso(m.timestamp)}, r {m.similarity:.2f})",
                      "v": finite_list(v.tolist())})
    return {"t": t.tolist(), "v": finite_list(p.values.tolist()),
            "marks": [],
            "band": None, "no_data_since": None, "now": time.time(), "y_label": "value",
            "label": f"profile #{p.id}", "lines": lines}


def router(ctx: Context) -> APIRouter:
    r = APIRouter(include_in_schema=False)

    @r.post("/anomalies/{event_id}/teach", response_model=None)
    def teach(request: Request, event_id: str,
              label: str = Form(..., max_length=16),
              note: str = Form("", max_length=4000)) -> Response:
        user = require_admin(request)
        try:
            p = ion.teach(data.engine(ctx), ctx.client, event_id, label, user.username,
                          note.strip())
        except InvalidInput as e:
            return render(request, "ionosphere_profiles.html", status=400, error=str(e),
                          profiles=[], metric="")
        ctx.telemetry("webapp").incr("ionosphere_taught")
        return RedirectResponse(f"/anomalies/{event_id}?taught={p.id}", status_code=303)

    @r.get("/ionosphere")
    def profiles(request: Request, metric: str = Query("", max_length=4096)) -> HTMLResponse:
        rows = q.list_profiles(data.engine(ctx), metric or None)
        return render(request, "ionosphere_profiles.html", profiles=rows, metric=metric)

    def profile_page(request: Request, profile_id: int, message: str = "") -> HTMLResponse:
        p = q.get_profile(data.engine(ctx), profile_id)
        matches = q.list_matches(data.engine(ctx), profile_id=p.id, limit=MATCHES_LISTED)
        return render(request, "ionosphere_profile.html", p=p, matches=matches,
                      chart=profile_chart(ctx, p, matches), message=message)

    @r.get("/ionosphere/profiles/{profile_id}")
    def profile(request: Request, profile_id: int) -> HTMLResponse:
        return profile_page(request, profile_id)

    @r.post("/ionosphere/profiles/{profile_id}/disable", response_model=None)
    def disable(request: Request, profile_id: int,
                reason: str = Form("", max_length=4000)) -> Response:
        user = require_admin(request)
        ion.disable(data.engine(ctx), ctx.client, profile_id,
                    reason.strip() or f"disabled by {user.username}")
        return RedirectResponse(f"/ionosphere/profiles/{profile_id}", status_code=303)

    @r.post("/ionosphere/profiles/{profile_id}/enable", response_model=None)
    def enable(request: Request, profile_id: int) -> Response:
        require_admin(request)
        ion.disable(data.engine(ctx), ctx.client, profile_id, enabled=True)
        return RedirectResponse(f"/ionosphere/profiles/{profile_id}", status_code=303)

    @r.post("/ionosphere/profiles/{profile_id}/delete", response_model=None)
    def delete(request: Request, profile_id: int) -> Response:
        require_admin(request)
        metric = q.get_profile(data.engine(ctx), profile_id).metric
        ion.delete(data.engine(ctx), ctx.client, profile_id)
        return RedirectResponse(f"/ionosphere?{_query(metric)}", status_code=303)

    @r.post("/ionosphere/matches/{match_id}/review", response_model=None)
    def review(request: Request, match_id: int, valid: int = Form(..., ge=0, le=1)) -> Response:
        user = require_admin(request)
        engine = data.engine(ctx)
        match = q.get_match(engine, match_id)
        ion.review(engine, ctx.client, match_id, bool(valid), user.username)
        return RedirectResponse(f"/ionosphere/profiles/{match.profile_id}", status_code=303)

    return r


def _query(metric: str) -> str:
    from urllib.parse import urlencode

    return urlencode({"metric": metric})
