"""asyncio listeners feeding the shared write path.

TCP: one Protocol per connection, any number of connections at once. Each read is parsed
whole and submitted at once; while the write path is paused (its buffer above the high
watermark) every connection stops reading until it drains, so senders block instead of
losing data. UDP: a reader drains every waiting datagram per wake-up and submits them as one
batch; datagrams that arrive while the write path is paused are dropped and counted
(`rejected_<protocol>_overload`), never silently.

A parser error never escapes: bad input is counted by reason (`ctx.ingest.reject`, which
also logs a sample with the sender's address), and an unexpected exception is logged with its
traceback, counted and ends only that connection.

Bounds: a TCP connection that sends nothing for `horizon.idle_timeout` is closed
(`idle_timeout`), and one whose unfinished line or frame would take the listener's buffered
bytes past `horizon.max_buffered_bytes` too (`buffer_limit`), so idle or slow senders cannot
hold memory or connection slots. UDP sockets ask the kernel for a large receive buffer, and
what the kernel still dropped (its per-socket drop counter) is reported as
`<listener>_kernel_drops`.

Shutdown loses nothing already sent: the listeners stop accepting, half-close every
connection (the sender sees end of stream) and go on reading until each sender has closed its
side or `horizon.drain_timeout` has passed; UDP sockets are read until empty.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable
from typing import Protocol

from skyline.ingest.batch import Batch
from skyline.runtime.context import Context

log = logging.getLogger(__name__)

OVERLOAD = "overload"
TOO_MANY_CONNECTIONS = "too_many_connections"
INTERNAL_ERROR = "internal_error"
IDLE_TIMEOUT = "idle_timeout"
BUFFER_LIMIT = "buffer_limit"
_MAX_DATAGRAM = 65535
_DATAGRAMS_PER_WAKE = 2000  # bounds one callback's time, so other listeners get their turn


class StreamReader(Protocol):
    """A connection's parser: `feed` parses what it can into the batch and returns False
    when the connection must be closed (saying why in `refusal`); `finish` handles what is
    left at end of stream."""

    refusal: str | None

    @property
    def buffered(self) -> int: ...  # bytes held of an unfinished line or frame

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


def submit(ctx: Context, protocol: str, batch: Batch, peer: str | None = None) -> None:
    if batch.rejected:
        for reason, n in batch.rejected.items():
            ctx.ingest.reject(protocol, reason, n, peer)
    if batch.names:
        stamps, values = batch.arrays()
        ctx.ingest.submit(protocol, batch.names, stamps, values, peer=peer)


class _Connection(asyncio.Protocol):
    def __init__(self, listener: TcpListener):
        self.listener = listener
        self.reader = listener.new_reader()
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self.paused = False
        self.buffered = 0  # what this connection adds to the listener's buffered bytes
        self.last_data = time.monotonic()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        self.listener.opened(self)

    def data_received(self, data: bytes) -> None:
        lst = self.listener
        self.last_data = time.monotonic()
        batch = Batch()
        try:
            keep_open = self.reader.feed(data, batch) is not False
        except Exception:  # a parser bug must not take the listener down: log it, end this one
            log.exception("%s: unexpected error parsing data from %s; closing the connection",
                          lst.name, self.peer)
            batch.reject(INTERNAL_ERROR)
            keep_open = False
        if keep_open and not lst.hold(self, self.reader.buffered):
            batch.reject(BUFFER_LIMIT)
            self.reader.refusal = (f"its unfinished data would take the listener past "
                                   f"{lst.max_buffered} buffered bytes "
                                   "(horizon.max_buffered_bytes)")
            keep_open = False
        lst.count(len(data), batch)
        submit(lst.ctx, lst.protocol, batch, self.peer)
        if not keep_open:
            if self.reader.refusal:
                log.warning("%s: %s (from %s); closing the connection", lst.name,
                            self.reader.refusal, self.peer)
            self.close()
        elif lst.ctx.ingest.paused:
            lst.pause(self)

    def eof_received(self) -> bool:
        batch = Batch()
        self.reader.finish(batch)
        self.listener.count(0, batch)
        submit(self.listener.ctx, self.listener.protocol, batch, self.peer)
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.listener.hold(self, 0)
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
        h = ctx.settings.horizon
        self.idle_timeout = h.idle_timeout
        self.max_buffered = h.max_buffered_bytes
        self.drain_timeout = h.drain_timeout
        self.buffered = 0  # bytes of unfinished lines and frames over all connections

    def hold(self, conn: _Connection, nbytes: int) -> bool:
        """`conn` now holds `nbytes` of unfinished data; False when that would take the
        listener past max_buffered (its old share is kept until it is closed)."""
        total = self.buffered - conn.buffered + nbytes
        if nbytes > conn.buffered and total > self.max_buffered:
            return False
        self.buffered, conn.buffered = total, nbytes
        return True

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
            self.ctx.ingest.reject(self.protocol, TOO_MANY_CONNECTIONS, peer=conn.peer,
                                   detail=f"{len(self.connections)} connections already open")
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
        # also while draining at shutdown: the write buffer is still flushed then
        self.tel.incr(f"{self.name}_pauses")
        await self.ctx.ingest.wait_writable()
        paused, self._paused = self._paused, set()
        for conn in paused:
            conn.resume()

    async def _close_idle(self) -> None:
        every = min(5.0, self.idle_timeout / 4)
        while True:
            await asyncio.sleep(every)
            deadline = time.monotonic() - self.idle_timeout
            for conn in [c for c in self.connections if c.last_data < deadline and not c.paused]:
                self.ctx.ingest.reject(self.protocol, IDLE_TIMEOUT, peer=conn.peer,
                                       detail=f"nothing sent for {self.idle_timeout:g} s")
                conn.close()

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: _Connection(self), sock=self.sock,
                                          start_serving=True)
        sweeper = loop.create_task(self._close_idle())
        try:
            await self.ctx.stopping.wait()
        finally:
            sweeper.cancel()
            # connections the kernel completed but nobody accepted yet hold what their
            # senders wrote: take them in before the port closes, or they would be reset
            await self._accept_waiting(loop)
            server.close()  # no new connections
            await self._drain()
            if self._resumer is not None:
                self._resumer.cancel()
            await asyncio.sleep(0)  # let the transports run their connection_lost

    async def _accept_waiting(self, loop: asyncio.AbstractEventLoop) -> None:
        for _ in range(self.max_connections):
            try:
                conn, _addr = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # closed meanwhile
                return
            await loop.connect_accepted_socket(lambda: _Connection(self), conn)

    async def _drain(self) -> None:
        """Half-close every connection and read on until its sender closes its side (all it
        wrote is then read and submitted), for at most drain_timeout. Connections accepted
        while this runs (the loop may still be setting one up) are half-closed too."""
        told: set[_Connection] = set()
        deadline = time.monotonic() + self.drain_timeout
        while self.connections and time.monotonic() < deadline:
            for conn in self.connections - told:
                told.add(conn)
                t = conn.transport
                if t is not None and not t.is_closing() and t.can_write_eof():
                    with contextlib.suppress(OSError, RuntimeError):
                        t.write_eof()
            await asyncio.sleep(0.02)
        if self.connections:
            log.warning("%s: %d connections still sending %g s after shutdown began; closing "
                        "them", self.name, len(self.connections), self.drain_timeout)
        for conn in list(self.connections):
            conn.close()


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
        _grow_receive_buffer(sock, ctx.settings.horizon.udp_receive_buffer)
        self._inode = _inode(sock)
        self._drops_at_start: int | None = None

    def _readable(self) -> int:
        """Read what waits (up to _DATAGRAMS_PER_WAKE datagrams); how many were read."""
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
            return 0
        tel = self.tel
        tel.incr(f"{self.name}_datagrams", len(datagrams))
        tel.incr(f"{self.name}_bytes", nbytes)
        if self.ctx.ingest.paused:
            self.ctx.ingest.reject(self.protocol, OVERLOAD, len(datagrams))
            tel.incr(f"{self.name}_dropped_datagrams", len(datagrams))
            return len(datagrams)
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
        return len(datagrams)

    def kernel_drops(self) -> None:
        """Datagrams the kernel dropped on this socket (its receive buffer was full), since
        the listener started, as the gauge <listener>_kernel_drops."""
        drops = _socket_drops(self._inode)
        if drops is None:
            return
        if self._drops_at_start is None:
            self._drops_at_start = drops
        self.tel.gauge(f"{self.name}_kernel_drops", drops - self._drops_at_start)

    async def _watch_drops(self) -> None:
        while True:
            self.kernel_drops()
            await asyncio.sleep(DROPS_EVERY)

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        fd = self.sock.fileno()
        loop.add_reader(fd, self._readable)
        watcher = loop.create_task(self._watch_drops())
        try:
            await self.ctx.stopping.wait()
        finally:
            loop.remove_reader(fd)
            watcher.cancel()
            # what the kernel already holds was sent to us: read it all before stopping
            for _ in range(10_000):
                if not self._readable():
                    break
            self.kernel_drops()


DROPS_EVERY = 2.0  # seconds between reads of the kernel's drop counter


def _grow_receive_buffer(sock: socket.socket, size: int) -> None:
    # SO_RCVBUFFORCE goes past net.core.rmem_max where we may (CAP_NET_ADMIN)
    for opt in (getattr(socket, "SO_RCVBUFFORCE", None), socket.SO_RCVBUF):
        if opt is None:
            continue
        try:
            sock.setsockopt(socket.SOL_SOCKET, opt, size)
            return
        except OSError:
            continue


def _inode(sock: socket.socket) -> int | None:
    try:
        return os.fstat(sock.fileno()).st_ino
    except OSError:
        return None


def _socket_drops(inode: int | None) -> int | None:
    """The kernel's drop counter of the UDP socket with this inode (Linux /proc/net/udp and
    udp6, last column); None where there is no such file."""
    if inode is None:
        return None
    wanted = str(inode)
    for path in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            with open(path, encoding="ascii") as f:
                next(f, None)
                for line in f:
                    fields = line.split()
                    if len(fields) >= 13 and fields[9] == wanted:
                        return int(fields[-1])
        except (OSError, ValueError):
            continue
    return None
