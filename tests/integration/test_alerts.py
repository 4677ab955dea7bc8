"""Alerters against real servers: SMTP (aiosmtpd), HTTP endpoints validating Slack,
PagerDuty and signed-webhook payloads, syslog listeners parsing RFC 5424, and the real
Alertmanager binary. Events go through the real dispatcher (Redis) and queue (SQL)."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import redis
from sqlalchemy.engine import Engine

from skyline.alerting.channels import enabled_channels, make_channel
from skyline.core.events import AlgorithmResult, AnomalyEvent
from skyline.services.alerters.delivery import ChannelWorker
from skyline.services.alerters.dispatch import Dispatcher
from skyline.settings import Settings, load_settings
from skyline.store.sql import alerts as q
from skyline.telemetry import Telemetry
from tests.alertsinks import (
    HttpSink,
    SyslogListener,
    parse_rfc5424,
    validate_pagerduty,
    validate_signed,
    validate_slack,
)
from tests.conftest import free_port, skip_or_fail

NASTY = 'web.<b>x</b>.*bold*_it_~s~`c`&<!here>"q"]\\.cpu'
ROUTING_KEY = "r" * 32


@pytest.fixture(autouse=True)
def _clean_env(clean_env: None) -> None:
    """No SKYLINE_* variable of the developer's shell leaks into these tests."""



def event(metric: str = "web.host1.cpu", status: str = "anomalous", t: float | None = None,
          value: float = 9.0) -> AnomalyEvent:
    end = time.time() if t is None else t
    ts = np.arange(end - 3600, end + 1, 60.0)
    vs = np.sin(ts / 300.0)
    vs[-1] = value
    return AnomalyEvent.build(
        metric=metric, timestamp=float(ts[-1]), value=value, score=0.9, source="analyzer",
        window_timestamps=ts, window_values=vs, status=status, triggered=("grubbs",),
        results=(AlgorithmResult("grubbs", True, 5.0, 3.0, "Grubbs G 5.0 > 3.0"),))


class Harness:
    """The alerters' dispatcher and channel workers, driven step by step."""

    def __init__(self, settings: Settings, client: redis.Redis, engine: Engine):
        self.s = settings
        self.engine = engine
        # one loop for the harness' life: the HTTP clients' pooled connections belong to it
        self.loop = asyncio.new_event_loop()
        self.tel = Telemetry("alerters", "test")
        self.channels = {n: make_channel(n, settings) for n in enabled_channels(settings)}
        self.dispatcher = Dispatcher(settings, client, engine,
                                     {n: c.resolves for n, c in self.channels.items()}, self.tel)
        self.workers = {n: ChannelWorker(c, settings, engine, self.tel, asyncio.Event())
                        for n, c in self.channels.items()}

    def publish(self, e: AnomalyEvent) -> None:
        self.dispatcher.handle(e)

    def drain(self, channel: str, *, at: float | None = None) -> list[str]:
        """Deliver every due row of `channel` (due as of `at`, to reach retries)."""
        async def go() -> list[str]:
            due = q.claim_due(self.engine, channel, lease=60, now=at)
            return await self.workers[channel].deliver_batch(due)

        return self.loop.run_until_complete(go())

    def close(self) -> None:
        async def go() -> None:
            for c in self.channels.values():
                await c.aclose()

        self.loop.run_until_complete(go())
        self.loop.close()

    def log(self, channel: str) -> list[dict[str, Any]]:
        return list(reversed(q.alert_log_rows(self.engine, channel=channel)))


def harness(client: redis.Redis, engine: Engine, **settings: Any) -> Harness:
    settings.setdefault("WEBAPP_PUBLIC_URL", "https://sky.example.com")
    return Harness(load_settings(**settings), client, engine)


# SMTP ------------------------------------------------------------------------------------------
class _Mailbox:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 OK"


@pytest.fixture
def smtp_server() -> Iterator[tuple[_Mailbox, int, list[tuple[str, str]]]]:
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult, LoginPassword

    logins: list[tuple[str, str]] = []

    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str,
                      auth_data: Any) -> AuthResult:
        if isinstance(auth_data, LoginPassword):
            logins.append((auth_data.login.decode(), auth_data.password.decode()))
            ok = auth_data.password == b"pw"
            return AuthResult(success=ok, handled=False)
        return AuthResult(success=False, handled=False)

    box = _Mailbox()
    port = free_port()
    ctl = Controller(box, hostname="127.0.0.1", port=port, authenticator=authenticator,
                     auth_require_tls=False)
    ctl.start()
    try:
        yield box, port, logins
    finally:
        ctl.stop()


