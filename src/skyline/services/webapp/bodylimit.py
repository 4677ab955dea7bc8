"""A size limit on every request body, counted as it streams, and a clean answer when a
request is refused before its body was read.

Plain ASGI, between the request counter and the login check, so that no route, form parser
or CSRF check ever holds more than its limit: a body declared larger (Content-Length) is
refused before any of it is read, and a chunked one as soon as it passes the limit (the app
then sees the client as gone, and its answer is replaced by the 413). Flux's routes read
their bodies within flux's own limits and count their own refusals, so they pass through.

Whatever the answer, a body the app did not read is read and thrown away (up to DRAIN_BYTES,
for at most DRAIN_SECONDS) before the answer is ended: closing a connection with unread data
makes the kernel reset it, and the client would see a reset instead of the 413 or 401. A 413
for a body still arriving is sent before that drain, so the client can stop sending early.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from skyline.telemetry import Telemetry

log = logging.getLogger(__name__)

DRAIN_BYTES = 32 * 1024 * 1024
DRAIN_SECONDS = 10.0


class _Body:
    __slots__ = ("received", "complete", "too_large", "answered")

    def __init__(self) -> None:
        self.received = 0
        self.complete = False
        self.too_large = False
        self.answered = False


def _declared(scope: Scope) -> int | None:
    for k, v in scope.get("headers", ()):
        if k == b"content-length":
            text = v.decode("latin-1").strip()
            return int(text) if text.isdigit() else None
    return None


class BodyLimit:
    """`limit_for(path)` gives a route's limit in bytes (None: the route limits itself);
    `error(request, status, message)` makes the refusal, as the app's error handler would."""

    def __init__(self, app: ASGIApp, limit_for: Callable[[str], int | None],
                 error: Callable[[Request, int, str], Response], telemetry: Telemetry):
        self.app = app
        self.limit_for = limit_for
        self.error = error
        self.tel = telemetry

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        body = _Body()
        declared = _declared(scope)
        if declared == 0 or scope["method"] in ("GET", "HEAD") and declared is None:
            body.complete = True
        if limit is not None and declared is not None and declared > limit:
            body.too_large = True
            await self._refuse(scope, receive, send, body, limit)
            return

        async def limited_receive() -> Message:
            if body.too_large:  # past the limit the app sees the client as gone
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                body.received += len(message.get("body", b""))
                if not message.get("more_body", False):
                    body.complete = True
                if limit is not None and body.received > limit:
                    body.too_large = True
                    return {"type": "http.disconnect"}
            elif message["type"] == "http.disconnect":
                body.complete = True
            return message

        async def guarded_send(message: Message) -> None:
            if body.too_large:
                return  # the app's own answer gives way to the 413, sent below
            if message["type"] == "http.response.start" and not body.complete:
                await self._drain(receive, body)
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except ClientDisconnect:
            if not body.too_large:
                raise
        if body.too_large and not body.answered:
            assert limit is not None
            await self._refuse(scope, receive, send, body, limit)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, body: _Body,
                      limit: int) -> None:
        body.answered = True
        self.tel.incr("bodies_too_large")
        client = scope.get("client")
        log.warning("refused a %s %s body over %d bytes from %s", scope["method"],
                    scope["path"], limit, f"{client[0]}:{client[1]}" if client else "?")
        response = self.error(Request(scope), 413,
                              f"the request body is over {limit} bytes")
        if body.complete:
            await response(scope, receive, send)
            return
        # The answer goes out first, so a client that watches for it stops sending at once;
        # the response is only ended after the drain, because the server closes the
        # connection when it ends and unread data there would make the kernel reset it,
        # dropping the 413 from the client's receive buffer.
        response.headers["Connection"] = "close"
        await send({"type": "http.response.start", "status": response.status_code,
                    "headers": response.raw_headers})
        await send({"type": "http.response.body", "body": response.body, "more_body": True})
        await self._drain(receive, body)
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _drain(self, receive: Receive, body: _Body) -> None:
        """Read and drop what is left of the body, within DRAIN_BYTES and DRAIN_SECONDS."""
        drained = 0

        async def read() -> None:
            nonlocal drained
            while not body.complete and drained < DRAIN_BYTES:
                message = await receive()
                if message["type"] != "http.request":
                    body.complete = True
                    return
                drained += len(message.get("body", b""))
                if not message.get("more_body", False):
                    body.complete = True

        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(read(), DRAIN_SECONDS)
