"""Analyzer run statistics."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import cast

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from skyline.store.sql.models import AnalyzerRun

_T = cast(sa.Table, AnalyzerRun.__table__)


@dataclass
class RunStats:
    instance: str
    started: float
    duration: float = 0.0
    metrics: int = 0
    analysed: int = 0
    anomalies: int = 0
    exceptions: dict[str, int] = field(default_factory=dict)
    stages: dict[str, float] = field(default_factory=dict)


def save_run(conn: Engine | Connection, run: RunStats) -> None:
    stmt = sa.insert(_T).values(
        instance=run.instance, started=run.started, duration=run.duration, metrics=run.metrics,
        analysed=run.analysed, anomalies=run.anomalies, exceptions=run.exceptions,
        stages=run.stages)
    if isinstance(conn, Engine):
        with conn.begin() as c:
            c.execute(stmt)
    else:
        conn.execute(stmt)


def latest_runs(conn: Engine | Connection, limit: int = 20) -> list[RunStats]:
    stmt = sa.select(_T).order_by(_T.c.started.desc(), _T.c.id.desc()).limit(limit)
    if isinstance(conn, Engine):
        with conn.connect() as c:
            rows = c.execute(stmt).all()
    else:
        rows = conn.execute(stmt).all()
    return [RunStats(instance=r.instance, started=r.started, duration=r.duration,
                     metrics=r.metrics, analysed=r.analysed, anomalies=r.anomalies,
                     exceptions=dict(r.exceptions), stages=dict(r.stages)) for r in rows]