def _smtp_settings(port: int, **smtp: Any) -> dict[str, Any]:
    cfg = {"enabled": True, "host": "127.0.0.1", "port": port, "sender": "sky@example.com",
           "recipients": ["ops@example.com"]}
    cfg.update(smtp)
    return {"ALERTS": [{"pattern": "**", "channel": "smtp", "expiration": 3600},
                       {"pattern": "web.**", "channel": "smtp",
                        "options": {"recipients": ["web@example.com"]}}],
            "alerters": {"smtp": cfg}}


def test_smtp_mail_has_html_and_the_graph_inline(redis_client: redis.Redis, engine: Engine,
                                                 smtp_server: Any) -> None:
    box, port, logins = smtp_server
    h = harness(redis_client, engine, **_smtp_settings(port, user="sky", password="pw"))
    try:
        h.publish(event(NASTY))
        assert h.drain("smtp") == ["sent"]
    finally:
        h.close()
    assert logins == [("sky", "pw")]
    [(sender, rcpts, raw)] = box.messages
    assert sender == "sky@example.com" and rcpts == ["ops@example.com"]
    msg = message_from_bytes(raw, policy=policy.default)
    assert msg.get_content_type() == "multipart/alternative"
    plain, related = msg.get_payload()
    assert plain.get_content_type() == "text/plain" and "grubbs" in plain.get_content()
    assert related.get_content_type() == "multipart/related"
    html_part, image = related.get_payload()
    html = html_part.get_content()
    assert "<b>x</b>" not in html and "&lt;b&gt;x&lt;/b&gt;" in html
    assert "https://sky.example.com/anomalies/" in html
    assert image.get_content_type() == "image/png"
    assert image.get_content_disposition() == "inline"
    png = image.get_content()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and png[12:16] == b"IHDR"
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert (width, height) == (800, 300)
    assert f'src="cid:{image["Content-ID"].strip("<>")}"' in html
    assert [r["status"] for r in h.log("smtp")] == ["sent"]


def test_smtp_first_matching_rule_gives_the_recipients(redis_client: redis.Redis,
                                                       engine: Engine, smtp_server: Any) -> None:
    box, port, _ = smtp_server
    settings = _smtp_settings(port)
    settings["ALERTS"].reverse()  # the web.** rule first
    h = harness(redis_client, engine, **settings)
    try:
        h.publish(event("web.api.rpm"))
        h.publish(event("db.rpm"))
        assert h.drain("smtp") == ["sent", "sent"]
    finally:
        h.close()
    assert sorted(r for _, rcpts, _ in box.messages for r in rcpts) == [
        "ops@example.com", "web@example.com"]


def test_a_wrong_smtp_password_is_not_retried(redis_client: redis.Redis, engine: Engine,
                                              smtp_server: Any) -> None:
    _, port, _ = smtp_server
    h = harness(redis_client, engine, **_smtp_settings(port, user="sky", password="bad"))
    try:
        h.publish(event())
        assert h.drain("smtp") == ["expired"]
    finally:
        h.close()
    assert [r["status"] for r in h.log("smtp")] == ["error", "expired"]
    assert "535" in h.log("smtp")[0]["error"]


def test_an_unreachable_smtp_server_is_logged_retried_and_recorded(
        redis_client: redis.Redis, engine: Engine, caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()  # nothing listens there
    settings = _smtp_settings(port)
    settings["alerters"].update({"retry_initial": 5, "retry_max": 20, "max_age": 60})
    h = harness(redis_client, engine, **settings)
    try:
        h.publish(event())
        assert h.drain("smtp") == ["pending"]
        [d] = q.deliveries(engine, channel="smtp")
        assert d.attempts == 1 and 4 < d.next_attempt - time.time() <= 5
        assert h.drain("smtp") == []  # not due yet
        assert h.drain("smtp", at=time.time() + 6) == ["pending"]
        [d] = q.deliveries(engine, channel="smtp")
        assert d.attempts == 2 and 9 < d.next_attempt - time.time() <= 10
    finally:
        h.close()
    rows = h.log("smtp")
    assert [r["status"] for r in rows] == ["error", "error"]
    assert all(f"127.0.0.1:{port}" in r["error"] for r in rows)
    assert "retrying in" in caplog.text


class _TlsMailbox(_Mailbox):
    """Records whether each message came over TLS: aiosmtpd sets session.ssl after STARTTLS;
    with TLS from the start the transport itself is the SSL one."""

    def __init__(self) -> None:
        super().__init__()
        self.tls: list[bool] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.tls.append(session.ssl is not None
                        or server.transport.get_extra_info("ssl_object") is not None)
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture(params=["starttls", "ssl"])
def tls_smtp_server(request: pytest.FixtureRequest, tmp_path: Path
                    ) -> Iterator[tuple[str, _TlsMailbox, int, str, list[str]]]:
    """aiosmtpd with a certificate for 127.0.0.1 from a private CA: STARTTLS required before
    login (aiosmtpd's default auth_require_tls), or TLS from the first byte."""
    import ssl

    import trustme
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult, LoginPassword

    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    logins: list[str] = []

    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str,
                      auth_data: Any) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and auth_data.password == b"pw"
        if ok:
            logins.append(auth_data.login.decode())
        return AuthResult(success=ok, handled=False)

    box = _TlsMailbox()
    port = free_port()
    if request.param == "starttls":
        ctl = Controller(box, hostname="127.0.0.1", port=port, authenticator=authenticator,
                         tls_context=server_ctx, require_starttls=True)
    else:
        ctl = Controller(box, hostname="127.0.0.1", port=port, authenticator=authenticator,
                         ssl_context=server_ctx, auth_require_tls=False)
    ctl.start()
    try:
        yield request.param, box, port, str(ca_file), logins
    finally:
        ctl.stop()


