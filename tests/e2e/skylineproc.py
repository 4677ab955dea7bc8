"""Running the real `skyline` command in a subprocess, as a user would."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import free_port
from tests.webauth import AUTH, SEED_USERS_JSON

__all__ = ["AUTH", "Running", "cli", "env_for", "horizon_ports"]

SKYLINE = [sys.executable, "-m", "skyline.cli.main"]


def horizon_ports() -> dict[str, str]:
    """Free ports for every horizon listener (the defaults may be taken on a test machine)."""
    return {
        "SKYLINE_HORIZON__PLAINTEXT_PORT": str(free_port()),
        "SKYLINE_HORIZON__PLAINTEXT_UDP_PORT": str(free_port(socket.SOCK_DGRAM)),
        "SKYLINE_PICKLE_PORT": str(free_port()),
        "SKYLINE_UDP_PORT": str(free_port(socket.SOCK_DGRAM)),
        "SKYLINE_HORIZON__STATSD_PORT": str(free_port(socket.SOCK_DGRAM)),
    }


def env_for(data_dir: Path, port: int, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SKYLINE_")}
    env.update({"SKYLINE_DATA_DIR": str(data_dir), "SKYLINE_WEBAPP_PORT": str(port),
                "SKYLINE_TELEMETRY__FLUSH_INTERVAL": "0.5",
                # a user with a known API token: requests send webauth.AUTH
                "SKYLINE_WEBAPP__USERS": SEED_USERS_JSON})
    env.update(horizon_ports())
    env.update(extra)
    return env


def cli(env: dict[str, str], *args: str, timeout: float = 60, cwd: Path | None = None,
        input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SKYLINE, *args], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, input=input)


class Running:
    def __init__(self, env: dict[str, str], cwd: Path, *args: str):
        self.env = env
        self.proc = subprocess.Popen([*SKYLINE, *(args or ("run",))], env=env, cwd=cwd,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.stdout = ""
        self.stderr = ""

    def wait_http(self, url: str, timeout: float = 30) -> httpx.Response:
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.finish()
                raise AssertionError(f"skyline exited {self.proc.returncode}: {self.stderr}")
            try:
                return httpx.get(url, timeout=2)
            except httpx.HTTPError as e:
                last = e
                time.sleep(0.1)
        raise AssertionError(f"{url} did not answer: {last}")

    def wait_healthy(self, base: str, timeout: float = 30) -> dict:
        """Wait until /api/v1/health says ok (Redis and SQL both reachable)."""
        deadline = time.monotonic() + timeout
        while True:
            r = self.wait_http(f"{base}/api/v1/health", timeout)
            if r.status_code == 200:
                return dict(r.json())
            if time.monotonic() > deadline:
                raise AssertionError(f"not healthy: {r.text}")
            time.sleep(0.1)

    def stop(self, sig: int = signal.SIGINT, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.finish(timeout)

    def finish(self, timeout: float = 30) -> int:
        out, err = self.proc.communicate(timeout=timeout)
        self.stdout += out
        self.stderr += err
        return self.proc.returncode
