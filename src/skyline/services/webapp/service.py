"""Serving the web app under uvicorn, inside Skyline's own event loop."""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import Iterator, Sequence

import uvicorn
from fastapi import APIRouter

from skyline.runtime.context import Context
from skyline.services.webapp.app import create_app

log = logging.getLogger(__name__)


class _Server(uvicorn.Server):
    # Skyline's runner owns SIGINT/SIGTERM and stops every component together
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def run(ctx: Context, sock: socket.socket, routers: Sequence[APIRouter] = ()) -> None:
    app = create_app(ctx, routers)
    config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="off",
                            timeout_graceful_shutdown=5)
    server = _Server(config)
    ctx.telemetry("webapp").incr("starts")

    async def stop_when_asked() -> None:
        await ctx.stopping.wait()
        server.should_exit = True

    import asyncio

    watcher = asyncio.create_task(stop_when_asked())
    try:
        await server.serve(sockets=[sock])
    finally:
        watcher.cancel()
