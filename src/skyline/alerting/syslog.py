"""syslog: RFC 5424 messages over UDP (one per datagram, RFC 5426), TCP (octet-counting
framing, RFC 6587) or a unix socket (datagram, as /dev/log, else stream).

    <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [skyline@32473 k="v" ...] BOM MSG

The structured data carries the facts for machines; SD-PARAM values have `"`, `\\` and `]`
escaped as RFC 5424 requires, and header fields are printable US-ASCII without spaces.
32473 is the private enterprise number RFC 5612 reserves for documentation and examples.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from datetime import UTC, datetime

from skyline.alerting.base import DeliveryError
from skyline.alerting.content import Alert, fmt, one_line
from skyline.settings.alerts import SYSLOG_FACILITIES, SYSLOG_SEVERITIES, SyslogChannel

SD_ID = "skyline@32473"
_FACILITY_CODES = {name: i for i, name in enumerate(SYSLOG_FACILITIES[:16])} | {
    f"local{i}": 16 + i for i in range(8)}
_SEVERITY_CODES = {name: i for i, name in enumerate(SYSLOG_SEVERITIES)}
BOM = "\ufeff"


def _header_field(text: str, limit: int) -> str:
    """PRINTUSASCII (33..126), at most `limit` characters; '-' when empty."""
    clean = "".join(c if 33 <= ord(c) <= 126 else "_" for c in text)[:limit]
    return clean or "-"


def sd_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def format_message(alert: Alert, cfg: SyslogChannel, *, hostname: str | None = None,
                   now: float | None = None) -> bytes:
    severity = str(alert.options.get("severity") or cfg.severity)
    if alert.resolved:
        severity = "notice"
    pri = _FACILITY_CODES[cfg.facility] * 8 + _SEVERITY_CODES[severity]
    # TIMESTAMP is when the message is written (RFC 5424 6.2.3); the anomaly's time is in
    # the structured data and the text
    ts = datetime.fromtimestamp(time.time() if now is None else now, UTC)
    stamp = ts.isoformat(timespec="microseconds").replace("+00:00", "Z")
    host = _header_field(hostname or socket.gethostname(), 255)
    app = _header_field(cfg.app_name, 48)
    procid = _header_field(str(os.getpid()), 128)
    msgid = {"alert": "anomaly", "update": "update", "resolve": "recovered",
             "test": "test"}.get(alert.kind, "-")
    if alert.incident is not None and alert.kind in ("alert", "resolve"):
        msgid = "incident" if alert.kind == "alert" else "incident_over"
    e = alert.event
    params = {"id": e.id, "metric": e.metric, "value": fmt(e.value), "score": f"{e.score:.3f}",
              "source": e.source, "status": "test" if alert.test else e.status,
              "triggered": ",".join(e.triggered), "link": alert.link}
    if alert.incident is not None:
        params["incident"] = str(alert.incident.get("incident"))
        params["members"] = str(len(alert.members()))
    sd = "[" + SD_ID + "".join(f' {k}="{sd_escape(v)}"' for k, v in params.items()) + "]"
    msg = one_line(alert.summary())
    return f"<{pri}>1 {stamp} {host} {app} {procid} {msgid} {sd} {BOM}{msg}".encode()


class Syslog:
    name = "syslog"
    resolves = False
    wants_graph = False

    def __init__(self, cfg: SyslogChannel, timeout: float):
        self.cfg = cfg
        self.timeout = timeout

    async def send(self, alert: Alert) -> None:
        data = format_message(alert, self.cfg)
        await asyncio.to_thread(self._send, data)

    def _send(self, data: bytes) -> None:
        scheme, _, rest = self.cfg.address.partition("://")
        try:
            if scheme == "unix":
                self._send_unix(rest, data)
                return
            host, _, port = rest.rpartition(":")
            if scheme == "udp":
                infos = socket.getaddrinfo(host, int(port), type=socket.SOCK_DGRAM)
                family, kind, proto, _, addr = infos[0]
                with socket.socket(family, kind, proto) as s:
                    s.settimeout(self.timeout)
                    s.sendto(data, addr)
            else:
                with socket.create_connection((host, int(port)), timeout=self.timeout) as s:
                    s.sendall(str(len(data)).encode() + b" " + data)
        except OSError as e:
            raise DeliveryError(f"syslog {self.cfg.address}: {e.strerror or e}") from None

    def _send_unix(self, path: str, data: bytes) -> None:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
                s.settimeout(self.timeout)
                s.sendto(data, path)
                return
        except OSError as e:
            # a stream socket (rsyslog's imuxsock can be either) refuses datagrams
            if e.errno not in (91, 107, 111):  # EPROTOTYPE, ENOTCONN, ECONNREFUSED
                raise
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(self.timeout)
            s.connect(path)
            s.sendall(str(len(data)).encode() + b" " + data)

    async def aclose(self) -> None:
        return None
