"""A real analyzer anomaly, end to end: points in through horizon's Graphite plaintext
listener, judged by the analyzer of `skyline run`, routed by an ALERTS rule to the webhook
channel and delivered to a local validating sink once per expiration; then normal points
keep the metric back inside its earlier range for analyzer.recovery_period, it recovers and
the webhook gets the resolve (send_recovered, docs/alerts.md)."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from tests.alertsinks import HttpSink, validate_signed
from tests.conftest import free_port
from tests.e2e.skylineproc import Running, env_for

STEP = 60.0
POINTS = 200
SPIKED = "e2e.alerting.spiked"
NORMAL = [f"e2e.alerting.normal.{i}" for i in range(4)]


def _send(port: int, lines: list[str]) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall("".join(lines).encode())


def _wait(cond: Callable[[], Any], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.2)
    return bool(cond())


def _kinds(sink: HttpSink) -> list[tuple[str, str]]:
    return [(a["alert"]["metric"], a["alert"]["kind"]) for a in sink.accepted]


def test_analyzer_anomaly_alerts_once_then_resolves(tmp_path: Path) -> None:
    port = free_port()
    data = tmp_path / "var"
    with HttpSink(validate_signed("s3cret")) as sink:
        cfg = tmp_path / "skyline.toml"
        cfg.write_text(f"""
[[ALERTS]]
pattern = "e2e.alerting.**"
channel = "webhook"
expiration = 3600

[alerters]
poll_interval = 0.2
retry_initial = 0.5
retry_max = 1.0

[alerters.webhook]
enabled = true
url = "{sink.url}/hook"
secret = "s3cret"
send_recovered = true
""")
        env = env_for(data, port, SKYLINE_CONFIG=str(cfg),
                      SKYLINE_ANALYZER_OPTIMUM_RUN_DURATION="1",
                      SKYLINE_MIN_TOLERABLE_LENGTH="100",
                      # recovered once back inside the earlier range for 3 minutes
                      SKYLINE_ANALYZER__RECOVERY_PERIOD="180")
        plaintext = int(env["SKYLINE_HORIZON__PLAINTEXT_PORT"])
        run = Running(env, tmp_path)
        try:
            run.wait_healthy(f"http://127.0.0.1:{port}")
            # 200 points of noise per metric, 60 s apart; the spiked metric's last point is
            # the spike, at `spike_ts`, leaving room for recovery points up to now
            now = time.time()
            spike_ts = float(int(now) - 6 * STEP)
            ts = spike_ts - STEP * np.arange(1, POINTS)[::-1]
            lines = []
            for i, name in enumerate([*NORMAL, SPIKED]):
                v = np.random.default_rng(i).normal(100.0, 5.0, len(ts))
                lines += [f"{name} {x:.3f} {t:.0f}\n" for t, x in zip(ts, v, strict=True)]
            for i, name in enumerate(NORMAL):  # normal metrics end at spike_ts too
                lines.append(f"{name} {100.0 + i:.3f} {spike_ts:.0f}\n")
            _send(plaintext, lines)
            _send(plaintext, [f"{SPIKED} 1500.0 {spike_ts:.0f}\n"])

            assert _wait(lambda: sink.accepted, 120), \
                f"no alert reached the webhook; refused={sink.refused}"
            # many more analyzer runs (1 s each) while the metric stays anomalous: still one
            time.sleep(6)
            assert _kinds(sink) == [(SPIKED, "alert")], _kinds(sink)
            alert = sink.accepted[0]["alert"]
            assert alert["source"] == "analyzer" and alert["status"] == "anomalous"
            assert alert["value"] == 1500.0 and alert["timestamp"] == spike_ts
            assert alert["triggered"] and alert["expiration"] == 3600

            # normal points after the spike: once back for analyzer.recovery_period (3
            # points after the first) the metric recovers and the webhook resolves
            for k in range(1, 6):
                _send(plaintext, [f"{SPIKED} {100.0 + k:.3f} {spike_ts + k * STEP:.0f}\n"])
                if _wait(lambda: len(sink.accepted) >= 2, 15):
                    break
            assert _wait(lambda: len(sink.accepted) >= 2, 60), \
                f"no recovery delivered: {_kinds(sink)}"
            time.sleep(3)
            assert _kinds(sink) == [(SPIKED, "alert"), (SPIKED, "resolve")], _kinds(sink)
            assert not sink.refused
        finally:
            code = run.stop()
        assert code == 0, run.stderr
    assert "Traceback" not in run.stderr
