"""Fetching series over HTTP from a remote Graphite (render JSON) or Prometheus (query_range),
shared by every component that pulls history (Vista now, Mirage later), and sending series to
a remote_write receiver (`post`, used by Vista's remote_write of anomaly scores).

What a remote can do wrong, and what happens:
- down (connection refused, DNS), slow (no answer within `timeout`, or a body that trickles
  in for longer than `timeout` in all), a redirect (never followed: a render URL that moved is
  a configuration to fix, and following it would send credentials elsewhere), an HTTP error,
  a body over `max_body_bytes` (read no further), garbage (not the API's JSON): each raises a
  RemoteError whose `reason` is counted (`remote_errors_<reason>` in the caller's
  self-metrics) and the remote goes into backoff: `available()` is False until its next try,
  so its work is skipped rather than waiting, and the outage is logged once (and its end once).
- A bounded number of requests run at once, in all and per remote, so one slow remote can
  hold only its own share of the slots.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

import httpx
import numpy as np

from skyline.core.errors import RemoteError
from skyline.remote.parse import (
    BadBody,
    RemoteSeries,
    graphite_render,
    prometheus_error,
    prometheus_matrix,
)
from skyline.telemetry import Telemetry

log = logging.getLogger(__name__)

Kind = Literal["graphite", "prometheus"]
#: Prometheus refuses a query_range of more than 11,000 points per series
PROMETHEUS_MAX_POINTS = 11_000


@dataclass(frozen=True)
class Remote:
    """Where and how to reach one remote. `url` is the base (`https://graphite.example.com`,
    `http://prometheus:9090`, or with a path prefix when it is served under one)."""

    kind: Kind
    url: str
    user: str = ""
    password: str = ""
    token: str = ""
    timeout: float = 10.0
    max_body_bytes: int = 16 * 1024 * 1024
    headers: tuple[tuple[str, str], ...] = ()

    @property
    def key(self) -> str:
        """What identifies the remote for backoff and its per-remote slots."""
        return f"{self.kind} {self.url.rstrip('/')}"

    @property
    def shown_url(self) -> str:
        """The URL as logs and errors show it: never with credentials."""
        parts = urlsplit(self.url)
        host = parts.hostname or ""
        if parts.port:
            host = f"{host}:{parts.port}"
        return f"{parts.scheme}://{host}{parts.path}".rstrip("/")

    def request_headers(self) -> dict[str, str]:
        h = {"Accept": "application/json", **dict(self.headers)}
        if self.token:
            h["Authorization"] = f"Bearer {self.token}"
        return h

    def auth(self) -> httpx.BasicAuth | None:
        return httpx.BasicAuth(self.user, self.password) if self.user else None


@dataclass
class _State:
    """One remote's health: consecutive failures, when to try again, its request slots."""

    slots: asyncio.Semaphore
    failures: int = 0
    delay: float = 0.0
    retry_at: float = 0.0

    def failed(self, remote: Remote, err: RemoteError, max_delay: float) -> None:
        self.failures += 1
        if self.failures == 1:  # an outage is logged once, and its end once
            log.error("remote %s %s failed (%s): %s; retrying with backoff", remote.kind,
                      remote.shown_url, err.reason, err.detail)
        self.delay = min(max_delay, 1.0 if not self.delay else self.delay * 2)
        self.retry_at = time.monotonic() + self.delay

    def succeeded(self, remote: Remote) -> None:
        if self.failures:
            log.warning("remote %s %s answers again after %d failed attempts", remote.kind,
                        remote.shown_url, self.failures)
        self.failures, self.delay, self.retry_at = 0, 0.0, 0.0


