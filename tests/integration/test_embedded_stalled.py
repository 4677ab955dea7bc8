"""A stalled embedded Redis (alive, not answering) is never replaced by a second server: two
servers on one data directory would split the hot store between them."""
from __future__ import annotations

import os
import signal
from pathlib import Path

from skyline.store.embedded import EmbeddedRedis, _ping


def test_stalled_server_is_attached_not_replaced(tmp_path: Path) -> None:
    first = EmbeddedRedis(tmp_path)
    assert first.start() is True
    pid = first.running_pid()
    assert pid is not None and first.process is not None and pid == first.process.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        second = EmbeddedRedis(tmp_path)
        assert second.start() is False  # attached: its PING fails, the caller backs off
        assert second.process is None
    finally:
        os.kill(pid, signal.SIGCONT)
    assert _ping(first.socket)  # the same server, with its socket, answers again
    assert first.running_pid() == pid
    first.shutdown()
    assert first.running_pid() is None


def test_pid_file_of_a_dead_server_does_not_block_a_start(tmp_path: Path) -> None:
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / "redis.pid").write_text("999999999\n")  # no such process
    server = EmbeddedRedis(tmp_path)
    assert server.running_pid() is None
    try:
        assert server.start() is True
    finally:
        server.shutdown()
