"""SMTP: an HTML email (plain-text alternative) with the graph inline, as upstream's
smtp alerter sent; STARTTLS or SSL, and login when a user is set.

smtplib blocks, so each send runs in a worker thread: a slow mail server holds up only
its own channel's worker, never the event loop.
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import cast

from skyline.alerting.base import DeliveryError
from skyline.alerting.content import Alert, html_text, one_line
from skyline.settings.alerts import SmtpChannel

GRAPH_FILENAME = "graph.png"


def build_message(alert: Alert, cfg: SmtpChannel, recipients: list[str]) -> EmailMessage:
    """multipart/alternative: text/plain, then multipart/related (text/html + image/png
    referenced by Content-ID), so mail clients show the graph inside the HTML."""
    msg = EmailMessage()
    msg["Subject"] = one_line(f"{cfg.subject_prefix} {alert.title()}".strip())
    msg["From"] = cfg.sender
    msg["To"] = ", ".join(recipients)
    msg["Date"] = formatdate(localtime=False)
    msg["Message-ID"] = make_msgid(domain=cfg.sender.rsplit("@", 1)[-1])
    msg["X-Skyline-Event"] = alert.event.id

    lines = [alert.title(), ""]
    lines += [f"{k}: {v}" for k, v in alert.facts()]
    algos = alert.algorithms()
    if algos:
        lines += ["", "algorithms that fired:"]
        lines += [f"  {a}: {t}" if t else f"  {a}" for a, t in algos]
    lines += ["", f"details: {alert.link}"]
    msg.set_content("\n".join(lines) + "\n")

    graph = alert.graph if cfg.embed_graph else None
    cid = make_msgid(domain="skyline")
    rows = "".join(f"<tr><th align='left'>{html_text(k)}</th><td>{html_text(v)}</td></tr>"
                   for k, v in alert.facts())
    algo_html = "".join(f"<li><b>{html_text(a)}</b>{': ' + html_text(t) if t else ''}</li>"
                        for a, t in algos)
    body = [f"<html><body><h2>{html_text(alert.title())}</h2>", f"<table>{rows}</table>"]
    if algo_html:
        body.append(f"<p>Algorithms that fired:</p><ul>{algo_html}</ul>")
    if graph:
        body.append(f"<p><img src=\"cid:{cid[1:-1]}\" alt=\"graph of "
                    f"{html_text(alert.metric)}\"></p>")
    what = "incident" if alert.incident is not None else "anomaly"
    body.append(f"<p><a href=\"{html_text(alert.link)}\">See this {what} in Skyline</a></p>")
    body.append("</body></html>")
    msg.add_alternative("\n".join(body), subtype="html")
    if graph:
        html_part = cast(list[EmailMessage], msg.get_payload())[1]
        html_part.add_related(graph, maintype="image", subtype="png", cid=cid,
                              disposition="inline", filename=GRAPH_FILENAME)
    return msg


class Smtp:
    name = "smtp"
    resolves = False
    wants_graph = True

    def __init__(self, cfg: SmtpChannel, timeout: float):
        self.cfg = cfg
        self.timeout = timeout

    def recipients(self, alert: Alert) -> list[str]:
        r = alert.options.get("recipients") or self.cfg.recipients
        return [str(a) for a in r]

    async def send(self, alert: Alert) -> None:
        recipients = self.recipients(alert)
        if not recipients:
            raise DeliveryError("no recipients: set alerters.smtp.recipients", retry=False)
        msg = build_message(alert, self.cfg, recipients)
        await asyncio.to_thread(self._send, msg, recipients)

    def _send(self, msg: EmailMessage, recipients: list[str]) -> None:
        c = self.cfg
        try:
            context = ssl.create_default_context(cafile=c.ca_file or None)
            if not c.verify_tls:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            server: smtplib.SMTP
            if c.security == "ssl":
                server = smtplib.SMTP_SSL(c.host, c.port, timeout=self.timeout, context=context)
            else:
                server = smtplib.SMTP(c.host, c.port, timeout=self.timeout)
            with server:
                server.ehlo()
                if c.security == "starttls":
                    server.starttls(context=context)
                    server.ehlo()
                if c.user:
                    password = c.password.get_secret_value() if c.password else ""
                    server.login(c.user, password)
                refused = server.send_message(msg, from_addr=c.sender, to_addrs=recipients)
        except smtplib.SMTPResponseException as e:
            text = e.smtp_error.decode("utf-8", "replace") if isinstance(
                e.smtp_error, bytes) else str(e.smtp_error)
            # 5xx is permanent (bad address, refused login); 4xx asks to try later
            raise DeliveryError(f"SMTP server {c.host}:{c.port} said {e.smtp_code} "
                                f"{' '.join(text.split())}", retry=e.smtp_code < 500) from None
        except smtplib.SMTPRecipientsRefused as e:
            raise DeliveryError(f"SMTP server {c.host}:{c.port} refused every recipient: "
                                f"{sorted(e.recipients)}", retry=False) from None
        except (smtplib.SMTPException, OSError) as e:
            raise DeliveryError(f"SMTP server {c.host}:{c.port}: "
                                f"{str(e) or type(e).__name__}") from None
        if refused:
            # delivered to the others; a retry would send them the alert twice
            raise DeliveryError(f"SMTP server refused some recipients: {sorted(refused)}",
                                retry=False)

    async def aclose(self) -> None:
        return None
