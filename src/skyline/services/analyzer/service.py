"""The analyzer as a long-running component: one run every ANALYZER_OPTIMUM_RUN_DURATION.

Runs never overlap: one that overruns is logged and counted, and the next starts when it
ends. Run statistics go to the self-metrics at once and to the analyzer_runs table from a
background thread, so a slow or absent database never holds up analysis (a run whose save
would queue behind an unfinished one is counted and not saved).
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor

from skyline.runtime.context import Context, every
from skyline.services.analyzer.run import Analyzer, RunReport
from skyline.store.sql.runs import RunStats, save_run
from skyline.telemetry import Telemetry

log = logging.getLogger(__name__)

COMPONENT = "analyzer"


def _metric_name(label: str) -> str:
    """TooShort -> too_short: self-metric names are [a-z_0-9]."""
    return re.sub(r"[^a-z0-9_]", "_", re.sub(r"(?<!^)(?=[A-Z])", "_", label).lower())


def record(tel: Telemetry, report: RunReport) -> None:
    s = report.stats
    tel.incr("runs")
    tel.incr("metrics", s.metrics)
    tel.incr("analysed", s.analysed)
    tel.incr("anomalies", report.candidates)
    for status in ("anomalous", "vetoed", "recovered", "new_level"):
        tel.incr(f"events_{status}", len(report.of(status)))
    tel.incr("events_suppressed", report.suppressed)
    st = report.stage_stats
    tel.incr("stage_checks", st.checked)
    tel.incr("stage_vetoes", st.vetoed)
    tel.incr("stage_errors", st.errors)
    tel.incr("stage_overruns", st.overruns)
    for stage, counts in st.per_stage.items():  # verdicts and a stage's own counts
        for what, n in counts.items():
            tel.incr(f"stage_{_metric_name(stage)}_{_metric_name(what)}", n)
    tel.incr("worker_failures", len(report.failed))
    tel.incr("process_restarts", report.restarts)
    for label, n in s.exceptions.items():
        tel.incr(f"exception_{_metric_name(label)}", n)
    tel.gauge("run_seconds", s.duration)
    tel.gauge("metrics_per_second", report.metrics_per_second)
    for stage, seconds in s.stages.items():
        tel.gauge(f"stage_{_metric_name(stage)}_seconds", seconds)


class RunSaver:
    """Saves run statistics to SQL off the analysis path."""

    def __init__(self, ctx: Context, tel: Telemetry) -> None:
        self.ctx, self.tel = ctx, tel
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="analyzer-runs-sql")
        self._pending: Future[None] | None = None

    def submit(self, stats: RunStats) -> None:
        if not self.ctx.sql_ready.is_set() or self.ctx.engine is None:
            self.tel.incr("runs_not_saved")
            return
        if self._pending is not None and not self._pending.done():
            self.tel.incr("runs_not_saved")
            return
        self._pending = self._pool.submit(self._save, stats)

    def _save(self, stats: RunStats) -> None:
        try:
            save_run(self.ctx.engine, stats)
        except Exception as e:  # noqa: BLE001 - the database's trouble must not stop analysis
            self.tel.incr("runs_not_saved")
            log.warning("analyzer: could not save run statistics: %s",
                        str(e).splitlines()[0] if str(e) else type(e).__name__)

    def close(self) -> None:
        self._pool.shutdown(wait=True)


def redis_url(ctx: Context) -> str:
    """The URL the workers connect to, password included (ctx.redis.url is masked)."""
    if ctx.settings.REDIS_URL is not None:
        return ctx.settings.REDIS_URL.get_secret_value()
    if ctx.redis.embedded is not None:
        return ctx.redis.embedded.url
    return ctx.redis.url


async def run(ctx: Context) -> None:
    s = ctx.settings
    tel = ctx.telemetry(COMPONENT)
    if not s.ANALYZER_ENABLED:
        log.info("analyzer: ANALYZER_ENABLED is false; analysing nothing")
        await ctx.stopping.wait()
        return
    stop = threading.Event()
    analyzer = await asyncio.to_thread(Analyzer, s, ctx.client, redis_url(ctx),
                                       cluster=ctx.redis.cluster)
    saver = RunSaver(ctx, tel)

    async def _watch_stop() -> None:
        await ctx.stopping.wait()
        stop.set()

    watcher = asyncio.create_task(_watch_stop())

    streak = 0  # consecutive runs longer than the interval (Thunder's analyzer.run_time)

    def one_run() -> None:
        nonlocal streak
        started = time.monotonic()
        report = analyzer.run_once(stop=stop)
        took = time.monotonic() - started
        streak = streak + 1 if took > s.ANALYZER_OPTIMUM_RUN_DURATION else 0
        tel.gauge("overrun_streak", streak)
        record(tel, report)
        if not report.abandoned:
            saver.submit(report.stats)

    def overrun(took: float) -> None:
        tel.incr("overruns")

    try:
        try:
            await asyncio.to_thread(analyzer.start)
        except Exception:  # the first run starts them again, and says why if it cannot
            log.exception("analyzer: starting the worker processes failed")
        await every(ctx, s.ANALYZER_OPTIMUM_RUN_DURATION, one_run, name=COMPONENT,
                    on_overrun=overrun)
    finally:
        stop.set()
        watcher.cancel()
        await asyncio.to_thread(analyzer.close)
        await asyncio.to_thread(saver.close)
