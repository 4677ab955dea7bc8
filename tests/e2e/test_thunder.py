"""Thunder in `skyline run`, against real failures of the product's own processes: the
supervised horizon process killed (the supervisor starts it again), and the embedded Redis
server stopped (SIGSTOP: it holds every connection without answering) then resumed. Each
gives one alert and one resolve on a webhook sink, the Redis one sent while Redis is down."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

from skyline.settings import load_settings
from skyline.store import keys
from skyline.store.redis_client import redis_session
from tests.alertsinks import HttpSink
from tests.conftest import free_port
from tests.e2e.skylineproc import Running, env_for
from tests.e2e.test_analyzer_alerts import _wait


def _config(tmp_path: Path, sink: HttpSink) -> Path:
    cfg = tmp_path / "skyline.toml"
    cfg.write_text(f"""
ANALYZER_ENABLED = false

[THUNDER_OPTS]
channels = ["webhook"]
check_interval = 0.3
down_after = 2.0
retry_interval = 0.5

[alerters.webhook]
enabled = true
url = "{sink.url}/thunder"
""")
    return cfg


def _of(sink: HttpSink, metric: str) -> list[dict[str, Any]]:
    return [a["alert"] for a in sink.accepted if a["alert"]["metric"] == metric]


def test_killed_horizon_process_is_down_once_and_up_once(tmp_path: Path) -> None:
    port = free_port()
    data = tmp_path / "var"
    metric = "skyline.thunder.horizon.up"
    with HttpSink() as sink:
        env = env_for(data, port, SKYLINE_CONFIG=str(_config(tmp_path, sink)))
        run = Running(env, tmp_path)
        try:
            run.wait_healthy(f"http://127.0.0.1:{port}")
            with redis_session(load_settings(DATA_DIR=data)) as h:
                def beat() -> dict[str, Any] | None:
                    names = [k.decode() for k in h.client.scan_iter(
                        match=keys.heartbeat("horizon.*"))]
                    raw = h.client.get(names[0]) if names else None
                    return json.loads(raw) if raw else None

                assert _wait(lambda: beat() is not None, 60), "horizon wrote no heartbeat"
                first = beat()
                assert first is not None and first["pid"] != run.proc.pid
                time.sleep(1.0)  # Thunder has seen it
                os.kill(int(first["pid"]), signal.SIGKILL)
                assert _wait(lambda: _of(sink, metric), 60), "no down alert"
                # the supervisor starts horizon again: a heartbeat from a new process
                assert _wait(lambda: (b := beat()) is not None and b["pid"] != first["pid"],
                             90), "horizon did not come back"
                assert _wait(lambda: len(_of(sink, metric)) >= 2, 30), "no up alert"
                time.sleep(2)
        finally:
            code = run.stop()
        assert code == 0, run.stderr
    alerts = _of(sink, metric)
    assert [a["kind"] for a in alerts] == ["alert", "resolve"]
    assert "horizon is down: no heartbeat" in alerts[0]["algorithms"][0]["text"]
    assert alerts[0]["source"] == "thunder"


def test_stopped_embedded_redis_alerts_while_down_and_when_back(tmp_path: Path) -> None:
    port = free_port()
    data = tmp_path / "var"
    metric = "skyline.thunder.redis.up"
    with HttpSink() as sink:
        env = env_for(data, port, SKYLINE_CONFIG=str(_config(tmp_path, sink)),
                      SKYLINE_REDIS__RETRY_MAX_BACKOFF="1")
        run = Running(env, tmp_path)
        pid = 0
        try:
            run.wait_healthy(f"http://127.0.0.1:{port}")
            pid = int((data / "redis.pid").read_text())
            time.sleep(1.0)
            os.kill(pid, signal.SIGSTOP)
            try:
                # sent by Thunder itself while Redis answers nothing
                assert _wait(lambda: _of(sink, metric), 60), "no alert while Redis is down"
            finally:
                os.kill(pid, signal.SIGCONT)
            assert _wait(lambda: len(_of(sink, metric)) >= 2, 60), "no alert once back"
            time.sleep(2)
        finally:
            if pid:
                os.kill(pid, signal.SIGCONT)
            code = run.stop()
        assert code == 0, run.stderr
    alerts = _of(sink, metric)
    assert [a["kind"] for a in alerts] == ["alert", "resolve"]
    assert "unreachable" in alerts[0]["algorithms"][0]["text"]
    assert "Traceback" not in run.stderr
