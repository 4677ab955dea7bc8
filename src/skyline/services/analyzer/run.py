"""One analyzer run: every metric in the index, split across the workers, judged, and the
outcome turned into events on the anomaly stream and run statistics."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import redis

from skyline.analysis.config import AnalyzerConfig, from_settings
from skyline.analysis.emit import index_incidents, publish_all
from skyline.analysis.judge import CustomFailures
from skyline.analysis.stages import StageStats
from skyline.core.events import AnomalyEvent
from skyline.services.analyzer.leases import Leases
from skyline.services.analyzer.slice import Job, SliceResult
from skyline.services.analyzer.workers import InlinePool, PoolOutcome, WorkerPool
from skyline.settings import Settings
from skyline.store import keys
from skyline.store.cluster import ClusterStore
from skyline.store.hotstore import HotStore
from skyline.store.redis_client import CONNECTION_ERRORS
from skyline.store.sql.runs import RunStats

log = logging.getLogger(__name__)


@dataclass
class RunReport:
    stats: RunStats
    events: list[AnomalyEvent] = field(default_factory=list)  # published, in metric order
    suppressed: int = 0
    failed: list[str] = field(default_factory=list)
    unanalysed: int = 0
    custom: CustomFailures = field(default_factory=CustomFailures)
    algorithm_errors: dict[str, str] = field(default_factory=dict)
    stage_stats: StageStats = field(default_factory=StageStats)
    breakdown: Counter[str] = field(default_factory=Counter)  # anomalies per algorithm
    abandoned: bool = False
    restarts: int = 0

    def of(self, status: str) -> list[AnomalyEvent]:
        return [e for e in self.events if e.status == status]

    @property
    def anomalous(self) -> list[AnomalyEvent]:
        return self.of("anomalous")

    @property
    def candidates(self) -> int:
        """Anomaly candidates: confirmed (alerted) and vetoed."""
        return len(self.anomalous) + len(self.of("vetoed"))

    @property
    def metrics_per_second(self) -> float:
        d = self.stats.duration
        return self.stats.metrics / d if d > 0 else 0.0


def lease_ttl(settings: Settings) -> float:
    """How long an analyzer's share of a cluster stays its own without a renewal (it renews
    at the start of every run): three run intervals, at least 10 s."""
    return max(3 * settings.ANALYZER_OPTIMUM_RUN_DURATION, 10.0)


def split(names: list[str], parts: int) -> list[list[str]]:
    """Contiguous, nearly equal slices (names are sorted, so one namespace mostly stays with
    one worker); no empty slice."""
    parts = max(1, min(parts, len(names)))
    size, extra = divmod(len(names), parts)
    out, lo = [], 0
    for i in range(parts):
        hi = lo + size + (1 if i < extra else 0)
        out.append(names[lo:hi])
        lo = hi
    return [p for p in out if p]


def _exceptions(merged: SliceResult, outcome: PoolOutcome, custom: CustomFailures
                ) -> dict[str, int]:
    """Upstream's exception breakdown, plus what is new here."""
    ex: Counter[str] = Counter(merged.exceptions)
    # a name in the index whose series is gone was trimmed meanwhile: upstream's
    # DeletedByRoomba, told apart from a series that exists but holds no point
    # (both come out of preparation as series without points)
    ex["EmptyTimeseries"] -= merged.missing + merged.wrong_type
    ex["DeletedByRoomba"] += merged.missing
    ex["WrongType"] += merged.wrong_type
    ex["CustomAlgorithmError"] += custom.total("error") + custom.total("crash") + \
        custom.total("unavailable")
    ex["CustomAlgorithmTimeout"] += custom.total("timeout")
    ex["CustomAlgorithmSkipped"] += custom.total("skipped")
    ex["AlgorithmError"] += len(merged.algorithm_errors)
    ex["NotAnalysed"] += outcome.unanalysed
    return {k: int(v) for k, v in sorted(ex.items()) if v > 0}


