"""One worker's share of a run: fetch its metrics and their analysis states chunk by chunk,
run them through the analysis pipeline, store the states, and hand back the events.

The next chunk is fetched in a thread while the current one is analysed: fetching is mostly
waiting for Redis (which runs in its own process), analysis is numpy, so the two overlap. Only
what the parent needs travels back: counts, timings, and the events (windows compressed here,
in parallel across workers).
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import redis

from skyline.algorithms import Status, prepare_flat
from skyline.analysis.config import AnalyzerConfig
from skyline.analysis.emit import to_event
from skyline.analysis.isolation import Isolation
from skyline.analysis.judge import CustomFailures
from skyline.analysis.pipeline import Points
from skyline.analysis.stages import StageContext, StageStats
from skyline.core.events import AnomalyEvent
from skyline.store import keys
from skyline.store.analysis_state import StateStore
from skyline.store.cluster import ClusterStore
from skyline.store.flatread import Flat, FlatReader
from skyline.store.hotstore import HotStore
from skyline.store.series import POINT_SIZE, encode

SOURCE = "analyzer"


@dataclass
class Job:
    names: list[str]
    now: float | None = None  # None: the clock when each chunk is fetched
    created: float = 0.0  # the run's start, stamped on its events


@dataclass
class SliceResult:
    metrics: int = 0
    analysed: int = 0  # metrics whose newest point was judged
    points: int = 0  # new analysis points processed
    exceptions: Counter[str] = field(default_factory=Counter)
    stages: dict[str, float] = field(default_factory=dict)
    events: list[AnomalyEvent] = field(default_factory=list)
    suppressed: int = 0  # anomalies in a first run's history, not reported
    states_rebuilt: int = 0
    stage_stats: StageStats = field(default_factory=StageStats)
    missing: int = 0
    wrong_type: int = 0
    corrupt: int = 0
    custom: CustomFailures = field(default_factory=CustomFailures)
    algorithm_errors: dict[str, str] = field(default_factory=dict)
    restarts: int = 0  # custom algorithm processes replaced

    def merge(self, other: SliceResult) -> None:
        self.metrics += other.metrics
        self.analysed += other.analysed
        self.points += other.points
        self.exceptions.update(other.exceptions)
        for k, v in other.stages.items():
            # workers run side by side: a stage takes as long as its slowest worker
            self.stages[k] = max(self.stages.get(k, 0.0), v)
        self.events += other.events
        self.suppressed += other.suppressed
        self.states_rebuilt += other.states_rebuilt
        self.stage_stats.merge(other.stage_stats)
        self.missing += other.missing
        self.wrong_type += other.wrong_type
        self.corrupt += other.corrupt
        self.custom.merge(other.custom)
        for k, e in other.algorithm_errors.items():
            self.algorithm_errors.setdefault(k, e)
        self.restarts += other.restarts


class SliceAnalyzer:
    """Lives in a worker process for its whole life: the read buffers, the pipeline and the
    custom algorithms' process are made once and reused every run."""

    def __init__(self, config: AnalyzerConfig, client: redis.Redis,
                 cluster: ClusterStore | None = None) -> None:
        self.config = config
        # two readers: one fills the next chunk while the other's is analysed (a read's
        # points stay valid until its reader's next read); on a cluster, two stores
        self.readers: list[FlatReader] | list[ClusterStore]
        if cluster is None:
            self.readers = [FlatReader(client, batch=config.read_batch) for _ in range(2)]
        else:
            self.readers = [cluster, cluster.twin()]
        self.states = StateStore(client, cluster=cluster)
        self.store = HotStore(client, cluster=cluster)
        self.isolation = Isolation(config.customs) if config.customs else None
        self.pipeline = config.pipeline(self.isolation,
                                        context=StageContext(client=client))
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="analyzer-fetch")

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        if isinstance(self.readers[1], ClusterStore):
            self.readers[1].close()
        self.pipeline.stages.close()
        if self.isolation is not None:
            self.isolation.close()

    def _fetch(self, reader: FlatReader | ClusterStore, names: Sequence[str]
               ) -> tuple[Flat, list[bytes | None], float, float]:
        started = time.perf_counter()
        flat = reader.read(names, beside=keys.analysis_state)  # series and states together
        return flat, flat.beside, time.time(), time.perf_counter() - started

    def run(self, job: Job) -> SliceResult:
        out = SliceResult(metrics=len(job.names))
        stages: dict[str, float] = defaultdict(float)
        cpu = time.process_time()  # this worker's CPU, every thread
        size = self.config.chunk_size
        chunks = [job.names[i:i + size] for i in range(0, len(job.names), size)]
        restarts = self.isolation.restarts if self.isolation is not None else 0
        checked = self.pipeline.stages.stats
        self.pipeline.stages.stats = StageStats()
        pending = self._pool.submit(self._fetch, self.readers[0], chunks[0]) if chunks else None
        for k, names in enumerate(chunks):
            assert pending is not None
            waited = time.perf_counter()
            flat, blobs, fetched_at, took = pending.result()
            stages["fetch_wait"] += time.perf_counter() - waited
            stages["fetch"] += took
            if k + 1 < len(chunks):
                pending = self._pool.submit(self._fetch, self.readers[(k + 1) % 2],
                                            chunks[k + 1])
            self._analyse_chunk(names, flat, blobs, job, fetched_at, out, stages)
        stages["worker_cpu"] = time.process_time() - cpu
        out.stages = dict(stages)
        out.stage_stats = self.pipeline.stages.stats
        self.pipeline.stages.stats = checked
        if self.isolation is not None:
            out.restarts = self.isolation.restarts - restarts
        return out

    def _analyse_chunk(self, names: list[str], flat: Flat, blobs: list[bytes | None], job: Job,
                       fetched_at: float, out: SliceResult, stages: dict[str, float]) -> None:
        out.missing += flat.stats.missing
        out.wrong_type += flat.stats.wrong_type
        out.corrupt += flat.stats.corrupt
        now = job.now if job.now is not None else fetched_at
        started = time.perf_counter()
        prepared = prepare_flat(flat.timestamps, flat.values, flat.counts,
                                self.config.params, now=now,
                                monotonic=self.config.monotonic_flags(names), analyse_all=True)
        stages["prepare"] += time.perf_counter() - started
        states, rebuilt = self.pipeline.layout.unpack(blobs)
        if self.pipeline.learner is not None and rebuilt.any():
            states["detector"][rebuilt] = self.pipeline.learner.new(int(rebuilt.sum()))
        result = self.pipeline.run(names, prepared, states)
        stages["algorithms"] += result.timings.get("opinions", 0.0)
        stages["steps"] += result.timings.get("steps", 0.0)
        v = result.verdicts
        p = result.points
        out.analysed += len(np.unique(p.metric[p.judged & p.newest]))
        if v is not None:
            out.custom.merge(v.failures)
            for name, err in v.algorithm_errors.items():
                out.algorithm_errors.setdefault(name, err)
            for stage, took in v.timings.items():
                if stage != "algorithms":
                    stages[stage] += took
        codes, counts = np.unique(prepared.status, return_counts=True)
        out.exceptions.update({Status(int(c)).label: int(n)
                               for c, n in zip(codes, counts, strict=True) if c != Status.OK})
        out.points += len(result.points)
        out.suppressed += result.suppressed
        out.states_rebuilt += int(rebuilt.sum())
        started = time.perf_counter()
        for pe in result.events:
            out.events.append(to_event(pe, SOURCE, job.created))
        stages["explain"] += time.perf_counter() - started
        started = time.perf_counter()
        touched = np.unique(result.points.metric)  # a state is stored once it has a cursor
        if len(touched):
            self.states.write([names[i] for i in touched.tolist()],
                              self.pipeline.layout.pack(states, touched))
            self._write_scores(names, result.points)
        stages["state_write"] += time.perf_counter() - started

    def _write_scores(self, names: list[str], p: Points) -> None:
        """Every judged point's score, appended to its metric's score series (keys.scores):
        one APPEND per metric, on the write path's fast lane."""
        judged = np.flatnonzero(p.judged)
        if not len(judged):
            return
        metric = p.metric[judged]
        packed = encode(p.t[judged], p.score[judged])
        cuts = np.flatnonzero(np.r_[True, metric[1:] != metric[:-1], True])
        owners = [names[int(m)] for m in metric[cuts[:-1]].tolist()]
        payloads = [packed[a * POINT_SIZE:b * POINT_SIZE]
                    for a, b in zip(cuts[:-1].tolist(), cuts[1:].tolist(), strict=True)]
        self.store.append_beside(keys.scores, owners, payloads)
