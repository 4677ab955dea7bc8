"""One worker's share of a run: fetch its metrics chunk by chunk and judge them.

The next chunk is fetched in a thread while the current one is judged: fetching is mostly
waiting for Redis (which runs in its own process), judging is numpy, so the two overlap.
Only what the parent needs travels back: counts, timings, and the full judgement of the few
metrics that are anomalous or have an open incident.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import redis

from skyline.analysis.config import AnalyzerConfig
from skyline.analysis.isolation import Isolation
from skyline.analysis.judge import CustomFailures, Judge, Judgement
from skyline.store.flatread import Flat, FlatReader


@dataclass
class Job:
    names: list[str]
    watch: frozenset[str] = frozenset()  # metrics with an open incident: report them when normal
    now: float | None = None  # None: the clock when each chunk is fetched


@dataclass
class SliceResult:
    metrics: int = 0
    analysed: int = 0
    exceptions: Counter[str] = field(default_factory=Counter)
    stages: dict[str, float] = field(default_factory=dict)
    anomalies: list[Judgement] = field(default_factory=list)
    normal: list[Judgement] = field(default_factory=list)  # watched metrics judged normal
    missing: int = 0
    wrong_type: int = 0
    corrupt: int = 0
    custom: CustomFailures = field(default_factory=CustomFailures)
    algorithm_errors: dict[str, str] = field(default_factory=dict)
    restarts: int = 0  # custom algorithm processes replaced

    def merge(self, other: SliceResult) -> None:
        self.metrics += other.metrics
        self.analysed += other.analysed
        self.exceptions.update(other.exceptions)
        for k, v in other.stages.items():
            # workers run side by side: a stage takes as long as its slowest worker
            self.stages[k] = max(self.stages.get(k, 0.0), v)
        self.anomalies += other.anomalies
        self.normal += other.normal
        self.missing += other.missing
        self.wrong_type += other.wrong_type
        self.corrupt += other.corrupt
        self.custom.merge(other.custom)
        for k, e in other.algorithm_errors.items():
            self.algorithm_errors.setdefault(k, e)
        self.restarts += other.restarts


class SliceAnalyzer:
    """Lives in a worker process for its whole life: the read buffers, the ensemble and the
    custom algorithms' process are made once and reused every run."""

    def __init__(self, config: AnalyzerConfig, client: redis.Redis) -> None:
        self.config = config
        self.readers = [FlatReader(client, batch=config.read_batch) for _ in range(2)]
        self.isolation = Isolation(config.customs) if config.customs else None
        self.judge = Judge(config.params, config.customs, isolation=self.isolation)
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="analyzer-fetch")

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        if self.isolation is not None:
            self.isolation.close()

    def _fetch(self, reader: FlatReader, names: Sequence[str]) -> tuple[Flat, float, float]:
        started = time.perf_counter()
        flat = reader.read(names)
        return flat, time.time(), time.perf_counter() - started

    def run(self, job: Job) -> SliceResult:
        out = SliceResult(metrics=len(job.names))
        stages: dict[str, float] = defaultdict(float)
        cpu = time.process_time()  # this worker's CPU, every thread
        size = self.config.chunk_size
        chunks = [job.names[i:i + size] for i in range(0, len(job.names), size)]
        restarts = self.isolation.restarts if self.isolation is not None else 0
        pending = self._pool.submit(self._fetch, self.readers[0], chunks[0]) if chunks else None
        for k, names in enumerate(chunks):
            assert pending is not None
            waited = time.perf_counter()
            flat, fetched_at, took = pending.result()
            stages["fetch_wait"] += time.perf_counter() - waited
            stages["fetch"] += took
            if k + 1 < len(chunks):
                pending = self._pool.submit(self._fetch, self.readers[(k + 1) % 2],
                                            chunks[k + 1])
            self._judge_chunk(names, flat, job, fetched_at, out, stages)
        stages["worker_cpu"] = time.process_time() - cpu
        out.stages = dict(stages)
        if self.isolation is not None:
            out.restarts = self.isolation.restarts - restarts
        return out

    def _judge_chunk(self, names: list[str], flat: Flat, job: Job, fetched_at: float,
                     out: SliceResult, stages: dict[str, float]) -> None:
        out.missing += flat.stats.missing
        out.wrong_type += flat.stats.wrong_type
        out.corrupt += flat.stats.corrupt
        now = job.now if job.now is not None else fetched_at
        verdicts = self.judge.judge_flat(
            names, flat.timestamps, flat.values, flat.counts, now=now,
            monotonic=self.config.monotonic_flags(names))
        for stage, took in verdicts.timings.items():
            stages[stage] += took
        out.analysed += int(verdicts.judged.sum())
        out.exceptions.update(verdicts.exception_counts())
        out.custom.merge(verdicts.failures)
        for name, err in verdicts.algorithm_errors.items():
            out.algorithm_errors.setdefault(name, err)
        started = time.perf_counter()
        # windows are compressed here, in parallel across workers, not in the parent
        for row in verdicts.anomalous.nonzero()[0]:
            out.anomalies.append(verdicts.judgement(int(row)).pack())
        if job.watch:
            for i, name in enumerate(names):
                if name in job.watch and verdicts.judged[i] and not verdicts.anomalous[i]:
                    out.normal.append(verdicts.judgement(i).pack())
        stages["explain"] += time.perf_counter() - started