def test_smtp_over_tls_with_login(redis_client: redis.Redis, engine: Engine,
                                  tls_smtp_server: Any) -> None:
    security, box, port, ca_file, logins = tls_smtp_server
    h = harness(redis_client, engine, **_smtp_settings(
        port, security=security, ca_file=ca_file, user="sky", password="pw"))
    try:
        h.publish(event())
        assert h.drain("smtp") == ["sent"], h.log("smtp")
    finally:
        h.close()
    assert logins == ["sky"]
    assert box.tls == [True]
    msg = message_from_bytes(box.messages[0][2], policy=policy.default)
    assert msg.get_content_type() == "multipart/alternative"


def test_smtp_refuses_a_certificate_it_cannot_verify(redis_client: redis.Redis, engine: Engine,
                                                     tls_smtp_server: Any) -> None:
    security, box, port, _, logins = tls_smtp_server
    h = harness(redis_client, engine, **_smtp_settings(  # the system CAs: not ours
        port, security=security, user="sky", password="pw"))
    try:
        h.publish(event())
        assert h.drain("smtp") == ["pending"]  # logged and retried, never sent in clear
    finally:
        h.close()
    assert box.messages == [] and logins == []
    [row] = h.log("smtp")
    assert row["status"] == "error" and "CERTIFICATE_VERIFY_FAILED" in row["error"]


def test_smtp_without_verification_still_encrypts(redis_client: redis.Redis, engine: Engine,
                                                  tls_smtp_server: Any) -> None:
    security, box, port, _, _ = tls_smtp_server
    h = harness(redis_client, engine, **_smtp_settings(
        port, security=security, verify_tls=False, user="sky", password="pw"))
    try:
        h.publish(event())
        assert h.drain("smtp") == ["sent"], h.log("smtp")
    finally:
        h.close()
    assert box.tls == [True]


# Slack, PagerDuty, webhook ----------------------------------------------------------------------
def test_slack_block_kit_message_is_valid_and_escaped(redis_client: redis.Redis,
                                                      engine: Engine) -> None:
    with HttpSink(validate_slack) as sink:
        h = harness(redis_client, engine,
                    ALERTS=[{"pattern": "**", "channel": "slack"}],
                    alerters={"slack": {"enabled": True, "webhook_url": sink.url + "/hook"}})
        try:
            h.publish(event(NASTY + ".z" * 2000))
            assert h.drain("slack") == ["sent"], sink.refused
        finally:
            h.close()
    [payload] = sink.accepted
    text = json.dumps(payload)
    assert "<b>" not in text and "<!here>" not in text and "&lt;!here&gt;" in text
    # no image: Slack would fetch the graph without a login and get a 401
    assert not [b for b in payload["blocks"] if b["type"] == "image"]
    assert "https://sky.example.com/anomalies/" in text


