"""Findings 3 (pickle memo bomb), 6 (idle connections holding partial frames), 9 (UDP drops
counted nowhere) and 10 (refusals not logged) against horizon's listeners."""

from __future__ import annotations

import signal
import socket
import struct
import time

import pytest

from tests.security.harness import (
    FREEZE_BOUND,
    RSS_BOUND,
    PeakRss,
    Probe,
    Skyline,
    processes,
    report,
    wait_closed,
)

PICKLE = "SKYLINE_PICKLE_PORT"


def frame(payload: bytes) -> bytes:
    return struct.pack("!I", len(payload)) + payload


def test_memo_bomb_is_refused_before_it_allocates(tmp_path) -> None:
    sky = Skyline(tmp_path)
    try:
        # memo index 2**27: the unpickler would allocate and zero 2 GiB for this 6-byte frame
        bomb = frame(b"}r" + struct.pack("<I", 2**27))
        with Probe(sky.base) as probe, PeakRss(sky, "horizon") as rss, \
                socket.create_connection(("127.0.0.1", sky.port_of(PICKLE))) as s:
            s.sendall(bomb)
            closed = wait_closed(s, FREEZE_BOUND)
        refused = sky.wait_counter("skyline_ingest_rejected_pickle_memo_index", 1)
        report("memo_bomb", closed=closed, rss_growth_mb=round(rss.growth / 2**20, 1),
               probe_worst_s=round(probe.worst, 3))
        assert closed, "the connection stayed open after a hostile frame"
        assert refused >= 1
        assert rss.growth < RSS_BOUND
        assert probe.worst < FREEZE_BOUND
    finally:
        sky.stop()


def test_every_security_refusal_is_logged_with_the_sender(tmp_path) -> None:
    sky = Skyline(tmp_path, SKYLINE_HORIZON__MAX_FRAME_BYTES="65536")
    port = sky.port_of(PICKLE)
    try:
        for _ in range(3):  # a frame too large first: it used up the once-a-minute warning
            with socket.create_connection(("127.0.0.1", port)) as s:
                s.sendall(struct.pack("!I", 2**20))
                wait_closed(s)
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(frame(b"cos\nsystem\n(S'true'\ntR."))
            assert wait_closed(s)
        sky.wait_counter("skyline_ingest_rejected_pickle_forbidden_global", 1)
    finally:
        sky.stop()
    log = sky.run.stderr
    global_lines = [line for line in log.splitlines() if "os.system" in line]
    report("refusal_log", lines=len(global_lines))
    assert global_lines, log[-3000:]
    assert "127.0.0.1:" in global_lines[0]


def test_idle_and_partial_connections_are_closed(tmp_path) -> None:
    sky = Skyline(tmp_path, SKYLINE_HORIZON__IDLE_TIMEOUT="1",
                  SKYLINE_HORIZON__MAX_BUFFERED_BYTES=str(8 * 2**20))
    port = sky.port_of(PICKLE)
    socks = []
    try:
        with PeakRss(sky, "horizon") as rss:
            shut_early = 0
            for _ in range(40):  # each: 3 MiB of a 4 MiB frame, then silence
                s = socket.create_connection(("127.0.0.1", port))
                try:
                    s.sendall(struct.pack("!I", 4 * 2**20 - 16) + b"\x00" * (3 * 2**20))
                except (BrokenPipeError, ConnectionResetError):
                    # horizon already closed it (buffer limit, or idle on a slow machine
                    # while the 3 MiB were still going out): closed, as it should be
                    shut_early += 1
                    s.close()
                    continue
                socks.append(s)
            closed = shut_early + sum(wait_closed(s, 30) for s in socks)
        report("idle_partial", closed=closed, of=len(socks) + shut_early,
               rss_growth_mb=round(rss.growth / 2**20, 1))
        assert closed == len(socks) + shut_early
        assert rss.growth < RSS_BOUND
        assert sky.wait_counter("skyline_ingest_rejected_pickle_buffer_limit", 1) >= 1
        assert sky.wait_counter("skyline_ingest_rejected_pickle_idle_timeout", 1) >= 1
    finally:
        for s in socks:
            s.close()
        sky.stop()


def test_kernel_drops_of_udp_are_counted(tmp_path) -> None:
    sky = Skyline(tmp_path, SKYLINE_HORIZON__UDP_RECEIVE_BUFFER="262144")
    port = sky.port_of("SKYLINE_HORIZON__PLAINTEXT_UDP_PORT")
    sent = 30_000
    now = int(time.time())
    procs = processes(sky)
    try:
        # a frozen reader, as during the old gzip freeze: the kernel buffer overflows
        for p in procs:
            p.send_signal(signal.SIGSTOP)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            for i in range(sent):
                u.sendto(f"udp.drop.test {i} {now}\n".encode(), ("127.0.0.1", port))
        for p in procs:
            p.send_signal(signal.SIGCONT)
        deadline = time.monotonic() + 30
        while True:
            c = sky.counters()
            got = c.get("skyline_horizon_plaintext_udp_datagrams", 0)
            drops = c.get("skyline_horizon_plaintext_udp_kernel_drops", 0)
            if got + drops >= sent or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        report("udp_drops", sent=sent, received=got, kernel_drops=drops)
        assert drops > 0
        assert got + drops == sent
    finally:
        for p in procs:
            p.send_signal(signal.SIGCONT)
        sky.stop()


@pytest.mark.parametrize("restarts", [2])
def test_sigterm_restarts_lose_no_written_point(tmp_path, restarts: int) -> None:
    import threading

    from tests.security.harness import restart_senders

    sky = Skyline(tmp_path)
    try:
        written, stored, sky = restart_senders(sky, tmp_path, restarts, threading)
    finally:
        sky.stop()
    report("restart_loss", written=written, stored=stored, lost=written - stored)
    assert written > 1000
    assert stored == written
