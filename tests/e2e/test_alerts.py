"""`skyline run` from anomaly event to alert: panorama stores once per PANORAMA_EXPIRY_TIME,
each channel alerts once per expiration with its graph, a recovery resolves, pending alerts
survive a restart; and the silence and alert commands and APIs."""

from __future__ import annotations

import json
import socket
import time
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from skyline.core.events import AlgorithmResult, AnomalyEvent
from skyline.events.stream import publish
from skyline.settings import load_settings
from skyline.store.redis_client import redis_session
from skyline.store.sql import make_engine
from skyline.store.sql.queries import AnomalyQuery, query_anomalies
from tests.alertsinks import HttpSink, SyslogListener, parse_rfc5424, validate_signed
from tests.conftest import free_port
from tests.e2e.skylineproc import AUTH, Running, cli, env_for


def _event(metric: str, status: str = "anomalous", offset: float = 0.0) -> AnomalyEvent:
    end = time.time() + offset
    t = np.arange(end - 600, end + 1, 60.0)
    v = np.arange(len(t), dtype=float)
    v[-1] = 100.0
    return AnomalyEvent.build(metric=metric, timestamp=float(t[-1]), value=float(v[-1]),
                              score=0.9, source="analyzer", window_timestamps=t,
                              window_values=v, status=status, triggered=("grubbs",),
                              results=(AlgorithmResult("grubbs", True, 5, 3, "G 5 > 3"),))


def _config(tmp: Path, webhook: str, syslog: str, smtp_port: int) -> Path:
    cfg = tmp / "skyline.toml"
    cfg.write_text(f"""
WEBAPP_PUBLIC_URL = "https://sky.example.com"

[[ALERTS]]
pattern = "svc.**"
channel = "webhook"
expiration = 3600

[[ALERTS]]
pattern = "svc.**"
channel = "syslog"
expiration = 3600

[[ALERTS]]
pattern = "svc.**"
channel = "smtp"
expiration = 3600

[alerters]
retry_initial = 0.5
retry_max = 1.0
poll_interval = 0.2

[alerters.webhook]
enabled = true
url = "{webhook}"
secret = "s3cret"

[alerters.syslog]
enabled = true
address = "{syslog}"

[alerters.smtp]
enabled = true
host = "127.0.0.1"
port = {smtp_port}
sender = "sky@example.com"
recipients = ["ops@example.com"]
""")
    return cfg


class _Mailbox:
    def __init__(self) -> None:
        self.messages: list[bytes] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.messages.append(envelope.content)
        return "250 OK"


def _wait(cond: Any, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.1)
    return bool(cond())


def test_anomaly_to_every_channel_once_then_resolved(tmp_path: Path) -> None:
    from aiosmtpd.controller import Controller

    box = _Mailbox()
    smtp_port = free_port()
    ctl = Controller(box, hostname="127.0.0.1", port=smtp_port)
    ctl.start()
    port = free_port()
    data = tmp_path / "var"
    with HttpSink(validate_signed("s3cret")) as sink, \
            SyslogListener("udp") as syslog:
        cfg = _config(tmp_path, sink.url + "/hook", syslog.address, smtp_port)
        env = env_for(data, port, SKYLINE_CONFIG=str(cfg))
        run = Running(env, tmp_path)
        try:
            base = f"http://127.0.0.1:{port}"
            run.wait_healthy(base)
            with redis_session(load_settings(DATA_DIR=data)) as h:
                publish(h.client, _event("svc.<b>api</b>.rpm"))
                assert _wait(lambda: sink.accepted and syslog.messages and box.messages)
                # another anomaly of the same metric within the expiration: stored by
                # neither panorama (PANORAMA_EXPIRY_TIME) nor alerted
                publish(h.client, _event("svc.<b>api</b>.rpm", offset=60))
                time.sleep(2)
                assert len(sink.accepted) == 1 and len(box.messages) == 1
                publish(h.client, _event("svc.<b>api</b>.rpm", "recovered", offset=120))
                assert _wait(lambda: len(sink.accepted) == 2)

            # panorama's API: one anomalous and one recovered row, and the graph
            r = httpx.get(f"{base}/api/v1/anomalies", params={"pattern": "svc.**"}, timeout=10,
                          headers=AUTH)
            assert r.status_code == 200, r.text
            items = r.json()["items"]
            assert [i["status"] for i in items] == ["recovered", "anomalous"]
            g = httpx.get(f"{base}/api/v1/anomalies/{items[1]['id']}/graph.png", timeout=30,
                          headers=AUTH)
            assert g.status_code == 200 and g.content.startswith(b"\x89PNG")
            page = httpx.get(f"{base}/anomalies/{items[1]['id']}", timeout=10, headers=AUTH)
            assert "&lt;b&gt;api&lt;/b&gt;" in page.text and "<b>api</b>" not in page.text

            # the alert log through the API
            log = httpx.get(f"{base}/api/v1/alerts/log", timeout=10, headers=AUTH).json()["log"]
            assert sorted((x["channel"], x["kind"], x["status"]) for x in log) == [
                ("smtp", "alert", "sent"), ("syslog", "alert", "sent"),
                ("webhook", "alert", "sent"), ("webhook", "resolve", "sent")]
        finally:
            code = run.stop()
            ctl.stop()
        assert code == 0, run.stderr
    alert, resolve = sink.accepted
    assert alert["alert"]["kind"] == "alert" and resolve["alert"]["kind"] == "resolve"
    assert alert["alert"]["link"].startswith("https://sky.example.com/anomalies/")
    msg = parse_rfc5424(syslog.messages[0])
    assert msg["params"]["metric"] == "svc.<b>api</b>.rpm"
    mail = message_from_bytes(box.messages[0], policy=policy.default)
    kinds = [p.get_content_type() for p in mail.walk()]
    assert kinds == ["multipart/alternative", "text/plain", "multipart/related", "text/html",
                     "image/png"]