def test_pagerduty_triggers_then_resolves_on_recovery(redis_client: redis.Redis,
                                                      engine: Engine) -> None:
    with HttpSink(validate_pagerduty, ok_status=202,
                  ok_body=b'{"status":"success","message":"Event processed"}') as sink:
        h = harness(redis_client, engine,
                    ALERTS=[{"pattern": "**", "channel": "pagerduty", "expiration": 3600}],
                    alerters={"pagerduty": {"enabled": True, "routing_key": ROUTING_KEY,
                                            "url": sink.url + "/v2/enqueue"}})
        try:
            h.publish(event(NASTY + ".p" * 1000))
            h.publish(event(NASTY + ".p" * 1000, value=12.0))  # same metric: de-duplicated
            assert h.drain("pagerduty") == ["sent"], sink.refused
            h.publish(event(NASTY + ".p" * 1000, status="recovered", value=1.0))
            assert h.drain("pagerduty") == ["sent"], sink.refused
            h.publish(event(NASTY + ".p" * 1000, status="recovered", value=1.1))
            assert h.drain("pagerduty") == []  # nothing open any more
        finally:
            h.close()
    trigger, resolve = sink.accepted
    assert trigger["event_action"] == "trigger" and resolve["event_action"] == "resolve"
    assert trigger["dedup_key"] == resolve["dedup_key"]
    assert len(trigger["payload"]["summary"]) <= 1024 and len(trigger["dedup_key"]) <= 255


def test_webhook_is_signed_retried_after_500_and_every_attempt_logged(
        redis_client: redis.Redis, engine: Engine) -> None:
    with HttpSink(validate_signed("s3cret"), fail=2, fail_status=500) as sink:
        h = harness(redis_client, engine,
                    ALERTS=[{"pattern": "**", "channel": "webhook"}],
                    alerters={"webhook": {"enabled": True, "url": sink.url + "/alerts",
                                          "secret": "s3cret"}, "retry_initial": 1})
        try:
            h.publish(event(NASTY))
            assert h.drain("webhook") == ["pending"]
            assert h.drain("webhook", at=time.time() + 1.5) == ["pending"]
            assert h.drain("webhook", at=time.time() + 3) == ["sent"]
        finally:
            h.close()
    assert len(sink.requests) == 3
    rows = h.log("webhook")
    assert [(r["status"], r["attempt"]) for r in rows] == [
        ("error", 1), ("error", 2), ("sent", 3)]
    assert "HTTP 500" in rows[0]["error"]
    [body] = sink.accepted
    assert body["alert"]["metric"] == NASTY and body["alert"]["kind"] == "alert"


def test_webhook_timeout_is_retried(redis_client: redis.Redis, engine: Engine) -> None:
    with HttpSink(fail=1, fail_status=0, delay=2.0) as sink:
        h = harness(redis_client, engine,
                    ALERTS=[{"pattern": "**", "channel": "webhook"}],
                    alerters={"webhook": {"enabled": True, "url": sink.url},
                              "timeout": 0.5, "retry_initial": 1})
        try:
            h.publish(event())
            assert h.drain("webhook") == ["pending"]
            assert h.drain("webhook", at=time.time() + 1.5) == ["sent"]
        finally:
            h.close()
    rows = h.log("webhook")
    assert rows[0]["status"] == "error" and "no answer within 0.5 s" in rows[0]["error"]


def test_a_refused_payload_is_not_retried(redis_client: redis.Redis, engine: Engine) -> None:
    with HttpSink(lambda *_: "bad request") as sink:
        h = harness(redis_client, engine,
                    ALERTS=[{"pattern": "**", "channel": "webhook"}],
                    alerters={"webhook": {"enabled": True, "url": sink.url}})
        try:
            h.publish(event())
            assert h.drain("webhook") == ["expired"]
        finally:
            h.close()
    assert [r["status"] for r in h.log("webhook")] == ["error", "expired"]


def test_undelivered_alerts_expire_after_max_age(redis_client: redis.Redis,
                                                 engine: Engine) -> None:
    h = harness(redis_client, engine,
                ALERTS=[{"pattern": "**", "channel": "webhook"}],
                alerters={"webhook": {"enabled": True, "url": "http://127.0.0.1:1/"},
                          "max_age": 60, "retry_initial": 50})
    try:
        h.publish(event())
        assert h.drain("webhook") == ["pending"]  # next try in 50 s: within max_age
        assert h.drain("webhook", at=time.time() + 51) == ["expired"]  # next in 100: beyond
    finally:
        h.close()
    assert [r["status"] for r in h.log("webhook")] == ["error", "error", "expired"]