class Analyzer:
    """The parent side: lists the metrics, hands slices to the workers, decides the events."""

    def __init__(self, settings: Settings, client: redis.Redis, url: str, *,
                 processes: int | None = None, inline: bool = False,
                 registry: Mapping[str, Any] | None = None,
                 cluster: ClusterStore | None = None) -> None:
        self.settings = settings
        self.config: AnalyzerConfig = from_settings(settings, registry)
        self.client = client
        self.store = HotStore(client, cluster=cluster)
        self.cluster = cluster
        # on a cluster, the analyzers running against it share its metrics by slot
        self.leases = Leases(client, lease_ttl(settings)) if cluster is not None else None
        self._legacy_checked = False
        self.instance = settings.instance
        n = settings.ANALYZER_PROCESSES if processes is None else processes
        self.pool: WorkerPool | InlinePool
        if inline:
            self.pool = InlinePool(self.config, client, cluster)
        else:
            self.pool = WorkerPool(self.config, url, processes=n,
                                   timeout=max(settings.redis.connect_timeout, 30.0),
                                   runtime_limit=settings.MAX_ANALYZER_PROCESS_RUNTIME,
                                   cluster_nodes=cluster.nodes if cluster is not None else ())
        self._logged_errors: set[tuple[str, str]] = set()
        self._members: list[str] = []

    def start(self) -> None:
        self.pool.start()

    def close(self) -> None:
        self.pool.close()
        if self.leases is not None:
            try:
                self.leases.leave()  # the others take its shards at their next run
            except CONNECTION_ERRORS as e:
                log.warning("analyzer: could not leave the analyzers' membership (%s); its "
                            "lease expires in %g s", e, self.leases.ttl)

    def run_once(self, now: float | None = None, stop: threading.Event | None = None
                 ) -> RunReport:
        started = time.time()
        t0 = time.perf_counter()
        if self.leases is not None and self.cluster is not None:
            shards = self.leases.renew()
            names = self.config.skip_filter(self.cluster.names(shards))
            if self.leases.members != self._members:
                self._members = list(self.leases.members)
                log.info("analyzer: %d analyzer(s) share the cluster's metrics; this one "
                         "(%s) takes index shards %d-%d of %d", len(self._members),
                         self.leases.member, shards.start, shards.stop - 1, keys.INDEX_SHARDS)
        else:
            names = self.config.skip_filter(self.store.names())
        if not self._legacy_checked:
            # incidents kept by releases before the per-metric analysis state: forgotten (a
            # metric still broken opens a new incident at its next point)
            self.client.delete(keys.LEGACY_ANALYZER_INCIDENTS)
            self._legacy_checked = True
        listed = time.perf_counter()
        jobs = [Job(part, now, started) for part in split(names, self.pool.processes)]
        restarts = self.pool.restarts
        outcome = self.pool.run(jobs, stop)
        if outcome.redis_error:
            raise redis.ConnectionError(outcome.redis_error)
        worked = time.perf_counter()
        merged = SliceResult()
        for r in outcome.results:
            merged.merge(r)
        events = sorted(merged.events, key=lambda e: (e.metric, e.timestamp))
        publish_all(self.client, events, maxlen=self.settings.redis.anomaly_stream_maxlen)
        index_incidents(self.client, events)
        done = time.perf_counter()

        stages = {k: round(v, 4) for k, v in merged.stages.items()}
        stages.update(list=round(listed - t0, 4), workers=round(worked - listed, 4),
                      publish=round(done - worked, 4))
        candidates = sum(1 for e in events if e.status in ("anomalous", "vetoed"))
        stats = RunStats(instance=self.instance, started=started, duration=done - t0,
                         metrics=len(names), analysed=merged.analysed, anomalies=candidates,
                         exceptions=_exceptions(merged, outcome, merged.custom), stages=stages)
        report = RunReport(stats=stats, events=events, suppressed=merged.suppressed,
                           failed=outcome.failed, unanalysed=outcome.unanalysed,
                           custom=merged.custom, algorithm_errors=merged.algorithm_errors,
                           stage_stats=merged.stage_stats, abandoned=outcome.abandoned,
                           restarts=self.pool.restarts - restarts + merged.restarts)
        for e in events:
            if e.status in ("anomalous", "vetoed"):
                report.breakdown.update(e.triggered)
        self._log(report)
        return report

    def _log(self, r: RunReport) -> None:
        s = r.stats
        log.info("analyzer run: %d metrics, %d analysed, %d anomalous, %d vetoed, %d "
                 "recovered, %d new level in %.2fs; exceptions %s; breakdown %s",
                 s.metrics, s.analysed, len(r.anomalous), len(r.of("vetoed")),
                 len(r.of("recovered")), len(r.of("new_level")), s.duration,
                 s.exceptions or "none", dict(r.breakdown) or "none")
        for line in r.failed:
            log.error("analyzer: %s", line)
        # one line per distinct failure, not one per metric per run
        for name, text in {**r.algorithm_errors,
                           **{f"custom {k}": v for k, v in r.custom.first.items()}}.items():
            if (name, text) not in self._logged_errors:
                if len(self._logged_errors) > 10_000:
                    self._logged_errors.clear()
                self._logged_errors.add((name, text))
                counts = dict(r.custom.counts.get(name.removeprefix("custom "), {}))
                log.warning("algorithm %s failed: %s%s", name, text,
                            f" (this run: {counts})" if counts else "")
