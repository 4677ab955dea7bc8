"""Upstream flux's JSON API: GET /flux/metric_data and POST /flux/metric_data_post.

Two departures from upstream, on purpose: a POST with some refused metrics stores the others
and answers 207 with a reason per refused metric (upstream refused the whole POST), and a POST
over FLUX_MAX_METRICS_PER_POST answers 413 (upstream 400).
"""

from __future__ import annotations

import time

from fastapi import APIRouter
from fastapi.responses import Response
from starlette.requests import Request

from skyline.services.flux import jsonbody
from skyline.services.flux.auth import credential
from skyline.services.flux.common import Flux, points_response

PROTOCOL = "json"


def add_routes(router: APIRouter, flux: Flux) -> None:
    @router.get("/flux/metric_data", status_code=204, tags=["flux"])
    async def metric_data(request: Request) -> Response:
        """One point from query parameters: metric, value, timestamp (optional), key."""
        ns = flux.namespace(request, PROTOCOL, query_params=("key",))
        q = request.query_params
        if not q.get("metric") or q.get("value") is None:
            flux.refuse(PROTOCOL, 400, "bad_request", "metric and value are required")
        item = {"metric": q["metric"], "value": q["value"], "timestamp": q.get("timestamp")}
        points = jsonbody.parse_items([item], time.time())
        return points_response(flux.submit(PROTOCOL, points, ns))

    @router.post("/flux/metric_data_post", status_code=204, tags=["flux"])
    async def metric_data_post(request: Request) -> Response:
        """{"key": K, "metrics": [{"metric", "timestamp", "value"}, ...]} or one metric."""
        # the key may be in the body (upstream); one sent in a header or the query string is
        # checked before the body is read
        key = credential(request, ("key",))
        ns = flux.namespace(request, PROTOCOL, key) if key is not None else None
        # a body read before its key is known is kept small: an unknown client must not make
        # us read, decompress and parse megabytes to find out it has no key
        limit = None if ns is not None or flux.keys.anonymous else \
            flux.settings.flux.max_preauth_body_bytes
        raw = await flux.body(request, PROTOCOL, limit=limit)
        try:
            jsonbody.check_size(raw, flux.settings.FLUX_MAX_METRICS_PER_POST)
            body_key, points = await flux.parse(
                len(raw), jsonbody.parse_post, raw, flux.settings.FLUX_MAX_METRICS_PER_POST,
                time.time(), process=True)
        except jsonbody.BadBody as e:
            if ns is None:  # a client without a good key hears 401, not what is in the body
                flux.namespace(request, PROTOCOL, e.key)
            flux.refuse(PROTOCOL, 400, e.reason, str(e))
        except jsonbody.TooMany as e:
            if ns is None:
                flux.namespace(request, PROTOCOL, e.key)
            flux.refuse(PROTOCOL, 413, "too_many_metrics", str(e))
        if ns is None:
            ns = flux.namespace(request, PROTOCOL, body_key)
        return points_response(flux.submit(PROTOCOL, points, ns))
