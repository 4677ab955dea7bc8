"""Stand-ins for the services alerts go to: HTTP endpoints that validate payloads with the
field names and limits Slack, PagerDuty and Alertmanager document, a signed-webhook
receiver, and syslog listeners that parse RFC 5424.

The limits are written here, independently of the alerters' code, so a payload the real
service would refuse fails the test.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import socket
import threading
import time
from collections.abc import Callable
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

# Slack Block Kit (docs.slack.dev reference/block-kit): per-message and per-block limits
SLACK_BLOCKS_MAX = 50
SLACK_HEADER_TEXT_MAX = 150
SLACK_SECTION_TEXT_MAX = 3000
SLACK_FIELDS_MAX = 10
SLACK_FIELD_TEXT_MAX = 2000
SLACK_IMAGE_URL_MAX = 3000
SLACK_ALT_TEXT_MAX = 2000
SLACK_BLOCK_TYPES = {"header", "section", "divider", "image", "context", "actions"}

# PagerDuty Events API v2 (developer.pagerduty.com, "Send an Alert Event")
PD_SUMMARY_MAX = 1024
PD_DEDUP_KEY_MAX = 255
PD_SEVERITIES = {"critical", "error", "warning", "info"}
PD_ACTIONS = {"trigger", "acknowledge", "resolve"}

Validator = Callable[[str, dict[str, str], bytes], str | None]


def _text_obj(obj: Any, types: set[str], limit: int, where: str) -> str | None:
    if not isinstance(obj, dict) or obj.get("type") not in types:
        return f"{where}: text object of type {types} expected"
    text = obj.get("text")
    if not isinstance(text, str) or not text:
        return f"{where}: text must be a non-empty string"
    if len(text) > limit:
        return f"{where}: text longer than {limit}"
    return None


def validate_slack(path: str, headers: dict[str, str], body: bytes) -> str | None:
    try:
        msg = json.loads(body)
    except ValueError:
        return "invalid_payload"
    if not isinstance(msg.get("text"), str):
        return "missing text (the notification fallback)"
    blocks = msg.get("blocks")
    if not isinstance(blocks, list) or not 1 <= len(blocks) <= SLACK_BLOCKS_MAX:
        return "invalid_blocks: 1..50 blocks"
    for i, b in enumerate(blocks):
        t = b.get("type")
        if t not in SLACK_BLOCK_TYPES:
            return f"invalid_blocks: block {i} type {t!r}"
        if t == "header":
            err = _text_obj(b.get("text"), {"plain_text"}, SLACK_HEADER_TEXT_MAX, f"block {i}")
            if err:
                return "invalid_blocks: " + err
        if t == "section":
            if "text" not in b and "fields" not in b:
                return f"invalid_blocks: section {i} needs text or fields"
            if "text" in b:
                err = _text_obj(b["text"], {"plain_text", "mrkdwn"}, SLACK_SECTION_TEXT_MAX,
                                f"section {i}")
                if err:
                    return "invalid_blocks: " + err
            fields = b.get("fields", [])
            if len(fields) > SLACK_FIELDS_MAX:
                return f"invalid_blocks: section {i} has more than {SLACK_FIELDS_MAX} fields"
            for j, f in enumerate(fields):
                err = _text_obj(f, {"plain_text", "mrkdwn"}, SLACK_FIELD_TEXT_MAX,
                                f"section {i} field {j}")
                if err:
                    return "invalid_blocks: " + err
        if t == "image":
            url, alt = b.get("image_url"), b.get("alt_text")
            if not isinstance(url, str) or len(url) > SLACK_IMAGE_URL_MAX:
                return f"invalid_blocks: image {i} image_url"
            if not isinstance(alt, str) or len(alt) > SLACK_ALT_TEXT_MAX:
                return f"invalid_blocks: image {i} alt_text"
    return None


def validate_pagerduty(path: str, headers: dict[str, str], body: bytes) -> str | None:
    if path != "/v2/enqueue":
        return f"unknown path {path}"
    try:
        ev = json.loads(body)
    except ValueError:
        return "Event object is invalid: not JSON"
    if not isinstance(ev.get("routing_key"), str) or len(ev["routing_key"]) != 32:
        return "Event object is invalid: routing_key must be 32 characters"
    if ev.get("event_action") not in PD_ACTIONS:
        return "Event object is invalid: event_action"
    key = ev.get("dedup_key")
    if ev["event_action"] != "trigger" and not key:
        return "Event object is invalid: dedup_key is required to resolve"
    if key is not None and (not isinstance(key, str) or len(key) > PD_DEDUP_KEY_MAX):
        return f"Event object is invalid: dedup_key longer than {PD_DEDUP_KEY_MAX}"
    if ev["event_action"] == "trigger":
        p = ev.get("payload")
        if not isinstance(p, dict):
            return "Event object is invalid: payload is required"
        if not isinstance(p.get("summary"), str) or not 1 <= len(p["summary"]) <= PD_SUMMARY_MAX:
            return f"Event object is invalid: summary must be 1..{PD_SUMMARY_MAX} characters"
        if not isinstance(p.get("source"), str) or not p["source"]:
            return "Event object is invalid: source is required"
        if p.get("severity") not in PD_SEVERITIES:
            return "Event object is invalid: severity"
        if "timestamp" in p:
            try:
                datetime.fromisoformat(p["timestamp"].replace("Z", "+00:00"))
            except (ValueError, AttributeError):
                return "Event object is invalid: timestamp is not ISO 8601"
        for link in ev.get("links", []):
            if not isinstance(link.get("href"), str):
                return "Event object is invalid: links[].href"
    return None


def validate_signed(secret: str, header: str = "X-Skyline-Signature") -> Validator:
    def check(path: str, headers: dict[str, str], body: bytes) -> str | None:
        lower = {k.lower(): v for k, v in headers.items()}
        stamp = lower.get("x-skyline-timestamp", "")
        if not stamp.isdigit() or abs(time.time() - int(stamp)) > 300:
            return "stale or missing timestamp"
        signed = stamp.encode() + b"." + body
        want = "sha256=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
        got = lower.get(header.lower(), "")
        if not hmac.compare_digest(want, got):
            return "bad signature"
        try:
            json.loads(body)
        except ValueError:
            return "not JSON"
        return None

    return check


class HttpSink:
    """An HTTP server on a free loopback port recording every POST. `fail` answers the
    first N requests with `fail_status` (or, for status 0, by sleeping `delay` seconds: a
    timeout); `validate` turns a payload the real service would refuse into a 400."""

    def __init__(self, validate: Validator | None = None, *, fail: int = 0,
                 fail_status: int = 500, delay: float = 0.0,
                 ok_status: int = 200, ok_body: bytes = b"ok"):
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.accepted: list[Any] = []
        self.refused: list[str] = []
        self.validate = validate
        self.fail = fail
        self.fail_status = fail_status
        self.delay = delay
        self.ok_status = ok_status
        self.ok_body = ok_body
        self._lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n)
                headers = dict(self.headers.items())
                with sink._lock:
                    sink.requests.append((self.path, headers, body))
                    failing = sink.fail > 0
                    if failing:
                        sink.fail -= 1
                if failing:
                    if sink.fail_status == 0:
                        time.sleep(sink.delay)
                    self._answer(sink.fail_status or 503, b"failing on purpose")
                    return
                if sink.validate is not None:
                    err = sink.validate(self.path, headers, body)
                    if err:
                        sink.refused.append(err)
                        self._answer(400, err.encode())
                        return
                sink.accepted.append(json.loads(body) if body else None)
                self._answer(sink.ok_status, sink.ok_body)

            def _answer(self, status: int, body: bytes) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass  # the client gave up (timeout test)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> HttpSink:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def wait(self, n: int, timeout: float = 20.0) -> list[Any]:
        deadline = time.monotonic() + timeout
        while len(self.accepted) < n and time.monotonic() < deadline:
            time.sleep(0.05)
        return list(self.accepted)


# syslog ---------------------------------------------------------------------------------------
# RFC 5424 section 6: HEADER SP STRUCTURED-DATA [SP MSG]
RFC5424 = re.compile(
    rb"^<(?P<pri>\d{1,3})>(?P<version>1) "
    rb"(?P<timestamp>-|\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,6})?(?:Z|[+-]\d\d:\d\d)) "
    rb"(?P<hostname>[!-~]{1,255}) (?P<app>[!-~]{1,48}) (?P<procid>[!-~]{1,128}) "
    rb"(?P<msgid>[!-~]{1,32}) "
    rb"(?P<sd>-|(?:\[[^ =\]\"]{1,32}(?: [^ =\]\"]{1,32}=\"(?:[^\"\\\]]|\\[\"\\\]])*\")*\])+)"
    rb"(?: (?P<msg>.*))?$", re.S)
_SD_PARAM = re.compile(rb' ([^ =\]"]+)="((?:[^"\\\]]|\\["\\\]])*)"')


def parse_rfc5424(data: bytes) -> dict[str, Any]:
    m = RFC5424.match(data)
    assert m, f"not an RFC 5424 message: {data!r}"
    pri = int(m["pri"])
    assert pri <= 191, "PRI out of range"
    sd = m["sd"]
    params = {k.decode(): re.sub(rb'\\(["\\\]])', rb"\1", v).decode()
              for k, v in _SD_PARAM.findall(sd)}
    sd_id = sd[1:].split(b" ", 1)[0].decode() if sd != b"-" else ""
    msg = m["msg"] or b""
    bom = msg.startswith(b"\xef\xbb\xbf")
    return {"facility": pri // 8, "severity": pri % 8, "timestamp": m["timestamp"].decode(),
            "hostname": m["hostname"].decode(), "app": m["app"].decode(),
            "procid": m["procid"].decode(), "msgid": m["msgid"].decode(), "sd_id": sd_id,
            "params": params, "msg": (msg[3:] if bom else msg).decode("utf-8"), "bom": bom}


class SyslogListener:
    """Receives syslog messages over udp, tcp (octet counting) or a unix datagram socket."""

    def __init__(self, kind: str, tmp: Path | None = None):
        self.kind = kind
        self.messages: list[bytes] = []
        if kind == "udp":
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.sock.bind(("127.0.0.1", 0))
            self.address = f"udp://127.0.0.1:{self.sock.getsockname()[1]}"
        elif kind == "tcp":
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.sock.bind(("127.0.0.1", 0))
            self.sock.listen(5)
            self.address = f"tcp://127.0.0.1:{self.sock.getsockname()[1]}"
        else:
            assert tmp is not None
            path = tmp / "log.sock"
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self.sock.bind(str(path))
            self.address = f"unix://{path}"
        self.sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if self.kind == "tcp":
                    conn, _ = self.sock.accept()
                    self._read_framed(conn)
                else:
                    self.messages.append(self.sock.recv(65536))
            except TimeoutError:
                continue
            except OSError:
                return

    def _read_framed(self, conn: socket.socket) -> None:
        buf = b""
        conn.settimeout(2)
        with conn:
            while True:
                try:
                    chunk = conn.recv(65536)
                except TimeoutError:
                    break
                if not chunk:
                    break
                buf += chunk
        while buf:  # RFC 6587 octet counting: MSG-LEN SP SYSLOG-MSG
            length, _, rest = buf.partition(b" ")
            n = int(length)
            self.messages.append(rest[:n])
            buf = rest[n:]

    def __enter__(self) -> SyslogListener:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()

    def wait(self, n: int, timeout: float = 10.0) -> list[bytes]:
        deadline = time.monotonic() + timeout
        while len(self.messages) < n and time.monotonic() < deadline:
            time.sleep(0.05)
        return list(self.messages)
