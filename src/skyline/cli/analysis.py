"""`skyline analyze --once`: one analyzer run from the command line."""

from __future__ import annotations

import dataclasses
import json
import sys
from typing import TYPE_CHECKING, Any, Protocol

import click

from skyline.core.timeutil import iso

if TYPE_CHECKING:
    from skyline.core.events import AnomalyEvent
    from skyline.services.analyzer import RunReport
    from skyline.settings import Settings
    from skyline.store.sql.runs import RunStats


class _HasSettings(Protocol):
    def settings(self) -> Settings: ...

    def data_settings(self) -> Settings: ...


STAGES = ("list", "fetch", "prepare", "algorithms", "custom", "steps", "explain", "state_write",
          "workers", "publish")


def _save_stats(settings: Settings, stats: RunStats) -> str:
    """Store the run's statistics; the reason when they could not be (never fatal)."""
    from skyline.core.errors import SkylineError
    from skyline.store.sql import db as sqldb
    from skyline.store.sql.runs import save_run

    try:
        engine = sqldb.make_engine(settings.database_url, settings.database.pool_size)
    except SkylineError as e:
        return str(e)
    try:
        sqldb.check(engine)
        if settings.database.upgrade_on_start:
            sqldb.upgrade(engine)
        save_run(engine, stats)
    except Exception as e:  # noqa: BLE001 - the run happened; its statistics are extra
        return str(e).splitlines()[0] if str(e) else type(e).__name__
    finally:
        engine.dispose()
    return ""


def _event_json(e: AnomalyEvent) -> dict[str, Any]:
    return {"metric": e.metric, "timestamp": e.timestamp, "value": e.value, "score": e.score,
            "status": e.status, "since": e.since, "band": [e.band_low, e.band_high],
            "triggered": list(e.triggered),
            "results": [dataclasses.asdict(r) for r in e.results],
            "stages": [dataclasses.asdict(v) for v in e.stages]}


def report_json(report: RunReport) -> dict[str, Any]:
    return {
        "stats": dataclasses.asdict(report.stats),
        "events": {status: len(report.of(status))
                   for status in ("anomalous", "vetoed", "recovered", "new_level")}
        | {"suppressed": report.suppressed},
        "anomalies": [_event_json(e) for e in report.events
                      if e.status in ("anomalous", "vetoed")],
        "recovered": [e.metric for e in report.of("recovered")],
        "new_level": [e.metric for e in report.of("new_level")],
        "failed": report.failed,
        "custom_algorithm_failures": {k: dict(v) for k, v in report.custom.counts.items()},
    }


def report_text(report: RunReport) -> list[str]:
    s = report.stats
    lines = [
        f"analysed {s.analysed} of {s.metrics} metrics in {s.duration:.2f} s "
        f"({report.metrics_per_second:,.0f} metrics/s): {len(report.anomalous)} anomalous, "
        f"{len(report.of('vetoed'))} vetoed by a stage, {len(report.of('recovered'))} "
        f"recovered, {len(report.of('new_level'))} at a new level",
        "stages: " + ", ".join(f"{k} {s.stages[k]:.3f} s" for k in STAGES if k in s.stages),
        "exceptions: " + (", ".join(f"{k} {v}" for k, v in s.exceptions.items()) or "none"),
    ]
    lines += [f"failed: {f}" for f in report.failed]
    found = [e for e in report.events if e.status in ("anomalous", "vetoed")]
    if found:
        lines.append("anomalies:")
        for e in found:
            what = ", ".join(e.triggered)
            if e.status == "vetoed" and e.veto is not None:
                what += f"  VETOED by {e.veto.stage}: {e.veto.reason}"
            lines.append(f"  {e.metric}  {iso(e.timestamp)} ({e.timestamp:.0f})  value "
                         f"{e.value:.6g}  score {e.score:.2f}  {what}")
    for e in report.events:
        if e.status in ("recovered", "new_level"):
            label = "recovered" if e.status == "recovered" else "new level"
            lines.append(f"{label}: {e.metric}  {iso(e.timestamp)}")
    return lines


@click.command()
@click.option("--once", is_flag=True, help="Run once and exit (required: the continuous "
              "analyzer runs under `skyline run` or `skyline serve analyzer`).")
@click.option("--json", "as_json", is_flag=True, help="Print the run as JSON.")
@click.option("--processes", type=click.IntRange(0, 64), default=None,
              help="Worker processes (default ANALYZER_PROCESSES); 0 analyses in this process.")
@click.pass_obj
def analyze(obj: _HasSettings, once: bool, as_json: bool, processes: int | None) -> None:
    """Analyse every metric once: publish events for the anomalies found, print the run's
    statistics and the anomalies (metric, time, value, score, algorithms that fired)."""
    from skyline.services.analyzer import Analyzer
    from skyline.store.redis_client import redis_session

    if not once:
        raise click.UsageError("give --once (the continuous analyzer is `skyline run` or "
                               "`skyline serve analyzer`)")
    settings = obj.data_settings()
    if not settings.ANALYZER_ENABLED:
        click.echo("ANALYZER_ENABLED is false: nothing analysed", err=True)
        return
    with redis_session(settings) as h:
        if settings.REDIS_URL is not None:
            url = settings.REDIS_URL.get_secret_value()
        else:
            url = h.embedded.url if h.embedded is not None else h.url
        analyzer = Analyzer(settings, h.client, url, processes=processes or None,
                            inline=processes == 0)
        try:
            report = analyzer.run_once()
        finally:
            analyzer.close()
    problem = _save_stats(settings, report.stats)
    if problem:
        click.echo(f"warning: run statistics not saved: {problem}", err=True)
    if as_json:
        click.echo(json.dumps(report_json(report), allow_nan=False))
    else:
        for line in report_text(report):
            click.echo(line)
    if report.failed:
        sys.exit(1)
