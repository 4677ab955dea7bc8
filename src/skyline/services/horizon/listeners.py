"""asyncio listeners feeding the shared write path.

TCP: one Protocol per connection, any number of connections at once. Each read is parsed
whole and submitted at once; while the write path is paused (its buffer above the high
watermark) every connection stops reading until it drains, so senders block instead of
losing data. UDP: a reader drains every waiting datagram per wake-up and submits them as one
batch; datagrams that arrive while the write path is paused are dropped and counted
(`rejected_<protocol>_overload`), never silently.

A parser error never escapes: bad input is counted by reason (`ctx.ingest.reject`), and an
unexpected exception is logged with its traceback, counted and ends only that connection.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable
from typing import Protocol

from skyline.runtime.context import Context
from skyline.services.horizon.batch import Batch

log = logging.getLogger(__name__)

OVERLOAD = "overload"
TOO_MANY_CONNECTIONS = "too_many_connections"
INTERNAL_ERROR = "internal_error"
_MAX_DATAGRAM = 65535
_DATAGRAMS_PER_WAKE = 2000  # bounds one callback's time, so other listeners get their turn


class StreamReader(Protocol):
    """A connection's parser: `feed` parses what it can into the batch and returns False
    when the connection must be closed (saying why in `refusal`); `finish` handles what is
    left at end of stream."""

    refusal: str | None

    def feed(self, data: bytes, batch: Batch) -> bool | None: ...

    def finish(self, batch: Batch) -> None: ...


class Throttled:
    """Logs a warning at most once per `every` seconds, with how many were held back."""

    def __init__(self, every: float = 60.0):
        self.every = every
        self._next = 0.0
        self._held = 0

    def warning(self, msg: str, *args: object) -> None:
        now = time.monotonic()
        if now < self._next:
            self._held += 1
            return
        if self._held:
            msg += f" ({self._held} more like it in the last {self.every:.0f} s)"
        log.warning(msg, *args)
        self._held = 0
        self._next = now + self.every


def submit(ctx: Context, protocol: str, batch: Batch) -> None:
    if batch.rejected:
        for reason, n in batch.rejected.items():
            ctx.ingest.reject(protocol, reason, n)
    if batch.names:
        stamps, values = batch.arrays()
        ctx.ingest.submit(protocol, batch.names, stamps, values)


class _Connection(asyncio.Protocol):
    def __init__(self, listener: TcpListener):
        self.listener = listener
        self.reader = listener.new_reader()
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self.paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        self.listener.opened(self)

    def data_received(self, data: bytes) -> None:
        lst = self.listener
        batch = Batch()
        try:
            keep_open = self.reader.feed(data, batch) is not False
        except Exception:  # a parser bug must not take the listener down: log it, end this one
            log.exception("%s: unexpected error parsing data from %s; closing the connection",
                          lst.name, self.peer)
            batch.reject(INTERNAL_ERROR)
            keep_open = False
        lst.count(len(data), batch)
        submit(lst.ctx, lst.protocol, batch)
        if not keep_open:
            if self.reader.refusal:
                lst.warn.warning("%s: %s (from %s); closing the connection", lst.name,
                                 self.reader.refusal, self.peer)
            self.close()
        elif lst.ctx.ingest.paused:
            lst.pause(self)

    def eof_received(self) -> bool:
        batch = Batch()
        self.reader.finish(batch)
        self.listener.count(0, batch)
        submit(self.listener.ctx, self.listener.protocol, batch)
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.listener.closed(self)

    def pause(self) -> None:
        if not self.paused and self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()
            self.paused = True

    def resume(self) -> None:
        if self.paused and self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()
        self.paused = False

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class TcpListener:
    """`name` labels the self-metrics (horizon's `<name>_connections`, ...); `protocol` the
    write path's counters (`received_<protocol>`, `rejected_<protocol>_<reason>`)."""

    def __init__(self, ctx: Context, sock: socket.socket, *, name: str, protocol: str,
                 unit: str, new_reader: Callable[[], StreamReader], max_connections: int):
        self.ctx, self.sock, self.name, self.protocol, self.unit = ctx, sock, name, protocol, unit
        self.new_reader = new_reader
        self.max_connections = max_connections
        self.tel = ctx.telemetry("horizon")
        self.connections: set[_Connection] = set()
        self._paused: set[_Connection] = set()
        self._resumer: asyncio.Task[None] | None = None
        self.warn = Throttled()

    def count(self, nbytes: int, batch: Batch) -> None:
        tel = self.tel
        if nbytes:
            tel.incr(f"{self.name}_bytes", nbytes)
        if batch.units:
            tel.incr(f"{self.name}_{self.unit}", batch.units)
        if batch.rejected:
            tel.incr(f"{self.name}_parse_errors", sum(batch.rejected.values()))

    def opened(self, conn: _Connection) -> None:
        if len(self.connections) >= self.max_connections:
            self.ctx.ingest.reject(self.protocol, TOO_MANY_CONNECTIONS)
            self.warn.warning("%s: %d connections already open; refusing %s", self.name,
                              len(self.connections), conn.peer)
            conn.close()
            return
        self.connections.add(conn)
        self.tel.incr(f"{self.name}_connections")
        self.tel.gauge(f"{self.name}_open_connections", len(self.connections))
        if self.ctx.ingest.paused:
            self.pause(conn)

    def closed(self, conn: _Connection) -> None:
        self.connections.discard(conn)
        self._paused.discard(conn)
        self.tel.gauge(f"{self.name}_open_connections", len(self.connections))

    def pause(self, conn: _Connection) -> None:
        conn.pause()
        self._paused.add(conn)
        if self._resumer is None or self._resumer.done():
            self._resumer = asyncio.get_running_loop().create_task(self._resume_when_drained())

    async def _resume_when_drained(self) -> None:
        self.tel.incr(f"{self.name}_pauses")
        await self.ctx.ingest.wait_writable()
        if self.ctx.stopping.is_set():
            return
        paused, self._paused = self._paused, set()
        for conn in paused:
            conn.resume()

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: _Connection(self), sock=self.sock,
                                          start_serving=True)
        try:
            await self.ctx.stopping.wait()
        finally:
            # stop accepting and reading; everything read so far has been submitted already
            server.close()
            for conn in list(self.connections):
                conn.close()
            if self._resumer is not None:
                self._resumer.cancel()
            await asyncio.sleep(0)  # let the transports run their connection_lost


