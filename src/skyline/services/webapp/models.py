"""Response models of the web app's /api/v1 read endpoints: they make the OpenAPI schema at
/api/v1/openapi.json exact, so clients (and schemathesis) can hold the API to it."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Literal

from pydantic import BaseModel, Field

from skyline.core.events import AnomalyEvent
from skyline.store.sql.runs import RunStats


class ErrorOut(BaseModel):
    error: str = Field(description="what was wrong, in one line")


class AlgorithmResultOut(BaseModel):
    algorithm: str
    verdict: bool | None = Field(description="true: anomalous; false: normal; null: abstained")
    statistic: float | None
    limit: float | None
    text: str


class StageVerdictOut(BaseModel):
    stage: str
    verdict: Literal["confirm", "veto", "abstain"]
    reason: str
    figures: dict[str, float]
    ms: float = Field(description="how long the stage took, milliseconds")


class AnomalyOut(BaseModel):
    id: str
    metric: str
    timestamp: float
    value: float = Field(description="the value the detector judged (a counter's rate)")
    score: float
    source: str
    status: Literal["anomalous", "vetoed", "recovered", "new_level"] = Field(
        description="anomalous: confirmed and alerted; vetoed: a candidate a stage vetoed "
        "(never alerted); recovered: back to what it was before the incident; new_level: the "
        "incident closed because the metric settled at a new level")
    triggered: list[str]
    results: list[AlgorithmResultOut]
    stages: list[StageVerdictOut] = Field(description="each stage's verdict, in order")
    band_low: float | None = Field(description="the range the detector expected (low)")
    band_high: float | None = Field(description="the range the detector expected (high)")
    since: float | None = Field(description="when the incident began")
    created: float

    @classmethod
    def of(cls, e: AnomalyEvent) -> AnomalyOut:
        return cls(id=e.id, metric=e.metric, timestamp=e.timestamp, value=e.value,
                   score=e.score, source=e.source, status=e.status, triggered=list(e.triggered),
                   results=[AlgorithmResultOut(algorithm=r.algorithm, verdict=r.verdict,
                                               statistic=finite(r.statistic),
                                               limit=finite(r.limit), text=r.text)
                            for r in e.results],
                   stages=[StageVerdictOut(stage=v.stage, verdict=v.verdict,
                                           reason=v.reason,
                                           figures={k: x for k, x in v.figures.items()
                                                    if finite(x) is not None},
                                           ms=v.ms)
                           for v in e.stages],
                   band_low=finite(e.band_low), band_high=finite(e.band_high),
                   since=finite(e.since), created=e.created)


class AnomalyPageOut(BaseModel):
    items: list[AnomalyOut]
    next: str | None = Field(description="pass as `before` for the page of older anomalies")
    prev: str | None = Field(description="pass as `after` for the page of newer anomalies")


class SeriesOut(BaseModel):
    metric: str
    points: int
    timestamps: list[float]
    values: list[float | None] = Field(description="null where a value is not finite")
    resolution: int | None = Field(
        None, description="seconds per bucket of the long history's points, when the range "
        "reaches past the raw series (docs/mirage.md)")
    downsampled_before: float | None = Field(
        None, description="points before this time are the long history's bucket means "
        "(one per `resolution` seconds, at the bucket's start); null: every point is raw")


class MetricsOut(BaseModel):
    metrics: list[str]
    total: int = Field(description="how many metrics match the pattern")
    next: str | None = Field(description="pass as `cursor` for the next page")


class RunOut(BaseModel):
    instance: str
    started: float
    duration: float
    metrics: int
    analysed: int
    anomalies: int
    exceptions: dict[str, int]
    stages: dict[str, float]

    @classmethod
    def of(cls, r: RunStats) -> RunOut:
        return cls(instance=r.instance, started=r.started, duration=r.duration,
                   metrics=r.metrics, analysed=r.analysed, anomalies=r.anomalies,
                   exceptions=dict(r.exceptions), stages=dict(r.stages))


class RunsOut(BaseModel):
    runs: list[RunOut]


class RunStatsOut(BaseModel):
    runs: int = Field(description="runs these figures cover (the newest ones)")
    interval: float = Field(description="ANALYZER_OPTIMUM_RUN_DURATION, seconds")
    first_started: float | None
    last_started: float | None
    duration_mean: float | None
    duration_p50: float | None
    duration_max: float | None
    overruns: int = Field(description="runs that took longer than the interval")
    metrics_last: int | None = Field(description="metrics in the index at the last run")
    analysed_last: int | None
    anomalies: int = Field(description="anomalies found by these runs")


def finite(x: float | None) -> float | None:
    """JSON has no NaN or infinity: such numbers go out as null."""
    return x if x is None or math.isfinite(x) else None


def finite_list(xs: Iterable[float]) -> list[float | None]:
    return [x if math.isfinite(x) else None for x in xs]


class AckOut(BaseModel):
    who: str
    at: float = Field(description="Unix seconds")
    note: str


class SilenceRefOut(BaseModel):
    id: int
    pattern: str
    until: float
    who: str
    reason: str


class IncidentOut(BaseModel):
    metric: str
    namespace: str = Field(description="the group it is shown in: the name without its "
                           "last element")
    since: float = Field(description="when the incident opened")
    duration: float = Field(description="seconds open")
    last_event: float
    value: float | None = Field(description="the value judged at the last event (a "
                                "counter's rate)")
    band_low: float | None = Field(description="what the detector expected (low)")
    band_high: float | None
    score: float
    source: str
    event: str = Field(description="id of the last anomalous event")
    silence: SilenceRefOut | None
    ack: AckOut | None


class StaleSourceOut(BaseModel):
    source: str = Field(description="the first two elements of the metrics' names")
    stale: int = Field(description="metrics with no point for STALE_PERIOD seconds")
    total: int
    stopped: bool = Field(description="every metric of the source is stale")
    last_seen: float
    names: list[str] = Field(description="some of the stale metrics")


class NowOut(BaseModel):
    time: float
    status: Literal["ok", "incidents", "degraded"] = Field(
        description="degraded: a store is down or a component late or stopped; incidents: an incident "
        "is open or a source stopped sending")
    reasons: list[str]
    incidents: list[IncidentOut] = Field(description="grouped by namespace, loud first")
    stale: list[StaleSourceOut]
    late_components: dict[str, float] = Field(description="component -> heartbeat age, s")
    stopped_components: dict[str, float] = Field(
        description="component.instance whose heartbeat expired (stopped or dead, listed for "
        "a day) -> seconds since its last heartbeat")


class AckIn(BaseModel):
    metric: str = Field(min_length=1, max_length=4096)
    note: str = Field("", max_length=500)
