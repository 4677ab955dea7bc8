"""Horizon's listeners in-process, against the embedded Redis: concurrency, hostile input,
backpressure, overload, shutdown and self-metrics."""

from __future__ import annotations

import asyncio
import os
import pickle
import socket
import struct
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import msgpack
import pytest

from skyline.cli.components import REGISTRY
from skyline.cli.runner import bind_ports
from skyline.core.errors import PortInUse
from skyline.runtime.context import Context
from skyline.services import horizon
from skyline.settings import Settings, load_settings
from skyline.store.redis_client import redis_session
from tests.conftest import free_port

NOW = time.time()


def horizon_settings(tmp_path, **overrides: Any) -> Settings:
    h = {"plaintext_port": free_port(), "plaintext_udp_port": free_port(socket.SOCK_DGRAM),
         "statsd_port": free_port(socket.SOCK_DGRAM)}
    h.update(overrides.pop("horizon", {}))
    top: dict[str, Any] = {"PICKLE_PORT": free_port(), "UDP_PORT": free_port(socket.SOCK_DGRAM)}
    top.update(overrides)
    return load_settings(DATA_DIR=tmp_path / "var", horizon=h, **top)


class Harness:
    def __init__(self, ctx: Context, socks: dict[str, socket.socket], task: asyncio.Task[None]):
        self.ctx, self.socks, self.task = ctx, socks, task
        self.flushing: asyncio.Task[None] | None = None

    def port(self, setting: str) -> int:
        return int(self.socks[setting].getsockname()[1])

    def counters(self, component: str = "ingest") -> dict[str, float]:
        return self.ctx.telemetry(component).snapshot()[0]

    async def until(self, check: Callable[[], bool], timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            assert time.monotonic() < deadline, "timed out waiting"
            await asyncio.sleep(0.01)

    async def flush(self) -> None:
        await asyncio.to_thread(self.ctx.points.flush)
        self.ctx.ingest.after_flush()

    async def stop(self) -> None:
        """What the runner does on SIGINT: stop the component, then flush once more."""
        self.ctx.stopping.set()
        await asyncio.wait_for(self.task, 10)
        if self.flushing is not None:
            await self.flushing
        await self.flush()

    def stored(self, name: str) -> list[tuple[float, float]]:
        s = self.ctx.store.read_one(name)
        return list(zip(s.timestamps.tolist(), s.values.tolist(), strict=True))

    def send_udp(self, setting: str, *datagrams: bytes) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for d in datagrams:
                s.sendto(d, ("127.0.0.1", self.port(setting)))


def _bind(settings: Settings, tries: int = 5) -> tuple[Settings, dict[str, socket.socket]]:
    """Horizon's listeners on the settings' ports. A port free_port() chose can be taken by
    another process before it is bound (seen once in CI: PortInUse on the pickle port): the
    listeners the test left on get fresh ports and the bind is tried again."""
    for attempt in range(tries):
        try:
            return settings, bind_ports(settings, [REGISTRY["horizon"]])
        except PortInUse:
            if attempt == tries - 1:
                raise
            h = settings.horizon
            tcp, udp = socket.SOCK_STREAM, socket.SOCK_DGRAM
            settings = settings.model_copy(update={
                "PICKLE_PORT": free_port(tcp) if settings.PICKLE_PORT else 0,
                "UDP_PORT": free_port(udp) if settings.UDP_PORT else 0,
                "horizon": h.model_copy(update={
                    "plaintext_port": free_port(tcp) if h.plaintext_port else 0,
                    "plaintext_udp_port": free_port(udp) if h.plaintext_udp_port else 0,
                    "statsd_port": free_port(udp) if h.statsd_port else 0})})
    raise AssertionError("unreachable")


@asynccontextmanager
async def running(settings: Settings, *, auto_flush: bool = True) -> AsyncIterator[Harness]:
    """Horizon's run() with every listener, and (unless told not to) a flusher standing in
    for the runner's points loop; the test calls stop() before reading the store."""
    settings, socks = _bind(settings)
    with redis_session(settings) as handle:
        ctx = Context(settings, handle)
        h = Harness(ctx, socks, asyncio.create_task(horizon.run(ctx, socks)))

        async def flusher() -> None:
            while not ctx.stopping.is_set():
                await h.flush()
                await asyncio.sleep(0.05)

        if auto_flush:
            h.flushing = asyncio.create_task(flusher())
        try:
            yield h
        finally:
            if not h.task.done():
                await h.stop()
            for s in socks.values():
                s.close()


def test_many_clients_are_served_at_once(tmp_path):
    """Upstream served one connection at a time; here 40 stay open and all are read."""
    async def main() -> None:
        async with running(horizon_settings(tmp_path)) as h:
            port = h.port(horizon.PLAINTEXT_TCP)
            conns = [await asyncio.open_connection("127.0.0.1", port) for _ in range(40)]
            for i, (_, w) in enumerate(conns):
                w.write(f"conc.m{i} {i} {int(NOW)}\nconc.m{i} {i + 1} ".encode())
            for _, w in reversed(conns):
                w.write(f"{int(NOW) + 1}\n".encode())
                await w.drain()
            # every connection is still open, and all of them have been read
            await h.until(lambda: h.counters().get("accepted_plaintext", 0) == 80)
            for _, w in conns:
                w.close()
            await h.stop()
            for i in range(40):
                assert h.stored(f"conc.m{i}") == [(int(NOW), i), (int(NOW) + 1, i + 1)]
            tel = h.counters("horizon")
            assert tel["plaintext_tcp_connections"] == 40 and tel["plaintext_tcp_lines"] == 80

    asyncio.run(main())


def test_a_pickle_naming_a_global_is_refused_and_closes_only_its_connection(tmp_path, caplog):
    target = tmp_path / "pwned"

    class CreatesFile:
        def __reduce__(self):
            return (open, (str(target), "w"))

    def frame(obj: object) -> bytes:
        body = pickle.dumps(obj, protocol=2)
        return struct.pack("!I", len(body)) + body

    async def main() -> None:
        async with running(horizon_settings(tmp_path)) as h:
            port = h.port(horizon.PICKLE)
            _, good = await asyncio.open_connection("127.0.0.1", port)
            good.write(frame([("pk.good", (NOW, 1.0))]))
            evil_r, evil = await asyncio.open_connection("127.0.0.1", port)
            evil.write(frame([("pk.before", (NOW, 1.0))]) + frame([CreatesFile()])
                       + frame([("pk.after", (NOW, 1.0))]))
            await evil.drain()
            assert await asyncio.wait_for(evil_r.read(), 5) == b""  # closed by horizon
            good.write(frame([("pk.good", (NOW + 1, 2.0))]))  # the other one goes on
            await good.drain()
            await h.until(lambda: h.counters().get("accepted_pickle", 0) == 3)
            good.close()
            evil.close()
            await h.stop()
            assert not os.path.exists(target)
            assert h.counters()["rejected_pickle_forbidden_global"] == 1
            assert h.stored("pk.good") == [(NOW, 1.0), (NOW + 1, 2.0)]
            assert h.stored("pk.before") == [(NOW, 1.0)] and h.stored("pk.after") == []
            assert "names the global io.open" in caplog.text  # logged, with the sender

    asyncio.run(main())


def test_garbage_is_counted_and_valid_points_stored_on_every_listener(tmp_path):
    async def main() -> None:
        async with running(horizon_settings(tmp_path)) as h:
            _, w = await asyncio.open_connection("127.0.0.1", h.port(horizon.PLAINTEXT_TCP))
            w.write(f"g.tcp 1 {NOW}\n".encode() + b"\xff\xfe 1 2\nonly two\n"
                    + f"g.tcp 2 {NOW + 1}\n".encode())
            w.write(b"g.tcp x " + b"9" * 20000 + b"\n")  # longer than max_line_bytes
            await w.drain()
            w.close()
            h.send_udp(horizon.PLAINTEXT_UDP, f"g.udp 1 {NOW}\nnot.num x 5\n".encode(),
                       b"\xff\xfe\xfd")
            h.send_udp(horizon.MSGPACK, msgpack.packb(["g.mp", [NOW, 3.5]]), b"\xc1\xc1",
                       msgpack.packb({"not": "a record"}))
            await h.until(lambda: (h.counters().get("accepted_plaintext", 0) == 3
                                   and h.counters().get("accepted_msgpack", 0) == 1
                                   and h.counters().get("rejected_msgpack_bad_record", 0) == 1))
            await h.stop()
            assert [v for _, v in h.stored("g.tcp")] == [1.0, 2.0]
            assert h.stored("g.udp") == [(NOW, 1.0)] and h.stored("g.mp") == [(NOW, 3.5)]
            c = h.counters()
            assert c["rejected_plaintext_bad_line"] == 2 and c["rejected_plaintext_bad_number"] == 1
            assert c["rejected_plaintext_bad_encoding"] == 1 and c["rejected_plaintext_line_too_long"] == 1
            assert c["rejected_msgpack_bad_datagram"] == 1
            tel = h.counters("horizon")
            assert tel["plaintext_tcp_parse_errors"] == 3 and tel["plaintext_udp_parse_errors"] == 2
            assert tel["msgpack_datagrams"] == 3 and tel["msgpack_parse_errors"] == 2

    asyncio.run(main())


def test_tcp_stops_reading_while_the_write_path_is_paused_and_loses_nothing(tmp_path):
    settings = horizon_settings(tmp_path, ingest={"high_watermark": 1000, "low_watermark": 500})
    lines = 1_200_000  # ~12 MB: more than the kernel's socket buffers hold
    payload = b"".join(f"bp.m{i % 50} {i} {int(NOW)}\n".encode() for i in range(lines))
    sent = threading.Event()

    def sender(port: int) -> None:
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(payload)
        sent.set()

    async def main() -> None:
        async with running(settings, auto_flush=False) as h:
            t = threading.Thread(target=sender, args=(h.port(horizon.PLAINTEXT_TCP),))
            t.start()
            await h.until(lambda: h.ctx.ingest.paused)
            depth = len(h.ctx.points)
            await asyncio.sleep(0.5)
            # nothing more was read: the buffer holds still and the sender is blocked
            assert len(h.ctx.points) == depth < lines and not sent.is_set()
            while not sent.is_set() or h.counters().get("received_plaintext", 0) < lines:
                await h.flush()
                await asyncio.sleep(0.01)
            t.join()
            await h.stop()
            assert h.counters()["accepted_plaintext"] == lines
            assert sum(len(h.ctx.store.read_raw([f"bp.m{i}"])[0] or b"") for i in range(50)) \
                == lines * 16
            assert h.counters("horizon")["plaintext_tcp_pauses"] >= 1

    asyncio.run(main())


def test_udp_datagrams_arriving_while_paused_are_dropped_and_counted(tmp_path):
    settings = horizon_settings(tmp_path, ingest={"high_watermark": 1000, "low_watermark": 500})

    async def main() -> None:
        async with running(settings, auto_flush=False) as h:
            h.ctx.ingest.submit("test", [f"fill.{i}" for i in range(1000)], [NOW] * 1000,
                                [1.0] * 1000)
            assert h.ctx.ingest.paused
            h.send_udp(horizon.PLAINTEXT_UDP, *[f"ov.udp 1 {NOW}".encode()] * 5)
            h.send_udp(horizon.MSGPACK, *[msgpack.packb(["ov.mp", [NOW, 1]])] * 3)
            h.send_udp(horizon.STATSD, b"ov.c:1|c")
            await h.until(lambda: h.counters().get("rejected_plaintext_overload", 0) == 5
                          and h.counters().get("rejected_msgpack_overload", 0) == 3
                          and h.counters().get("rejected_statsd_overload", 0) == 1)
            await h.flush()
            assert not h.ctx.ingest.paused
            h.send_udp(horizon.PLAINTEXT_UDP, f"ov.udp 2 {NOW + 1}".encode())
            await h.until(lambda: h.counters().get("accepted_plaintext", 0) == 1)
            await h.stop()
            assert h.stored("ov.udp") == [(NOW + 1, 2.0)] and h.stored("ov.mp") == []
            assert h.counters("horizon")["plaintext_udp_dropped_datagrams"] == 5

    asyncio.run(main())


def test_shutdown_submits_what_was_read_and_the_final_flush_stores_it(tmp_path):
    async def main() -> None:
        async with running(horizon_settings(tmp_path), auto_flush=False) as h:
            _, w = await asyncio.open_connection("127.0.0.1", h.port(horizon.PLAINTEXT_TCP))
            w.write(b"".join(f"sd.m {i} {NOW - 100 + i}\n".encode() for i in range(100)))
            await w.drain()
            await h.until(lambda: h.counters().get("accepted_plaintext", 0) == 100)
            assert h.stored("sd.m") == []  # still in the buffer when the stop comes
            # the connection stays open: stopping closes it
            await h.stop()
            assert len(h.stored("sd.m")) == 100

    asyncio.run(main())


def test_statsd_aggregates_are_written_at_shutdown(tmp_path):
    settings = horizon_settings(tmp_path, statsd={"prefix": "sd", "percentiles": [50]})

    async def main() -> None:
        async with running(settings) as h:
            h.send_udp(horizon.STATSD, b"hits:3|c\nhits:1|c|@0.5", b"lat:10|ms\nlat:30|ms",
                       b"temp:7|g", b"junk")
            await h.until(lambda: h.counters("horizon").get("statsd_lines", 0) == 6)
            await h.stop()
            assert [v for _, v in h.stored("sd.counters.hits.count")] == [5.0]
            assert [v for _, v in h.stored("sd.timers.lat.mean")] == [20.0]
            assert [v for _, v in h.stored("sd.timers.lat.upper_50")] == [10.0]
            assert [v for _, v in h.stored("sd.gauges.temp")] == [7.0]
            assert h.counters()["rejected_statsd_bad_line"] == 1
            assert h.counters("horizon")["statsd_flushes"] == 1

    asyncio.run(main())


def test_a_udp_port_in_use_fails_the_start_naming_its_setting(tmp_path):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        settings = horizon_settings(tmp_path, horizon={"statsd_port": port})
        with pytest.raises(PortInUse, match=f"horizon.statsd_port={port}"):
            bind_ports(settings, [REGISTRY["horizon"]])


def test_port_zero_turns_a_listener_off(tmp_path):
    settings = horizon_settings(tmp_path, PICKLE_PORT=0, UDP_PORT=0,
                                horizon={"plaintext_port": 0, "plaintext_udp_port": 0,
                                         "statsd_port": 0})
    assert bind_ports(settings, [REGISTRY["horizon"]]) == {}


def test_random_garbage_never_stops_a_listener(tmp_path):
    """Seeded random bytes at every listener (TCP streams, pickle frames, datagrams), then
    valid input: every listener still serves, and the valid points are stored."""
    import random

    rng = random.Random(20240601)

    def junk(n: int = 300) -> bytes:
        return rng.randbytes(rng.randint(0, n))

    async def main() -> None:
        async with running(horizon_settings(tmp_path)) as h:
            for setting in (horizon.PLAINTEXT_TCP, horizon.PICKLE):
                for _ in range(20):
                    _, w = await asyncio.open_connection("127.0.0.1", h.port(setting))
                    w.write(junk(5000))
                    if setting == horizon.PICKLE:  # well-framed garbage too
                        for _ in range(5):
                            body = junk()
                            w.write(struct.pack("!I", len(body)) + body)
                    await w.drain()
                    w.close()
            for setting in (horizon.PLAINTEXT_UDP, horizon.MSGPACK, horizon.STATSD):
                h.send_udp(setting, *[junk() for _ in range(100)])
            # then good input on each, and each still works
            _, w = await asyncio.open_connection("127.0.0.1", h.port(horizon.PLAINTEXT_TCP))
            w.write(f"after.tcp 1 {NOW}\n".encode())
            body = pickle.dumps([("after.pickle", (NOW, 2.0))], protocol=2)
            _, pw = await asyncio.open_connection("127.0.0.1", h.port(horizon.PICKLE))
            pw.write(struct.pack("!I", len(body)) + body)
            await w.drain()
            await pw.drain()
            h.send_udp(horizon.PLAINTEXT_UDP, f"after.udp 3 {NOW}".encode())
            h.send_udp(horizon.MSGPACK, msgpack.packb(["after.msgpack", [NOW, 4.0]]))
            h.send_udp(horizon.STATSD, b"after.statsd:5|c")
            await h.until(lambda: all(h.stored(f"after.{n}") for n in
                                      ("tcp", "pickle", "udp", "msgpack")))
            w.close()
            pw.close()
            await h.stop()
            assert h.stored("after.tcp") == [(NOW, 1.0)]
            assert h.stored("after.pickle") == [(NOW, 2.0)]
            assert h.stored("after.udp") == [(NOW, 3.0)]
            assert h.stored("after.msgpack") == [(NOW, 4.0)]
            assert [v for _, v in h.stored("stats.counters.after.statsd.count")] == [5.0]
            assert not h.counters().get("rejected_plaintext_internal_error")
            assert not h.counters().get("rejected_pickle_internal_error")

    asyncio.run(main())
