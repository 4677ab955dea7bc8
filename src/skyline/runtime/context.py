"""The context a component runs in: settings, the hot store, the SQL engine, self-metrics."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from redis import Redis

from skyline.core.errors import StoreUnavailable
from skyline.ingest import Ingest
from skyline.settings import Settings
from skyline.store.hotstore import HotStore
from skyline.store.redis_client import CONNECTION_ERRORS, RedisHandle
from skyline.store.writer import PointBuffer
from skyline.telemetry import Telemetry

log = logging.getLogger(__name__)


@dataclass
class Context:
    settings: Settings
    redis: RedisHandle
    engine: Any = None  # sqlalchemy Engine, set once the database is reachable
    telemetries: dict[str, Telemetry] = field(default_factory=dict)
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    # set once every component has stopped: listeners drain their connections after
    # `stopping`, and the write buffer is flushed meanwhile until this is set
    components_done: asyncio.Event = field(default_factory=asyncio.Event)
    sql_ready: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        s = self.settings
        self.store = HotStore(self.redis.client, read_chunk_size=s.redis.read_chunk_size,
                              write_batch_size=s.redis.write_batch_size,
                              cluster=self.redis.cluster)
        self.points = PointBuffer(self.store, s.redis.write_buffer_max_points)

    @property
    def client(self) -> Redis:
        return self.redis.client

    _ingest: Ingest | None = None

    @property
    def ingest(self) -> Ingest:
        """The write path every protocol in this process shares (created on first use)."""
        if self._ingest is None:
            self._ingest = Ingest(self.settings, self.points, self.telemetry("ingest"))
        return self._ingest

    @property
    def has_ingest(self) -> bool:
        return self._ingest is not None

    def telemetry(self, component: str) -> Telemetry:
        t = self.telemetries.get(component)
        if t is None:
            t = self.telemetries[component] = Telemetry(component, self.settings.instance)
        return t


class Backoff:
    """Exponential backoff that logs an outage once, and its end once."""

    def __init__(self, what: str, url: str, max_delay: float, first: float = 0.5):
        self.what, self.url, self.max_delay, self.first = what, url, max_delay, first
        self.delay = 0.0
        self.failures = 0

    def failed(self, err: BaseException) -> float:
        self.failures += 1
        if self.failures == 1:
            # a StoreUnavailable already says "<what> unreachable at <url>": only its reason
            reason = err.reason if isinstance(err, StoreUnavailable) else str(err)
            log.error("%s unreachable at %s: %s; retrying with backoff", self.what, self.url,
                      reason or type(err).__name__)
        self.delay = min(self.max_delay, self.first if not self.delay else self.delay * 2)
        return self.delay

    def succeeded(self) -> None:
        if self.failures:
            log.warning("%s at %s reachable again after %d failed attempts", self.what, self.url,
                        self.failures)
        self.failures = 0
        self.delay = 0.0


async def sleep_or_stop(stopping: asyncio.Event, seconds: float) -> bool:
    """Sleep; True when asked to stop meanwhile."""
    try:
        await asyncio.wait_for(stopping.wait(), timeout=max(0.0, seconds))
        return True
    except TimeoutError:
        return False


async def every(
    ctx: Context, interval: float, work: Callable[[], Any], *, name: str,
    on_overrun: Callable[[float], Awaitable[None] | None] | None = None,
) -> None:
    """Run blocking `work` in a thread every `interval` seconds until stopping.

    A run that overruns its interval starts the next one at once instead of stacking; while
    Redis is down the loop backs off rather than spinning.
    """
    loop = asyncio.get_running_loop()
    backoff = Backoff("Redis", ctx.redis.url, ctx.settings.redis.retry_max_backoff)
    while not ctx.stopping.is_set():
        started = loop.time()
        try:
            await asyncio.to_thread(work)
        except CONNECTION_ERRORS as e:
            if await sleep_or_stop(ctx.stopping, backoff.failed(e)):
                return
            continue
        except Exception:  # one failed run is logged; the loop lives on
            log.exception("%s: run failed", name)
        else:
            backoff.succeeded()
        took = loop.time() - started
        if took > interval:
            log.warning("%s: run took %.1fs, longer than its %.1fs interval", name, took, interval)
            if on_overrun is not None:
                r = on_overrun(took)
                if r is not None:
                    await r
        if await sleep_or_stop(ctx.stopping, interval - took):
            return
