"""What every flux route shares: keys, reading bodies, refusing requests (counted by
protocol and reason) and turning an outcome into a response.

Handlers are `async def` and submit on the event loop: the write path (`Ingest`) and its
backpressure belong to the loop, as for horizon's listeners. Decompression and parsing are
CPU-bound: small bodies are handled on the loop (a thread hop would cost more than the work);
larger ones are decompressed in flux's own few threads (zlib and snappy release the GIL) and
parsed in flux's own processes (`flux.parse_processes`: a parse holds the interpreter it runs
in, so in a thread a 10 MiB JSON body would stall the web app's UI, API and alerters for its
whole parse), at most `_BUSY_AFTER` requests at a time; beyond that a request answers 503 at
once rather than queueing without bound. A parsing process that dies is replaced and its
request answered 503.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from functools import partial
from typing import Any, NoReturn, ParamSpec, TypeVar

from fastapi import HTTPException
from fastapi.responses import JSONResponse, Response
from starlette.requests import Request

from skyline.runtime.context import Context
from skyline.runtime.processes import mp_context
from skyline.services.flux.auth import AuthError, Keys, Namespace, credential
from skyline.services.flux.body import BadEncoding, BodyTooLarge, decode, read_body
from skyline.services.flux.points import Outcome, Points, submit, summary

RETRY_AFTER = "5"
#: bodies at least this large (decompressed) are parsed in a worker thread
THREAD_PARSE_BYTES = 256 * 1024
#: compressed bodies at least this large are decompressed in a worker thread
THREAD_DECODE_BYTES = 16 * 1024
_WORKERS = 2
_BUSY_AFTER = 16  # requests decompressing or parsing (running or waiting) at once

P = ParamSpec("P")
T = TypeVar("T")


class Flux:
    """The state flux keeps in one process."""

    def __init__(self, ctx: Context):
        self.ctx = ctx
        self.settings = ctx.settings
        self.keys = Keys(ctx.settings)
        self.telemetry = ctx.telemetry("flux")
        self._pool = ThreadPoolExecutor(_WORKERS, thread_name_prefix="flux-parse")
        self._processes: ProcessPoolExecutor | None = None  # started on the first large body
        self._busy = 0

    def refuse(self, protocol: str, status: int, reason: str, message: str) -> NoReturn:
        """Count a request refused as a whole and answer it through the app's error handler
        ({"error": message})."""
        self.ctx.ingest.reject(protocol, reason)
        raise HTTPException(status, message)

    def namespace(self, request: Request, protocol: str, key: str | None = None,
                  query_params: Sequence[str] = ()) -> Namespace:
        """Authenticate (401) and refuse while the write path is saturated (503), before the
        body is read."""
        self.telemetry.incr(f"requests_{protocol}")
        if key is None:
            key = credential(request, query_params)
        try:
            ns = self.keys.namespace(request, key)
        except AuthError as e:
            self.refuse(protocol, e.status, e.reason, str(e))
        self.check_pressure(protocol)
        return ns

    def check_pressure(self, protocol: str) -> None:
        if self.ctx.ingest.paused:
            # the HTTP form of the TCP listeners' backpressure: every client here retries 503
            self.ctx.ingest.reject(protocol, "backpressure")
            raise HTTPException(503, "ingest is saturated (the hot store is behind); retry "
                                "shortly")

    async def body(self, request: Request, protocol: str, encoding: str | None = None,
                   limit: int | None = None) -> bytes:
        """The decompressed body, within `limit` (default flux.max_body_bytes) as sent and
        decompressed (413) and well encoded (400); `encoding` overrides the Content-Encoding
        header."""
        if limit is None:
            limit = self.settings.flux.max_body_bytes
        try:
            raw = await read_body(request, limit)
            enc = encoding or request.headers.get("content-encoding")
            members = self.settings.flux.max_gzip_members
            if len(raw) < THREAD_DECODE_BYTES:
                return decode(raw, enc, limit, members)
            return await self._off_loop(protocol, decode, raw, enc, limit, members)
        except BodyTooLarge:
            self.refuse(protocol, 413, "body_too_large",
                        f"the body is over {limit} bytes"
                        + (" (flux.max_body_bytes)" if limit == self.settings.flux.max_body_bytes
                           else " (flux.max_preauth_body_bytes: send the key in a header to "
                           "post more)"))
        except BadEncoding as e:
            self.refuse(protocol, 415 if e.reason == "bad_encoding" else 400, e.reason, str(e))

    async def parse(self, size: int, fn: Callable[..., T], *args: Any,
                    process: bool = False) -> T:
        """fn(*args), on the loop for a small body; for a large one in flux's processes
        (`process`: fn is a module-level function whose arguments and result pickle) or its
        threads."""
        if size < THREAD_PARSE_BYTES:
            return fn(*args)
        if process and self.settings.flux.parse_processes > 0:
            self.telemetry.incr("parsed_in_process")
            return await self._off_loop(None, fn, *args, executor=self._process_pool())
        return await self._off_loop(None, fn, *args)

    def _process_pool(self) -> ProcessPoolExecutor:
        if self._processes is None:
            self._processes = ProcessPoolExecutor(self.settings.flux.parse_processes,
                                                  mp_context=mp_context())
        return self._processes

    async def _off_loop(self, protocol: str | None, fn: Callable[..., T], *args: Any,
                        executor: Executor | None = None) -> T:
        if self._busy >= _BUSY_AFTER:
            self.ctx.ingest.reject(protocol or "flux", "busy")
            raise HTTPException(503, "flux is busy decompressing and parsing other requests; "
                                "retry shortly")
        self._busy += 1
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(executor or self._pool, partial(fn, *args))
        except BrokenProcessPool:
            # the parsing process died (killed, out of memory): a fresh pool for the next
            self._processes = None
            self.ctx.ingest.reject(protocol or "flux", "parser_died")
            raise HTTPException(503, "the process parsing this request died; retry "
                                "shortly") from None
        finally:
            self._busy -= 1

    def submit(self, protocol: str, points: Points, ns: Namespace) -> Outcome:
        return submit(self.ctx.ingest, protocol, points, ns.prefix, time.time())


def buffer_full() -> Response:
    return JSONResponse({"error": "the write buffer is full (the hot store is unreachable or "
                         "behind); retry shortly"}, status_code=503,
                        headers={"Retry-After": RETRY_AFTER})


def points_response(outcome: Outcome) -> Response:
    """204 all stored, 207 some refused (each with its reason), 400 none stored, 503 when the
    buffer was full (retrying then makes sense)."""
    if outcome.buffer_full:
        return buffer_full()
    if not outcome.refused:
        return Response(status_code=204)
    body = summary(outcome)
    if outcome.accepted:
        return JSONResponse(body, status_code=207)
    first = outcome.refused[0]
    return JSONResponse({"error": f"no metric accepted ({len(outcome.refused)} refused; "
                         f"first: item {first.item}: {first.reason})", **body}, status_code=400)
