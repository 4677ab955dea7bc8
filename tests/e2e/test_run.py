"""`skyline run` as a newcomer meets it: starts, answers, lists metrics, stops cleanly, and
finds its data again on the next start."""

from __future__ import annotations

import signal
import socket
import time

import httpx
import numpy as np
import pytest

from skyline.settings import load_settings
from skyline.store.hotstore import HotStore
from skyline.store.redis_client import redis_session
from tests.conftest import free_port
from tests.e2e.skylineproc import AUTH, Running, cli, env_for


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_run_serves_lists_stops_and_keeps_data(tmp_path, sig):
    port = free_port()
    data = tmp_path / "var"
    env = env_for(data, port)
    run = Running(env, tmp_path)
    base = f"http://127.0.0.1:{port}"
    r = run.wait_http(f"{base}/api/v1/health")
    assert r.status_code in (200, 503)
    run.wait_healthy(base)  # SQL is there: the settings' user and token are set up
    page = httpx.get(f"{base}/", headers=AUTH, timeout=20)
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]

    # a second command attaches to the running embedded Redis
    with redis_session(load_settings(DATA_DIR=data)) as h:
        assert h.embedded is not None and not h.embedded.started_here
        HotStore(h.client).append(["web.requests", "db.queries"],
                                  np.array([1e9, 1e9]) + 1.8e9 - 1e9, np.array([3.0, 4.0]))
    listed = cli(env, "metrics", "list")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.split() == ["db.queries", "web.requests"]

    health = run.wait_http(f"{base}/api/v1/health").json()
    assert health["redis"]["ok"] and health["redis"]["metrics"] == 2

    assert run.stop(sig) == 0
    assert "Traceback" not in run.stderr
    assert "Skyline stopped." in run.stdout
    assert f"http://127.0.0.1:{port}/" in run.stdout and str(data) in run.stdout

    # the second run finds the data of the first
    run2 = Running(env, tmp_path)
    run2.wait_http(f"{base}/api/v1/health")
    again = cli(env, "metrics", "get", "web.requests", "--json")
    assert again.returncode == 0, again.stderr
    assert '"points": [[1800000000.0, 3.0]]' in again.stdout
    assert run2.stop() == 0


def test_port_in_use_fails_naming_the_setting(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        run = Running(env_for(tmp_path / "var", port), tmp_path)
        assert run.finish() == 1
    assert f"WEBAPP_PORT={port}" in run.stderr
    assert "Traceback" not in run.stderr


def test_invalid_settings_fail_the_start_with_setting_value_reason(tmp_path):
    env = env_for(tmp_path / "var", free_port(), SKYLINE_FULL_DURATION="soon",
                  SKYLINE_ROOMBA__INTERVAL="-5")
    run = Running(env, tmp_path)
    assert run.finish() == 1
    assert "FULL_DURATION: 'soon':" in run.stderr
    assert "roomba.interval: '-5':" in run.stderr
    assert "Traceback" not in run.stderr
    check = cli(env, "config", "check")
    assert check.returncode == 1 and len(check.stderr.strip().splitlines()) == 2


def test_unreachable_external_redis_is_one_clear_line(tmp_path):
    dead = free_port()
    env = env_for(tmp_path / "var", free_port(),
                  SKYLINE_REDIS_URL=f"redis://:hunter2@127.0.0.1:{dead}/0")
    r = cli(env, "metrics", "list")
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert f"redis://:***@127.0.0.1:{dead}/0" in lines[0]
    assert "hunter2" not in r.stderr


def test_serve_one_component(tmp_path):
    port = free_port()
    run = Running(env_for(tmp_path / "var", port), tmp_path, "serve", "webapp")
    run.wait_http(f"http://127.0.0.1:{port}/api/v1/health")
    assert run.stop() == 0
    assert "components          webapp\n" in run.stdout


def test_serve_flux_brings_the_web_app_it_needs(tmp_path):
    port = free_port()
    env = env_for(tmp_path / "var", port, SKYLINE_FLUX_ALLOW_ANONYMOUS="true")
    run = Running(env, tmp_path, "serve", "flux")
    base = f"http://127.0.0.1:{port}"
    run.wait_healthy(base)
    r = httpx.get(f"{base}/flux/metric_data",
                  params={"metric": "ingest.via.flux", "value": "4", "timestamp": str(int(time.time()))})
    assert r.status_code == 204, r.text
    assert run.stop() == 0
    assert "components          webapp, flux\n" in run.stdout
