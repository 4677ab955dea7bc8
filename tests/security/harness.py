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
        self.wait_component("horizon")

    def wait_component(self, name: str, timeout: float = 60) -> None:
        """Until `name` has written its heartbeat (it is up and serving)."""
        deadline = time.monotonic() + timeout
        while True:
            beats = httpx.get(f"{self.base}/api/v1/health", timeout=30).json().get(
                "components", {})
            if any(k == name or k.startswith(f"{name}.") for k in beats):
                return
            assert time.monotonic() < deadline, f"{name} wrote no heartbeat"
            time.sleep(0.2)

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
            if name.endswith("_total"):  # counters carry Prometheus' suffix: both spellings
                bare = name[: -len("_total")]
                out[bare] = out.get(bare, 0.0) + float(value)
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


def component_process(sky: Skyline, component: str) -> psutil.Process:
    """The process serving `component`: its own supervised process under `skyline run`
    (`skyline serve <component>`), else skyline's main one."""
    root = psutil.Process(sky.pid)
    for p in root.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            cmd = p.cmdline()
            if "serve" in cmd and component in cmd:
                return p
    return root


class PeakRss:
    """The highest RSS of the process serving `component` while the block runs, sampled
    every 10 ms (other processes, such as analyzer workers starting, are not the attack's)."""

    def __init__(self, sky: Skyline, component: str = "webapp"):
        self.proc = component_process(sky, component)
        self.before = self._rss()
        self.peak = self.before
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _rss(self) -> int:
        try:
            return int(self.proc.memory_info().rss)
        except psutil.Error:
            return 0

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            self._stop.wait(0.01)

    @property
    def growth(self) -> int:
        return self.peak - self.before

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=1)
        self.peak = max(self.peak, self._rss())


def raw_http(port: int, head: str, body_chunks: Any = (), timeout: float = 60,
             stop_on_answer: bool = True) -> bytes:
    """Send a request by hand (headers, then each chunk of the body as it comes), stop
    sending as soon as the server answers (unless `stop_on_answer` is False: then the whole
    body, as curl or httpx would), and return the answer's first bytes (b"" when the
    connection was reset or closed without one)."""
    import select

    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(head.encode("latin-1"))
        try:
            for chunk in body_chunks:
                readable, _, _ = select.select([s], [], [], 0)
                if readable and stop_on_answer:
                    break
                s.sendall(chunk)
            s.settimeout(timeout)
            return s.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            return b""


def processes(sky: Skyline) -> list[psutil.Process]:
    """skyline and the processes it started, but the embedded Redis."""
    root = psutil.Process(sky.pid)
    return [p for p in [root, *root.children(recursive=True)]
            if "redis-server" not in (p.name() or "")]


def wait_closed(sock: socket.socket, timeout: float = 30) -> bool:
    """True when the server closed `sock` (EOF or reset) within `timeout` seconds."""
    sock.settimeout(timeout)
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False


def restart_senders(sky: Skyline, tmp: Path, restarts: int, threading_mod: Any
                    ) -> tuple[int, int, Skyline]:
    """Eight senders write Graphite lines without pause (about 30k points/s together) while
    skyline is stopped with SIGTERM and started again `restarts` times; a point counts as
    written when its sendall returned on a connection the server had not closed. Returns
    (written, stored, the running skyline)."""
    import select
    import signal

    port = sky.port_of("SKYLINE_HORIZON__PLAINTEXT_PORT")
    stop = threading_mod.Event()
    senders = 8
    written = [0] * senders
    t0 = int(time.time()) - 3000

    def sender(k: int) -> None:
        sock: socket.socket | None = None
        i = 0
        while not stop.is_set():
            batch = "".join(f"restart.s{k} {i + j} {t0 + (i + j) * 0.01:.2f}\n"
                            for j in range(20)).encode()
            if sock is not None:
                readable, _, _ = select.select([sock], [], [], 0)
                if readable:  # the server half-closed (draining) or reset: reconnect
                    try:
                        sock.recv(65536)
                    except OSError:
                        pass
                    sock.close()
                    sock = None
            if sock is None:
                try:
                    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
                except OSError:
                    time.sleep(0.05)
                    continue
            try:
                sock.sendall(batch)
            except OSError:
                sock.close()
                sock = None
                continue  # not written: the same batch again
            written[k] += 20
            i += 20
            time.sleep(0.005)
        if sock is not None:
            sock.close()

    threads = [threading_mod.Thread(target=sender, args=(k,), daemon=True)
               for k in range(senders)]
    for t in threads:
        t.start()
    time.sleep(2)
    for _ in range(restarts):
        assert sky.run.stop(signal.SIGTERM, timeout=60) == 0, sky.run.stderr[-2000:]
        sky.run = Running(sky.env, tmp)
        sky.run.wait_healthy(sky.base, timeout=60)
        time.sleep(2)
    stop.set()
    for t in threads:
        t.join()
    total = sum(written)
    stored = 0
    deadline = time.monotonic() + 30
    while True:
        stored = 0
        for k in range(senders):
            r = sky.get(f"/api/v1/series/restart.s{k}")
            if r.status_code == 200:
                stored += len(set(r.json()["timestamps"]))
        if stored >= total or time.monotonic() > deadline:
            return total, stored, sky
        time.sleep(0.5)
