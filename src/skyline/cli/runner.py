"""Running components: one asyncio loop, shared context, clean stop on SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import sys
import time
from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter
from sqlalchemy import exc as sa_exc

from skyline import __version__
from skyline.cli.components import REGISTRY, Component
from skyline.cli.supervisor import STOP_GRACE, inherited_sockets, supervise, watch_stop_pipe
from skyline.core.errors import PortInUse, StoreUnavailable
from skyline.runtime.context import Backoff, Context, sleep_or_stop
from skyline.settings import Settings
from skyline.settings.show import mask_url
from skyline.store.redis_client import CONNECTION_ERRORS, open_redis, refuse_on_cluster

log = logging.getLogger(__name__)

STOP_TIMEOUT = 15  # seconds components get to stop, beyond the listeners' drain_timeout
MIGRATION_RACES = 5  # failed migrations at start retried (another process migrating at once)


def bind_ports(settings: Settings, components: Sequence[Component]) -> dict[str, socket.socket]:
    """Bind every listening port before anything starts, so a taken port fails the start
    naming its setting."""
    socks: dict[str, socket.socket] = {}
    try:
        for comp in components:
            for p in comp.ports:
                port = p.port(settings)
                if port == 0:
                    continue
                host = p.host(settings)
                family = socket.AF_INET6 if ":" in host else socket.AF_INET
                sock = socket.socket(family, p.kind)
                if p.kind == socket.SOCK_STREAM:
                    # only for TCP: on a UDP socket SO_REUSEADDR would let us share a port
                    # another process already receives on, instead of failing the start
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    sock.bind((host, port))
                    if p.kind == socket.SOCK_STREAM:
                        sock.listen(1024)
                except OSError as e:
                    sock.close()
                    raise PortInUse(p.setting, host, port, e.strerror or str(e)) from None
                sock.setblocking(False)
                socks[p.setting] = sock
    except BaseException:
        for s in socks.values():
            s.close()
        raise
    return socks


async def _connect_sql(ctx: Context) -> None:
    """Connect and migrate the event store, retrying with backoff until it answers."""
    from skyline.store.sql import db

    url = ctx.settings.database_url
    backoff = Backoff("SQL database", mask_url(url), ctx.settings.redis.retry_max_backoff)
    raced = 0
    while not ctx.stopping.is_set():
        try:
            engine = await asyncio.to_thread(db.make_engine, url, ctx.settings.database.pool_size)
            await asyncio.to_thread(db.check, engine)
            if ctx.settings.database.upgrade_on_start:
                await asyncio.to_thread(db.upgrade, engine)
        except StoreUnavailable as e:
            if await sleep_or_stop(ctx.stopping, backoff.failed(e)):
                return
            continue
        except sa_exc.DBAPIError as e:
            # components started together on several hosts all migrate at start; one that
            # meets a table another just created waits and looks again (then at head: done)
            raced += 1
            if raced > MIGRATION_RACES:
                raise
            log.warning("migrating the SQL database failed (%s); another Skyline process "
                        "may be migrating it now: trying again",
                        (str(e.orig).splitlines() or [type(e.orig).__name__])[0])
            engine.dispose()
            if await sleep_or_stop(ctx.stopping, 0.5 * raced):
                return
            continue
        backoff.succeeded()
        ctx.engine = engine
        ctx.sql_ready.set()
        return


def _flush_telemetry(ctx: Context, with_series: bool) -> None:
    s = ctx.settings.telemetry
    now = time.time()
    telemetries = list(ctx.telemetries.values())
    # take every component's series points first, so an outage leaves no gap in any of them
    if with_series:
        for tel in telemetries:
            for name, ts, value in tel.series_points(s.series_prefix, now):
                ctx.points.add(name, ts, value)
    for tel in telemetries:
        tel.flush(ctx.client, s.heartbeat_ttl)
    ctx.points.flush()


def _flush_points(ctx: Context) -> None:
    ctx.points.flush()


async def _points_loop(ctx: Context) -> None:
    """Flush accepted points to the hot store at least every ingest.flush_interval, and keep
    the cardinality guard's view of the metric index fresh."""
    s = ctx.settings
    backoff = Backoff("Redis", ctx.redis.url, s.redis.retry_max_backoff)
    loop = asyncio.get_running_loop()
    next_refresh = 0.0
    # on after `stopping` until the components are done: draining listeners still submit
    while not ctx.components_done.is_set():
        started = loop.time()
        try:
            if ctx.has_ingest and started >= next_refresh:
                names = await asyncio.to_thread(ctx.store.names)
                ctx.ingest.known.replace(names)
                next_refresh = started + s.ingest.known_metrics_refresh
            await asyncio.to_thread(_flush_points, ctx)
            backoff.succeeded()
            wait = s.ingest.flush_interval - (loop.time() - started)
        except CONNECTION_ERRORS as e:
            wait = min(s.ingest.flush_interval, backoff.failed(e))
        if ctx.has_ingest:
            ctx.ingest.after_flush()
        if await sleep_or_stop(ctx.components_done, wait):
            return


async def _telemetry_loop(ctx: Context) -> None:
    s = ctx.settings.telemetry
    backoff = Backoff("Redis", ctx.redis.url, ctx.settings.redis.retry_max_backoff)
    next_series = time.monotonic() + s.series_interval
    while not ctx.stopping.is_set():
        with_series = time.monotonic() >= next_series
        if with_series:
            next_series += s.series_interval
        try:
            await asyncio.to_thread(_flush_telemetry, ctx, with_series)
            backoff.succeeded()
            wait = s.flush_interval
        except CONNECTION_ERRORS as e:
            wait = min(s.flush_interval, backoff.failed(e))
        if await sleep_or_stop(ctx.stopping, wait):
            return


