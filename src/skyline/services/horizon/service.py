"""Horizon: every TCP/UDP listener the settings turn on, in the runner's event loop.

The runner binds the sockets before anything starts (a taken port fails the start naming its
setting) and hands them over by setting name; a listener whose port is 0 gets no socket.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Coroutine
from typing import Any

from skyline.ingest import plaintext
from skyline.ingest.batch import Batch
from skyline.runtime.context import Context
from skyline.services.horizon import graphite_pickle, msgpack_udp
from skyline.services.horizon.listeners import TcpListener, UdpListener
from skyline.services.horizon.statsd import Aggregator

log = logging.getLogger(__name__)

# the settings choosing each listener's port, which are also the keys of `socks`
PLAINTEXT_TCP = "horizon.plaintext_port"
PLAINTEXT_UDP = "horizon.plaintext_udp_port"
PICKLE = "PICKLE_PORT"
MSGPACK = "UDP_PORT"
STATSD = "horizon.statsd_port"


async def run(ctx: Context, socks: dict[str, socket.socket]) -> None:
    s = ctx.settings
    h = s.horizon
    ctx.telemetry("horizon").incr("starts")
    jobs: list[Coroutine[Any, Any, None]] = []
    if PLAINTEXT_TCP in socks:
        jobs.append(TcpListener(
            ctx, socks[PLAINTEXT_TCP], name="plaintext_tcp", protocol="plaintext", unit="lines",
            new_reader=lambda: plaintext.LineReader(h.max_line_bytes),
            max_connections=h.max_connections,
        ).serve())
    if PLAINTEXT_UDP in socks:
        def plaintext_datagram(data: bytes, batch: Batch) -> None:
            plaintext.parse_datagram(data, batch, h.max_line_bytes)

        jobs.append(UdpListener(ctx, socks[PLAINTEXT_UDP], name="plaintext_udp",
                                protocol="plaintext", handle=plaintext_datagram,
                                unit="lines").serve())
    if PICKLE in socks:
        jobs.append(TcpListener(
            ctx, socks[PICKLE], name="pickle", protocol="pickle", unit="frames",
            new_reader=lambda: graphite_pickle.FrameReader(h.max_frame_bytes),
            max_connections=h.max_connections,
        ).serve())
    if MSGPACK in socks:
        jobs.append(UdpListener(ctx, socks[MSGPACK], name="msgpack", protocol="msgpack",
                                handle=msgpack_udp.parse_datagram).serve())
    if STATSD in socks:
        jobs.append(_statsd(ctx, socks[STATSD]))
    if not jobs:
        log.warning("horizon: every listener's port is 0; nothing to do")
    else:
        log.info("horizon listening: %s", ", ".join(
            f"{k}={socks[k].getsockname()[1]}" for k in
            (PLAINTEXT_TCP, PLAINTEXT_UDP, PICKLE, MSGPACK, STATSD) if k in socks))
    await asyncio.gather(ctx.stopping.wait(), *jobs)


async def _statsd(ctx: Context, sock: socket.socket) -> None:
    st = ctx.settings.statsd
    agg = Aggregator(prefix=st.prefix, percentiles=st.percentiles, delete_idle=st.delete_idle,
                     forget_after_flushes=max(1, round(st.forget_after / st.flush_interval)),
                     max_names=st.max_names)
    tel = ctx.telemetry("horizon")

    def handle(data: bytes, batch: Batch) -> None:
        batch.units += agg.feed(data, batch.rejected)

    def flush(interval: float) -> None:
        names, values = agg.flush(interval)
        tel.incr("statsd_flushes")
        if names:
            tel.incr("statsd_metrics", len(names))
            stamp = float(int(time.time()))
            ctx.ingest.submit("statsd", names, [stamp] * len(names), values)

    listener = UdpListener(ctx, sock, name="statsd", protocol="statsd", handle=handle,
                           unit="lines")
    reader = asyncio.create_task(listener.serve())
    loop = asyncio.get_running_loop()
    last = loop.time()
    next_flush = last + st.flush_interval
    try:
        while True:
            try:
                await asyncio.wait_for(ctx.stopping.wait(), max(0.0, next_flush - loop.time()))
                break
            except TimeoutError:
                pass
            flush(st.flush_interval)
            last = loop.time()
            # stay on the grid; after a stall, skip the missed flushes rather than bunch them
            next_flush += st.flush_interval
            if next_flush <= last:
                next_flush = last + st.flush_interval
    finally:
        if not reader.done():
            reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
        # what arrived since the last flush is not lost at shutdown; its rates use the time
        # it really covers
        flush(max(loop.time() - last, 1e-3))