class UdpListener:
    """Drains datagrams and hands them to `handle`, which parses them into the batch (the
    plaintext and msgpack parsers) or aggregates them itself (StatsD: it returns an empty
    batch and a flush task submits the aggregates)."""

    def __init__(self, ctx: Context, sock: socket.socket, *, name: str, protocol: str,
                 handle: Callable[[bytes, Batch], None], unit: str | None = None):
        self.ctx, self.sock, self.name, self.protocol = ctx, sock, name, protocol
        self.handle = handle
        self.unit = unit  # what batch.units counts (lines), if more than the datagrams
        self.tel = ctx.telemetry("horizon")
        self.warn = Throttled()

    def _readable(self) -> None:
        datagrams: list[bytes] = []
        nbytes = 0
        recv = self.sock.recv
        for _ in range(_DATAGRAMS_PER_WAKE):
            try:
                data = recv(_MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as e:  # e.g. ICMP errors surfacing on the socket
                self.warn.warning("%s: receive failed: %s", self.name, e)
                break
            datagrams.append(data)
            nbytes += len(data)
        if not datagrams:
            return
        tel = self.tel
        tel.incr(f"{self.name}_datagrams", len(datagrams))
        tel.incr(f"{self.name}_bytes", nbytes)
        if self.ctx.ingest.paused:
            self.ctx.ingest.reject(self.protocol, OVERLOAD, len(datagrams))
            tel.incr(f"{self.name}_dropped_datagrams", len(datagrams))
            return
        batch = Batch()
        for data in datagrams:
            try:
                self.handle(data, batch)
            except Exception:  # a parser bug must not take the listener down
                log.exception("%s: unexpected error parsing a datagram", self.name)
                batch.reject(INTERNAL_ERROR)
        if self.unit and batch.units:
            tel.incr(f"{self.name}_{self.unit}", batch.units)
        if batch.rejected:
            tel.incr(f"{self.name}_parse_errors", sum(batch.rejected.values()))
        submit(self.ctx, self.protocol, batch)

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        fd = self.sock.fileno()
        loop.add_reader(fd, self._readable)
        try:
            await self.ctx.stopping.wait()
        finally:
            loop.remove_reader(fd)
