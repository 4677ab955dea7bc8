"""Attacking a real `skyline run` from loopback, as the review did, while a health probe
watches whether the process still answers.

Every attack is sized so that the code before the fix froze for a minute or more (or grew by
hundreds of MB): the bounds the tests assert (FREEZE_BOUND seconds without a health answer,
RSS_BOUND bytes of growth) are far from what a loaded CI machine adds, so they tell a freeze
from a slow machine without asserting on speed. The figures measured are printed, for the
notes in docs/security.md.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

from tests.conftest import free_port
from tests.e2e.skylineproc import AUTH, Running, env_for

FREEZE_BOUND = 10.0  # seconds the health probe may go unanswered (the old code: >= 60 s)
RSS_BOUND = 100 * 2**20  # bytes of growth an attack may cause (the old code: >= 150 MB)


class Skyline:
    """`skyline run` on free ports in its own data directory."""

    def __init__(self, tmp: Path, **settings: str):
        self.port = free_port()
        self.env = env_for(tmp / "var", self.port, **settings)
        self.base = f"http://127.0.0.1:{self.port}"
        self.run = Running(self.env, tmp)
        self.run.wait_healthy(self.base, timeout=60)

    def port_of(self, setting: str) -> int:
        return int(self.env[setting])

    @property
    def pid(self) -> int:
        return self.run.proc.pid

    def rss(self) -> int:
        """Bytes resident in skyline and every process it started (not the embedded Redis,
        whose memory is the data's)."""
        total = 0
        try:
            root = psutil.Process(self.pid)
            for p in [root, *root.children(recursive=True)]:
                if "redis-server" in (p.name() or ""):
                    continue
                total += p.memory_info().rss
        except psutil.NoSuchProcess:
            pass
        return total

    def counters(self) -> dict[str, float]:
        """/metrics as {name: value}, summed over instances."""
        out: dict[str, float] = {}
        r = httpx.get(f"{self.base}/metrics", timeout=30)
        for line in r.text.splitlines():
            if not line or line.startswith("#"):
                continue
            name, _, value = line.rpartition(" ")
            name = name.split("{", 1)[0]
            out[name] = out.get(name, 0.0) + float(value)
        return out

    def counter(self, name: str) -> float:
        return self.counters().get(name, 0.0)

    def wait_counter(self, name: str, at_least: float, timeout: float = 30) -> float:
        deadline = time.monotonic() + timeout
        while True:
            v = self.counter(name)
            if v >= at_least or time.monotonic() > deadline:
                return v
            time.sleep(0.2)

    def get(self, path: str, **kw: Any) -> httpx.Response:
        kw.setdefault("timeout", 60)
        return httpx.get(f"{self.base}{path}", headers=AUTH, **kw)

    def stop(self) -> int:
        """SIGINT and wait; a process still frozen after 30 s is killed, with everything it
        started (the embedded Redis too), so a failed attack leaves nothing behind."""
        try:
            family = psutil.Process(self.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            family = []
        try:
            return self.run.stop(timeout=30)
        except subprocess.TimeoutExpired:
            self.run.proc.kill()
            for p in family:
                with contextlib.suppress(psutil.NoSuchProcess):
                    p.kill()
            self.run.finish(timeout=30)
            raise AssertionError("skyline did not stop within 30 s of SIGINT") from None


class Probe:
    """GET /api/v1/health every 50 ms from a thread; `worst` is the longest time the process
    took to answer (or has not answered yet) while probing."""

    def __init__(self, base: str):
        self.url = f"{base}/api/v1/health"
        self.worst = 0.0
        self.answers = 0
        self._stop = threading.Event()
        self._asked = 0.0
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        with httpx.Client(timeout=120) as client:
            while not self._stop.is_set():
                self._asked = time.monotonic()
                try:
                    client.get(self.url)
                    self.answers += 1
                except httpx.HTTPError:
                    pass
                self.worst = max(self.worst, time.monotonic() - self._asked)
                self._asked = 0.0
                self._stop.wait(0.05)

    def __enter__(self) -> Probe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._asked:  # still waiting for an answer: that wait counts too
            self.worst = max(self.worst, time.monotonic() - self._asked)
        self._thread.join(timeout=0.5)


def send_lines(port: int, lines: list[str]) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(("".join(line + "\n" for line in lines)).encode())


def report(name: str, **figures: object) -> None:
    """One line of figures per attack, for the before/after notes."""
    print(f"SECURITY {name}: " + ", ".join(f"{k}={v}" for k, v in figures.items()))