class RemoteClient:
    """One HTTP client for every remote of a component. Use inside `async with`."""

    def __init__(self, telemetry: Telemetry, *, max_concurrent: int = 8,
                 max_per_remote: int = 2, max_backoff: float = 300.0):
        self.telemetry = telemetry
        self.max_per_remote = max_per_remote
        self.max_backoff = max_backoff
        self._slots = asyncio.Semaphore(max_concurrent)
        self._states: dict[str, _State] = {}
        self._http: httpx.AsyncClient | None = None

    async def __aenter__(self) -> RemoteClient:
        # connections are kept per remote; redirects are refused (see the module's doc)
        self._http = httpx.AsyncClient(follow_redirects=False, trust_env=False,
                                       limits=httpx.Limits(max_connections=64))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    # backoff ----------------------------------------------------------------------------------
    def _state(self, remote: Remote) -> _State:
        st = self._states.get(remote.key)
        if st is None:
            st = self._states[remote.key] = _State(asyncio.Semaphore(self.max_per_remote))
        return st

    def available(self, remote: Remote, now: float | None = None) -> bool:
        """False while the remote is in backoff after a failure."""
        st = self._states.get(remote.key)
        return st is None or (time.monotonic() if now is None else now) >= st.retry_at

    def retry_in(self, remote: Remote) -> float:
        st = self._states.get(remote.key)
        return 0.0 if st is None else max(0.0, st.retry_at - time.monotonic())

    # fetching ---------------------------------------------------------------------------------
    async def graphite(self, remote: Remote, targets: Sequence[str], start: float,
                       end: float) -> list[RemoteSeries]:
        """Graphite's render of `targets` (any target expression) from start to end."""
        params = [("format", "json"), ("from", str(int(start))), ("until", str(int(end)))]
        params += [("target", t) for t in targets]
        body = await self._get(remote, "/render", params)
        try:
            series = graphite_render(body)
        except BadBody as e:
            raise self._failed(remote, "bad_body", f"render answer: {e}") from None
        self._state(remote).succeeded(remote)
        return series

    async def prometheus(self, remote: Remote, query: str, start: float, end: float,
                         step: float) -> list[RemoteSeries]:
        """Prometheus' query_range of `query` from start to end every `step` seconds, in as
        many requests as Prometheus' 11,000-points-per-series limit needs."""
        if step <= 0:
            raise ValueError("step must be positive")
        out: dict[tuple[tuple[str, str], ...], RemoteSeries] = {}
        span = step * (PROMETHEUS_MAX_POINTS - 1)
        lo = start
        while lo <= end:
            hi = min(end, lo + span)
            params = [("query", query), ("start", f"{lo:.3f}"), ("end", f"{hi:.3f}"),
                      ("step", f"{step:g}")]
            body = await self._get(remote, "/api/v1/query_range", params)
            try:
                part = prometheus_matrix(body)
            except BadBody as e:
                raise self._failed(remote, "bad_body", f"query_range answer: {e}") from None
            for s in part:
                key = tuple(sorted(s.labels.items()))
                have = out.get(key)
                if have is None:
                    out[key] = s
                else:
                    have.timestamps = np.concatenate([have.timestamps, s.timestamps])
                    have.values = np.concatenate([have.values, s.values])
            lo = hi + step
        self._state(remote).succeeded(remote)
        return list(out.values())

    async def fetch(self, remote: Remote, query: str, start: float, end: float,
                    step: float = 60.0) -> list[RemoteSeries]:
        """The series of one Graphite target or PromQL query between start and end."""
        if remote.kind == "graphite":
            return await self.graphite(remote, [query], start, end)
        return await self.prometheus(remote, query, start, end, step)

    async def post(self, remote: Remote, content: bytes,
                   headers: Sequence[tuple[str, str]] = ()) -> bytes:
        """POST `content` to the remote's URL itself (a remote_write endpoint), with the same
        limits, counting and backoff as a fetch; the answer's body on a 2xx."""
        body = await self._get(remote, "", [], method="POST", content=content,
                               headers=headers)
        self._state(remote).succeeded(remote)
        return body

    async def _get(self, remote: Remote, path: str, params: list[tuple[str, str]], *,
                   method: str = "GET", content: bytes | None = None,
                   headers: Sequence[tuple[str, str]] = ()) -> bytes:
        if self._http is None:
            raise RuntimeError("RemoteClient used outside `async with`")
        st = self._state(remote)
        url = remote.url.rstrip("/") + path
        async with self._slots, st.slots:
            self.telemetry.incr("remote_requests")
            try:
                async with asyncio.timeout(remote.timeout):
                    body = await self._read(remote, url, params, method, content, headers)
            except TimeoutError:
                raise self._failed(remote, "timeout",
                                   f"no whole answer within {remote.timeout:g} s") from None
        self.telemetry.incr("remote_bytes", len(body))
        return body

    async def _read(self, remote: Remote, url: str, params: list[tuple[str, str]],
                    method: str = "GET", content: bytes | None = None,
                    headers: Sequence[tuple[str, str]] = ()) -> bytes:
        assert self._http is not None
        try:
            async with self._stream(url, params, remote, method, content, headers) as resp:
                if resp.is_redirect:
                    where = resp.headers.get("location", "?")
                    raise self._failed(remote, "redirect",
                                       f"HTTP {resp.status_code} redirect to {where!r} (not "
                                       "followed: set the URL it points to)")
                chunks: list[bytes] = []
                size = 0
                limit = remote.max_body_bytes
                declared = resp.headers.get("content-length")
                if declared is not None and declared.isdigit() and int(declared) > limit:
                    raise self._failed(remote, "too_large",
                                       f"answer of {declared} bytes is over {limit} bytes")
                async for chunk in resp.aiter_bytes():
                    size += len(chunk)
                    if size > limit:
                        raise self._failed(remote, "too_large",
                                           f"answer is over {limit} bytes (max_body_bytes)")
                    chunks.append(chunk)
                body = b"".join(chunks)
                if resp.status_code in (401, 403):
                    raise self._failed(remote, "auth",
                                       f"HTTP {resp.status_code}: credentials refused",
                                       resp.status_code)
                if resp.status_code >= 400:
                    detail = prometheus_error(body) or body[:200].decode("utf-8", "replace")
                    raise self._failed(remote, "http_error",
                                       f"HTTP {resp.status_code}: {detail.strip()}",
                                       resp.status_code)
                return body
        except httpx.TimeoutException:
            raise self._failed(remote, "timeout", f"no answer within {remote.timeout:g} s"
                               ) from None
        except httpx.HTTPError as e:
            raise self._failed(remote, "unreachable", str(e) or type(e).__name__) from None

    @contextlib.asynccontextmanager
    async def _stream(self, url: str, params: list[tuple[str, str]], remote: Remote,
                      method: str = "GET", content: bytes | None = None,
                      headers: Sequence[tuple[str, str]] = ()) -> AsyncIterator[httpx.Response]:
        assert self._http is not None
        async with self._http.stream(
            method, url, params=tuple(params) or None,
            headers={**remote.request_headers(), **dict(headers)}, content=content,
            auth=remote.auth(),
            timeout=httpx.Timeout(remote.timeout),
        ) as resp:
            yield resp

    def _failed(self, remote: Remote, reason: str, detail: str,
                status: int | None = None) -> RemoteError:
        err = RemoteError(reason, remote.shown_url, detail, status)
        self.telemetry.incr(f"remote_errors_{reason}")
        self._state(remote).failed(remote, err, self.max_backoff)
        return err


def fetch_blocking(remote: Remote, query: str, start: float, end: float, step: float = 60.0,
                   telemetry: Telemetry | None = None) -> list[RemoteSeries]:
    """For callers without an event loop (a worker thread or process): one fetch, with a
    client of its own."""
    async def once() -> list[RemoteSeries]:
        async with RemoteClient(telemetry or Telemetry("remote", "local")) as client:
            return await client.fetch(remote, query, start, end, step)

    return asyncio.run(once())


def one_series(series: list[RemoteSeries], remote: Remote, query: str) -> RemoteSeries:
    """The single series a query for one metric must give; RemoteError otherwise."""
    if len(series) != 1:
        raise RemoteError("no_data" if not series else "ambiguous", remote.shown_url,
                          f"{query!r} gave {len(series)} series, not one")
    return series[0]
