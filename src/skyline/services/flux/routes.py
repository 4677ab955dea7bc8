"""The flux routers the web app mounts (through the component registry)."""

from __future__ import annotations

from fastapi import APIRouter

from skyline.runtime.context import Context
from skyline.services.flux import influx, json_api, otlp, remote_write
from skyline.services.flux.common import Flux


def routers(ctx: Context) -> list[APIRouter]:
    flux = Flux(ctx)
    router = APIRouter()
    for protocol in (json_api, remote_write, influx, otlp):
        protocol.add_routes(router, flux)
    return [router]
