"""Prometheus remote_write 1.0: POST /flux/prometheus/write, a snappy-compressed
WriteRequest.

Status codes as Prometheus acts on them: 2xx is done (204 all stored, 207 some refused, with
the reasons), 4xx is dropped and never retried (bad snappy or protobuf, nothing storable, 401),
5xx is retried with backoff (503 while the write path is full or saturated). Remote write 2.0
bodies are answered 415, which makes Prometheus fall back to 1.0.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response
from starlette.requests import Request

from skyline.services.flux import promwrite
from skyline.services.flux.common import Flux, points_response

PROTOCOL = "prometheus"


def add_routes(router: APIRouter, flux: Flux) -> None:
    @router.post("/flux/prometheus/write", status_code=204, tags=["flux"])
    async def prometheus_write(request: Request) -> Response:
        """A snappy-compressed remote_write 1.0 WriteRequest."""
        ns = flux.namespace(request, PROTOCOL)
        content_type = request.headers.get("content-type", "")
        if "io.prometheus.write.v2" in content_type:
            flux.refuse(PROTOCOL, 415, "unsupported_version",
                        "remote write 2.0 is not supported; send prometheus.WriteRequest (1.0)")
        # the body is snappy whatever Content-Encoding says: the protocol has no other form
        raw = await flux.body(request, PROTOCOL, encoding="snappy")
        try:
            points = await flux.parse(len(raw), promwrite.parse, raw, process=True)
        except promwrite.BadProtobuf as e:
            flux.refuse(PROTOCOL, 400, "bad_protobuf", str(e))
        return points_response(flux.submit(PROTOCOL, points, ns))