# de-duplication, rate limit, silences ---------------------------------------------------------------
def test_dedup_rate_limit_and_silences(redis_client: redis.Redis, engine: Engine) -> None:
    with HttpSink() as sink:
        h = harness(redis_client, engine,
                    ALERTS=[{"pattern": "**", "channel": "webhook", "expiration": 600}],
                    alerters={"webhook": {"enabled": True, "url": sink.url,
                                          "rate_limit": 3, "send_recovered": False}})
        try:
            first = event("a.one")
            h.publish(first)
            h.publish(first)  # the stream handed it over again
            h.publish(event("a.one", t=time.time() + 60))  # within the expiration
            h.publish(event("a.two"))
            silence = q.add_silence(engine, "b.**", time.time() + 3600, "maintenance", "me")
            h.publish(event("b.three"))
            q.remove_silence(engine, silence.id)
            h.dispatcher.silences.invalidate()
            h.publish(event("b.three", t=time.time() + 1))
            h.publish(event("c.four"))  # 4th alert of the window: over the rate limit
            assert h.drain("webhook") == ["sent", "sent", "sent"]
        finally:
            h.close()
    # different metrics are sent side by side (alerters.concurrency): no order among them
    assert sorted(b["alert"]["metric"] for b in sink.accepted) == ["a.one", "a.two", "b.three"]
    statuses = [(r["metric"], r["status"]) for r in h.log("webhook")]
    assert statuses.count(("c.four", "rate_limited")) == 1
    assert sorted(m for m, st in statuses if st == "sent") == ["a.one", "a.two", "b.three"]


# syslog ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["udp", "tcp", "unix"])
def test_syslog_rfc5424(kind: str, redis_client: redis.Redis, engine: Engine,
                        tmp_path: Path) -> None:
    with SyslogListener(kind, tmp_path) as listener:
        h = harness(redis_client, engine,
                    ALERTS=[{"pattern": "**", "channel": "syslog", "expiration": 1}],
                    alerters={"syslog": {"enabled": True, "address": listener.address,
                                         "facility": "local4", "severity": "warning"}})
        try:
            h.publish(event(NASTY))
            assert h.drain("syslog") == ["sent"]
        finally:
            h.close()
        [raw] = listener.wait(1)
    msg = parse_rfc5424(raw)
    assert (msg["facility"], msg["severity"], msg["app"]) == (20, 4, "skyline")
    assert msg["params"]["metric"] == NASTY and msg["params"]["triggered"] == "grubbs"
    assert NASTY in msg["msg"]


# Alertmanager, the real binary ---------------------------------------------------------------------
ALERTMANAGER_BINARIES = ("prometheus-alertmanager", "alertmanager")


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[str]:
    binary = next((b for b in map(shutil.which, ALERTMANAGER_BINARIES) if b), None)
    if binary is None:
        skip_or_fail("Alertmanager is not installed (Debian: apt-get install "
                     "prometheus-alertmanager)")
    assert binary is not None
    cfg = tmp_path / "alertmanager.yml"
    cfg.write_text("route:\n  receiver: blackhole\nreceivers:\n  - name: blackhole\n")
    port = free_port()
    proc = subprocess.Popen(
        [binary, f"--config.file={cfg}", f"--storage.path={tmp_path / 'am'}",
         f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/-/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                out = proc.stdout.read().decode() if proc.stdout else ""
                raise AssertionError(f"alertmanager did not start: {out[-2000:]}")
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _am_alerts(url: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{url}/api/v2/alerts", timeout=5)
    r.raise_for_status()
    return [a for a in r.json() if a["labels"].get("alertname") == "SkylineAnomaly"]


@pytest.mark.system
def test_alertmanager_lists_the_alert_then_resolves_it(redis_client: redis.Redis,
                                                       engine: Engine, alertmanager: str) -> None:
    h = harness(redis_client, engine,
                ALERTS=[{"pattern": "**", "channel": "alertmanager", "expiration": 900,
                         "options": {"labels": {"team": "web"}}}],
                alerters={"alertmanager": {"enabled": True, "url": alertmanager,
                                           "labels": {"env": "test"}}})
    try:
        h.publish(event(NASTY))
        assert h.drain("alertmanager") == ["sent"]
        deadline = time.monotonic() + 10
        listed = _am_alerts(alertmanager)
        while not listed and time.monotonic() < deadline:
            time.sleep(0.2)
            listed = _am_alerts(alertmanager)
        [a] = listed
        assert a["labels"] == {"alertname": "SkylineAnomaly", "metric": NASTY,
                               "env": "test", "team": "web"}
        assert a["status"]["state"] == "active"
        assert a["annotations"]["description"] == "grubbs: Grubbs G 5.0 > 3.0"
        assert a["generatorURL"].startswith("https://sky.example.com/anomalies/")

        h.publish(event(NASTY, status="recovered", value=1.0))
        assert h.drain("alertmanager") == ["sent"]
        deadline = time.monotonic() + 10
        while _am_alerts(alertmanager) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _am_alerts(alertmanager) == []  # resolved alerts are no longer listed
        resolved = httpx.get(f"{alertmanager}/api/v2/alerts/groups", timeout=5).json()
        assert all(not g["alerts"] for g in resolved)
    finally:
        h.close()