def test_pending_alerts_survive_a_restart(tmp_path: Path) -> None:
    port = free_port()
    data = tmp_path / "var"
    with HttpSink(fail=10_000, fail_status=503) as sink:
        cfg = tmp_path / "skyline.toml"
        cfg.write_text(f"""
[[ALERTS]]
pattern = "**"
channel = "webhook"

[alerters]
retry_initial = 0.2
retry_max = 0.5
poll_interval = 0.2

[alerters.webhook]
enabled = true
url = "{sink.url}"
""")
        env = env_for(data, port, SKYLINE_CONFIG=str(cfg))
        run = Running(env, tmp_path)
        try:
            run.wait_healthy(f"http://127.0.0.1:{port}")
            with redis_session(load_settings(DATA_DIR=data)) as h:
                publish(h.client, _event("svc.down"))
            assert _wait(lambda: len(sink.requests) >= 2)
        finally:
            assert run.stop() == 0, run.stderr
        assert not sink.accepted
        sink.fail = 0  # the endpoint is back
        run = Running(env, tmp_path)
        try:
            run.wait_healthy(f"http://127.0.0.1:{port}")
            assert _wait(lambda: len(sink.accepted) == 1)
        finally:
            assert run.stop() == 0, run.stderr
    assert sink.accepted[0]["alert"]["metric"] == "svc.down"


def test_silence_commands_api_and_alert_test(tmp_path: Path) -> None:
    data = tmp_path / "var"
    with HttpSink() as sink:
        cfg = tmp_path / "skyline.toml"
        cfg.write_text(f"""
[alerters.webhook]
enabled = true
url = "{sink.url}"

[alerters.syslog]
enabled = true
address = "udp://127.0.0.1:{free_port(socket.SOCK_DGRAM)}"

[alerters.pagerduty]
enabled = true
routing_key = "{'r' * 32}"
url = "http://127.0.0.1:{free_port()}/v2/enqueue"
""")
        env = env_for(data, free_port(), SKYLINE_CONFIG=str(cfg))
        added = cli(env, "silence", "add", "svc.**", "--until", "2h", "--reason",
                    "deploy", "--who", "ana", "--json")
        assert added.returncode == 0, added.stderr
        sid = json.loads(added.stdout)["id"]
        listed = cli(env, "silence", "list", "--json")
        assert [s["pattern"] for s in json.loads(listed.stdout)] == ["svc.**"]
        assert cli(env, "silence", "remove", str(sid)).returncode == 0
        gone = cli(env, "silence", "remove", str(sid))
        assert gone.returncode == 1 and f"silence {sid} not found" in gone.stderr
        bad = cli(env, "silence", "add", "re:(", "--until", "1h")
        assert bad.returncode == 1 and "invalid regular expression" in bad.stderr

        ok = cli(env, "alert", "test", "webhook")
        assert ok.returncode == 0 and "test alert sent" in ok.stdout, ok.stderr
        assert sink.accepted[0]["alert"]["kind"] == "test"
        assert cli(env, "alert", "test", "syslog").returncode == 0
        down = cli(env, "alert", "test", "pagerduty", "--json")
        assert down.returncode == 1
        assert json.loads(down.stdout)["ok"] is False
        off = cli(env, "alert", "test", "slack")
        assert off.returncode == 1 and "not enabled" in off.stderr

    port = free_port()
    run = Running(env_for(data, port), tmp_path)
    try:
        base = f"http://127.0.0.1:{port}"
        run.wait_healthy(base)
        r = httpx.post(f"{base}/api/v1/silences", json={"pattern": "db.**", "until": "30m",
                                                        "reason": "backup", "who": "bo"},
                       headers=AUTH)
        assert r.status_code == 201, r.text
        sid = r.json()["id"]
        assert r.json()["until"] > time.time() + 1700
        listed = httpx.get(f"{base}/api/v1/silences", headers=AUTH).json()["silences"]
        assert [s["id"] for s in listed] == [sid]
        assert httpx.delete(f"{base}/api/v1/silences/{sid}", headers=AUTH).status_code == 204
        assert httpx.delete(f"{base}/api/v1/silences/{sid}", headers=AUTH).status_code == 404
        bad = httpx.post(f"{base}/api/v1/silences", json={"pattern": "re:(", "until": "1h"},
                         headers=AUTH)
        assert bad.status_code == 400
        bad = httpx.post(f"{base}/api/v1/silences", json={"pattern": "a", "until": "soon"},
                         headers=AUTH)
        assert bad.status_code == 400 and "until" in bad.json()["error"]
    finally:
        assert run.stop() == 0, run.stderr


def test_panorama_samples_one_event_per_metric_per_expiry(tmp_path: Path) -> None:
    port = free_port()
    data = tmp_path / "var"
    run = Running(env_for(data, port, SKYLINE_PANORAMA_EXPIRY_TIME="900"), tmp_path)
    try:
        run.wait_healthy(f"http://127.0.0.1:{port}")
        with redis_session(load_settings(DATA_DIR=data)) as h:
            for i in range(3):
                publish(h.client, _event("svc.sampled", offset=60 * i))
            publish(h.client, _event("svc.other"))
        engine = make_engine(f"sqlite:///{data / 'skyline.db'}")
        try:
            assert _wait(lambda: len(query_anomalies(engine, AnomalyQuery()).items) >= 2)
            time.sleep(1)
            rows = query_anomalies(engine, AnomalyQuery()).items
        finally:
            engine.dispose()
    finally:
        assert run.stop() == 0, run.stderr
    assert sorted(r.metric for r in rows) == ["svc.other", "svc.sampled"]
