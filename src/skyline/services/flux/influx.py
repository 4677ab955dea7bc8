"""InfluxDB line protocol at the paths Telegraf's `influxdb` (v1: /write) and
`influxdb_v2` (/api/v2/write) outputs post to, also under /flux.

Answers as InfluxDB does, which is what Telegraf acts on: 204 when every numeric field is
stored; 400 with "partial write: ..." when some lines or points are refused (the others are
stored; Telegraf drops the batch instead of retrying it for ever); 503 with Retry-After while
the write path is full or saturated. /ping and `CREATE DATABASE` on /query answer as InfluxDB
does, so Telegraf starts without warnings; `db`, `rp`, `org` and `bucket` are ignored (the
namespace comes from the key).
"""

from __future__ import annotations

import time
from urllib.parse import parse_qs

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from starlette.requests import Request

from skyline.services.flux import lineproto
from skyline.services.flux.body import BodyTooLarge, read_body
from skyline.services.flux.common import Flux, buffer_full
from skyline.services.flux.points import Outcome

PROTOCOL = "influx"
_V1_PRECISIONS = ("n", "ns", "u", "us", "µ", "ms", "s", "m", "h")
_V2_PRECISIONS = ("ns", "us", "ms", "s")


def _response(outcome: Outcome) -> Response:
    if outcome.buffer_full:
        return buffer_full()
    if not outcome.refused:
        return Response(status_code=204)
    reasons = ", ".join(f"{r}: {n}" for r, n in sorted(outcome.reasons.items()))
    first = outcome.refused[0]
    where = f"line {first.item}" + (f" ({first.metric})" if first.metric else "")
    verb = "partial write" if outcome.accepted else "nothing written"
    return JSONResponse({"error": f"{verb}: {len(outcome.refused)} refused ({reasons}); "
                         f"first: {where}: {first.reason}"}, status_code=400)


async def _write(flux: Flux, request: Request, allowed: tuple[str, ...],
                 query_params: tuple[str, ...]) -> Response:
    ns = flux.namespace(request, PROTOCOL, query_params=query_params)
    precision = request.query_params.get("precision") or "ns"
    if precision not in allowed:
        flux.refuse(PROTOCOL, 400, "bad_precision",
                    f"precision {precision!r}: use one of {', '.join(allowed)}")
    body = await flux.body(request, PROTOCOL)
    points = await flux.parse(len(body), lineproto.parse, body, precision, time.time(),
                              process=True)
    return _response(flux.submit(PROTOCOL, points, ns))


def add_routes(router: APIRouter, flux: Flux) -> None:
    for prefix in ("", "/flux"):
        @router.post(f"{prefix}/write", status_code=204, tags=["flux"])
        async def write_v1(request: Request) -> Response:
            """InfluxDB 1.x write: line protocol; key as `p`, basic auth password, `key`
            header or `Authorization: Token|Bearer`."""
            return await _write(flux, request, _V1_PRECISIONS, ("p",))

        @router.post(f"{prefix}/api/v2/write", status_code=204, tags=["flux"])
        async def write_v2(request: Request) -> Response:
            """InfluxDB 2.x write: line protocol; key as `Authorization: Token <key>`."""
            return await _write(flux, request, _V2_PRECISIONS, ())

        # compatibility answers for Telegraf's start-up, not part of the API: no schema
        @router.api_route(f"{prefix}/ping", methods=["GET", "HEAD"], status_code=204,
                          include_in_schema=False)
        async def ping() -> Response:
            return Response(status_code=204, headers={"X-Influxdb-Version": "1.8-skyline"})

        @router.api_route(f"{prefix}/query", methods=["GET", "POST"], include_in_schema=False)
        async def query(request: Request) -> Response:
            q = request.query_params.get("q")
            if q is None and request.method == "POST":
                try:
                    form = parse_qs((await read_body(request, 65536)).decode("utf-8", "replace"))
                except BodyTooLarge:
                    form = {}
                q = form["q"][0] if form.get("q") else None
            if q is not None and q.strip().upper().startswith("CREATE DATABASE"):
                return JSONResponse({"results": [{"statement_id": 0}]})
            return JSONResponse({"error": "Skyline flux accepts writes only"}, status_code=400)
