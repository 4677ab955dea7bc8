"""OTLP/HTTP metrics: POST /v1/metrics (and /flux/otlp/v1/metrics), as the OpenTelemetry
SDKs' and Collector's OTLP HTTP exporters send it: protobuf (application/x-protobuf) or JSON
(application/json), optionally gzip.

Answers as the OTLP specification asks: 200 with an ExportMetricsServiceResponse (in the
request's encoding) whose partial_success counts the refused data points; 400 for a body that
does not decode (not retried); 503 with Retry-After while the write path is full (retried).
"""

from __future__ import annotations

import time

from fastapi import APIRouter
from fastapi.responses import Response
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceResponse,
)
from starlette.requests import Request

from skyline.services.flux import otlpconv
from skyline.services.flux.common import Flux, buffer_full
from skyline.services.flux.points import Outcome

PROTOCOL = "otlp"
PROTOBUF = "application/x-protobuf"
JSON = "application/json"


def _response(outcome: Outcome, as_json: bool) -> Response:
    if outcome.buffer_full:
        return buffer_full()
    reply = ExportMetricsServiceResponse()
    if outcome.refused:
        reasons = ", ".join(f"{r}: {n}" for r, n in sorted(outcome.reasons.items()))
        reply.partial_success.rejected_data_points = len(outcome.refused)
        reply.partial_success.error_message = f"refused data points ({reasons})"
    if as_json:
        return Response(json_format.MessageToJson(reply, indent=None), media_type=JSON)
    return Response(reply.SerializeToString(), media_type=PROTOBUF)


class Otlp:
    def __init__(self, flux: Flux):
        self.flux = flux
        s = flux.settings.flux
        self.resource_keys = frozenset(s.otlp_resource_attributes)
        self.state = otlpconv.Cumulative(s.otlp_max_series, time.time_ns())

    async def export(self, request: Request) -> Response:
        flux = self.flux
        ns = flux.namespace(request, PROTOCOL)
        content_type = request.headers.get("content-type", PROTOBUF).split(";")[0].strip()
        if content_type not in (PROTOBUF, JSON):
            flux.refuse(PROTOCOL, 415, "bad_content_type",
                        f"Content-Type {content_type!r}: use {PROTOBUF} or {JSON}")
        body = await flux.body(request, PROTOCOL)
        as_json = content_type == JSON
        try:
            req = await flux.parse(len(body), otlpconv.parse_json if as_json else otlpconv.parse,
                                   body)
        except (DecodeError, json_format.ParseError, ValueError, RecursionError) as e:
            flux.refuse(PROTOCOL, 400, "bad_json" if as_json else "bad_protobuf",
                        f"the body is not an OTLP ExportMetricsServiceRequest: {e}")
        points = await flux.parse(len(body), otlpconv.convert, req, self.state,
                                  self.resource_keys)
        flux.telemetry.gauge("otlp_cumulative_series", len(self.state))
        return _response(flux.submit(PROTOCOL, points, ns), as_json)


def add_routes(router: APIRouter, flux: Flux) -> None:
    otlp = Otlp(flux)
    for path in ("/v1/metrics", "/flux/otlp/v1/metrics"):
        router.add_api_route(path, otlp.export, methods=["POST"], tags=["flux"],
                             summary="OTLP/HTTP metrics export")
