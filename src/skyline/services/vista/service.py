"""Vista's loop: every configured query pulled every `frequency` seconds, each pull a task of
its own, so that a slow or failing remote delays nothing but its own queries.

A remote that failed is in backoff (skyline.remote): its queries wait for its next try
instead of queueing requests that would fail too. With VISTA_FETCH_METRICS empty Vista only
keeps its heartbeat.

With `vista.remote_write_url` set, Vista also sends anomaly scores and events to that
remote_write receiver (writer.py), as a task of its own beside the pulls, sharing the same
client (its limits and backoff).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from skyline.core.errors import RemoteError
from skyline.remote import RemoteClient
from skyline.runtime.context import Context, sleep_or_stop
from skyline.services.vista.fetcher import Fetcher, is_plain_path
from skyline.services.vista.writer import run_writer
from skyline.settings.vista import VistaFetch
from skyline.store.redis_client import CONNECTION_ERRORS

log = logging.getLogger(__name__)

TICK = 1.0  # seconds between looks at what is due


@dataclass
class Job:
    """Queries pulled together: one, or up to VISTA_GRAPHITE_BATCH_SIZE plain Graphite paths
    of one remote with the same frequency."""

    fetches: list[VistaFetch]
    due: float = 0.0  # monotonic time of the next pull
    task: asyncio.Task[None] | None = None

    @property
    def frequency(self) -> float:
        return self.fetches[0].frequency


def plan(fetches: Sequence[VistaFetch], batch_size: int) -> list[Job]:
    """Group plain Graphite paths of one remote, auth and frequency into batches."""
    jobs: list[Job] = []
    batches: dict[tuple[object, ...], list[VistaFetch]] = {}
    for f in fetches:
        if f.source == "graphite" and is_plain_path(f.query) and not f.metric:
            key = (f.url, f.user, f.password, f.token, f.timeout, f.frequency,
                   f.namespace_prefix)
            batch = batches.setdefault(key, [])
            if len(batch) == batch_size:
                jobs.append(Job(batch))
                batch = batches[key] = []
            batch.append(f)
        else:
            jobs.append(Job([f]))
    jobs += [Job(b) for b in batches.values() if b]
    return jobs


async def run(ctx: Context) -> None:
    s = ctx.settings
    tel = ctx.telemetry("vista")
    tel.incr("starts")
    if not s.VISTA_FETCH_METRICS and not s.vista.remote_write_url:
        await ctx.stopping.wait()
        return
    jobs = plan(s.VISTA_FETCH_METRICS, s.VISTA_GRAPHITE_BATCH_SIZE)
    if jobs:
        log.info("vista: pulling %d queries in %d jobs", len(s.VISTA_FETCH_METRICS), len(jobs))
    async with RemoteClient(tel, max_concurrent=s.vista.max_concurrent,
                            max_per_remote=s.vista.max_per_remote,
                            max_backoff=s.vista.max_backoff) as client:
        fetcher = Fetcher(ctx, client)
        writer = (asyncio.create_task(run_writer(ctx, client, tel), name="vista-write")
                  if s.vista.remote_write_url else None)
        try:
            if jobs:
                await _loop(ctx, fetcher, client, jobs)
            else:
                await ctx.stopping.wait()
        finally:
            running = [j.task for j in jobs if j.task is not None and not j.task.done()]
            for t in running:
                t.cancel()
            await asyncio.gather(*running, return_exceptions=True)
            if writer is not None:
                if not ctx.stopping.is_set():
                    writer.cancel()
                await asyncio.gather(writer, return_exceptions=True)


async def _loop(ctx: Context, fetcher: Fetcher, client: RemoteClient, jobs: list[Job]) -> None:
    tel = fetcher.tel
    while not ctx.stopping.is_set():
        now = time.monotonic()
        for job in jobs:
            if job.task is not None and not job.task.done():
                continue
            if now < job.due:
                continue
            remote = fetcher.remote(job.fetches[0])
            if not client.available(remote, now):
                continue  # in backoff: tried again when it ends
            job.due = now + job.frequency
            job.task = asyncio.create_task(_pull(fetcher, job), name="vista-pull")
        gauge = sum(1 for j in jobs if j.task is not None and not j.task.done())
        tel.gauge("pulls_in_flight", gauge)
        if await sleep_or_stop(ctx.stopping, TICK):
            return


async def _pull(fetcher: Fetcher, job: Job) -> None:
    try:
        r = await fetcher.pull(job.fetches, time.time())
        log.debug("vista: %s: %d series, %d new points", job.fetches[0].query, r.series, r.new)
    except RemoteError:
        # counted and logged once per outage by the client; the job is due again after the
        # remote's backoff
        fetcher.tel.incr("pull_failures")
        job.due = 0.0
    except CONNECTION_ERRORS as e:
        fetcher.tel.incr("pull_failures")
        log.warning("vista: the hot store is unreachable (%s); pulled again next time", e)
    except Exception:  # one failed pull is logged; the others go on
        fetcher.tel.incr("pull_failures")
        log.exception("vista: pull of %s failed", job.fetches[0].query)