def _banner(ctx: Context, components: Sequence[Component], socks: dict[str, socket.socket]) -> str:
    s = ctx.settings
    lines = [f"Skyline {__version__} is running"]
    if "WEBAPP_PORT" in socks:
        host = s.WEBAPP_IP if s.WEBAPP_IP not in ("0.0.0.0", "::") else "127.0.0.1"
        port = socks["WEBAPP_PORT"].getsockname()[1]
        lines.append(f"  web UI, API, flux   http://{host}:{port}/")
    for setting, sock in socks.items():
        if setting != "WEBAPP_PORT":
            lines.append(f"  {setting:<19} {sock.getsockname()[1]}")
    lines += [
        f"  data directory      {s.data_dir}",
        f"  hot store           {'embedded Redis ' if ctx.redis.embedded else 'Redis '}{ctx.redis.url}",
        f"  event store         {mask_url(s.database_url)}",
        f"  components          {', '.join(c.name for c in components)}",
        "Press Ctrl-C to stop.",
    ]
    return "\n".join(lines)


async def _main(settings: Settings, components: Sequence[Component], own_embedded: bool,
                config: str | None = None) -> int:
    inherited = inherited_sockets()
    child = inherited is not None  # a supervised component's process: the parent bound
    socks = inherited if inherited is not None else bind_ports(settings, components)
    handle = await asyncio.to_thread(open_redis, settings, wait=True)
    if handle.cluster is not None:
        for comp in components:
            if not comp.cluster_ready:
                for sock in socks.values():
                    sock.close()
                await asyncio.to_thread(handle.close, stop_embedded=False)
                refuse_on_cluster(handle, f"the {comp.name} component")
    ctx = Context(settings, handle)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, ctx.stopping.set)
    if child:
        watch_stop_pipe(ctx.stopping)
    routers: list[APIRouter] = []
    for comp in components:
        if comp.routers is not None:
            routers.extend(comp.routers(ctx))
    if not child:
        print(_banner(ctx, components, socks), flush=True)

    tasks: dict[asyncio.Task[Any], str] = {
        asyncio.create_task(_telemetry_loop(ctx), name="telemetry"): "telemetry",
        asyncio.create_task(_points_loop(ctx), name="points"): "points",
    }
    if not child:  # a child serves one component that needs no SQL (the parent migrates)
        tasks[asyncio.create_task(_connect_sql(ctx), name="sql")] = "sql"
    for comp in components:
        if comp.isolated and len(components) > 1:
            own = {p.setting: socks[p.setting] for p in comp.ports if p.setting in socks}
            job = supervise(ctx, comp.name, own, config)
        else:
            job = comp.run(ctx, socks, routers)
        tasks[asyncio.create_task(job, name=comp.name)] = comp.name
    stop_wait: asyncio.Task[Any] = asyncio.create_task(ctx.stopping.wait())
    exit_code = 0
    pending: set[asyncio.Task[Any]] = set(tasks)
    while not ctx.stopping.is_set():
        done, pending = await asyncio.wait(pending | {stop_wait},
                                           return_when=asyncio.FIRST_COMPLETED)
        for t in done:
            if t is stop_wait:
                continue
            name = tasks[t]
            if t.cancelled():
                continue
            err = t.exception()
            if err is not None:
                log.error("component %s failed: %s", name, err, exc_info=err)
                exit_code = 1
                ctx.stopping.set()
            elif name not in ("sql",):
                log.info("component %s finished", name)
        pending.discard(stop_wait)
    log.info("stopping: finishing current work and flushing buffers")
    points = next(t for t, name in tasks.items() if name == "points")
    running = pending - {points}
    if running:
        # a supervised child may take its drain time and the supervisor's grace on top
        timeout = settings.horizon.drain_timeout + STOP_GRACE + STOP_TIMEOUT
        _done, still = await asyncio.wait(running, timeout=timeout)
        for t in still:
            log.warning("component %s did not stop within %d s; cancelling it", tasks[t],
                        timeout)
            t.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*still, return_exceptions=True)
    ctx.components_done.set()
    if not points.done():
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(points, return_exceptions=True)
    try:
        await asyncio.to_thread(_flush_telemetry, ctx, True)
    except CONNECTION_ERRORS as e:
        log.error("could not flush %d buffered points before exit: Redis unreachable at %s: %s",
                  len(ctx.points), ctx.redis.url, e)
        exit_code = exit_code or 1
    for sock in socks.values():
        sock.close()
    if ctx.engine is not None:
        ctx.engine.dispose()
    started_here = handle.embedded is not None and handle.embedded.started_here
    await asyncio.to_thread(handle.close, stop_embedded=own_embedded or started_here)
    print("Skyline stopped.", flush=True)
    return exit_code


def with_needs(names: Sequence[str]) -> list[Component]:
    """The named components and those they cannot work without (`skyline serve flux` also
    serves the web app its routes live on), each once, needs first."""
    out: dict[str, Component] = {}

    def add(name: str) -> None:
        comp = REGISTRY[name]
        for need in comp.needs:
            add(need)
        out.setdefault(name, comp)

    for name in names:
        add(name)
    return list(out.values())


def run_components(settings: Settings, names: Sequence[str] | None, *,
                   own_embedded: bool, config: str | None = None) -> int:
    """Run the named components (all registered when None) until SIGINT/SIGTERM; when there
    are several, the isolated ones run in supervised processes of their own (`config`, the
    settings file, is handed to them)."""
    components = with_needs(names or list(REGISTRY))
    try:
        return asyncio.run(_main(settings, components, own_embedded, config))
    except KeyboardInterrupt:  # a second Ctrl-C during shutdown
        print("Skyline stopped (interrupted).", file=sys.stderr)
        return 130
