"""Serving the web app under uvicorn, inside Skyline's own event loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable, Iterator, Sequence

import sqlalchemy as sa
import uvicorn
from fastapi import APIRouter

from skyline.core.errors import SkylineError
from skyline.runtime.consume import wait_for_sql
from skyline.runtime.context import Context
from skyline.services.webapp.app import create_app
from skyline.services.webapp.bootstrap import FIRST_ADMIN, sync_users

log = logging.getLogger(__name__)


class _Server(uvicorn.Server):
    # Skyline's runner owns SIGINT/SIGTERM and stops every component together
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def _users(ctx: Context, announce: Callable[[str], None] | None,
                 ready: asyncio.Event) -> None:
    """Once SQL is reachable: the settings' users, and a first admin when there is none."""
    if not await wait_for_sql(ctx) or ctx.engine is None:
        return
    try:
        password = await asyncio.to_thread(sync_users, ctx.engine, ctx.settings)
    except (SkylineError, sa.exc.SQLAlchemyError) as e:
        log.error("could not set up the web users: %s", str(e).splitlines()[0])
        return
    finally:
        ready.set()  # logins go on with the users there are, whatever happened
    if password is None:
        return
    message = (f"Created web user '{FIRST_ADMIN}' with password {password} (shown only "
               f"now): log in at {ctx.settings.public_url}/login and change it with "
               f"`skyline user passwd {FIRST_ADMIN}`.")
    log.warning("%s", message)
    if announce is not None:
        announce(message)


async def run(ctx: Context, sock: socket.socket, routers: Sequence[APIRouter] = (),
              announce: Callable[[str], None] | None = None) -> None:
    """Serve the web app on `sock`; `announce` shows people what they must see once (the
    first admin's password) beyond the log."""
    if not ctx.settings.WEBAPP_AUTH_ENABLED:
        log.warning("WEBAPP_AUTH_ENABLED is false: anyone who can reach %s:%s can read and "
                    "change everything in this Skyline, with no login", ctx.settings.WEBAPP_IP,
                    sock.getsockname()[1])
    app = create_app(ctx, routers)
    ready = app.state.auth.users_ready = asyncio.Event()
    users = asyncio.create_task(_users(ctx, announce, ready), name="webapp-users")
    config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="off",
                            timeout_graceful_shutdown=5)
    server = _Server(config)
    ctx.telemetry("webapp").incr("starts")

    async def stop_when_asked() -> None:
        await ctx.stopping.wait()
        server.should_exit = True

    watcher = asyncio.create_task(stop_when_asked())
    try:
        await server.serve(sockets=[sock])
    finally:
        watcher.cancel()
        users.cancel()
