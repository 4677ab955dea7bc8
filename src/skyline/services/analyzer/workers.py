"""ANALYZER_PROCESSES worker processes, each with its own Redis connection, each fetching and
judging the slice of names the parent gives it every run.

Workers live as long as the analyzer: their buffers and the custom algorithms' process are
reused run after run. One that overruns MAX_ANALYZER_PROCESS_RUNTIME, dies or is abandoned at
shutdown is killed and replaced at the next run; its slice is counted as not analysed.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any

import redis

from skyline.analysis.config import AnalyzerConfig
from skyline.runtime.processes import mp_context
from skyline.services.analyzer.slice import Job, SliceAnalyzer, SliceResult
from skyline.store.cluster import ClusterStore
from skyline.store.redis_client import CONNECTION_ERRORS, make_client, make_cluster_client

log = logging.getLogger(__name__)

STARTUP_TIMEOUT = 120.0
POLL = 0.2


def _worker_main(conn: Connection, config: AnalyzerConfig, url: str, timeout: float,
                 cluster_nodes: Sequence[tuple[str, int]] = ()) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the parent, which stops us
    cluster: ClusterStore | None = None
    try:
        if cluster_nodes:  # the parent found a cluster (these nodes) at start; learn its map
            client = make_cluster_client(url, timeout, cluster_nodes)
            cluster = ClusterStore.from_url(url, timeout, cluster_nodes)
        else:  # connects on first use: a worker starts while Redis is down
            client = make_client(url, timeout)
        analyzer = SliceAnalyzer(config, client, cluster)
    except CONNECTION_ERRORS as e:  # the cluster's map could not be learnt: one line
        conn.send(("error", f"Redis unreachable at start: {type(e).__name__}: {e}"))
        return
    except Exception:  # noqa: BLE001 - reported to the parent, which logs it
        conn.send(("error", traceback.format_exc()))
        return
    conn.send(("ready", None))
    try:
        while True:
            try:
                job = conn.recv()
            except (EOFError, OSError):
                break
            if job is None:
                break
            try:
                conn.send(("ok", analyzer.run(job)))
            except CONNECTION_ERRORS as e:
                conn.send(("redis", f"{type(e).__name__}: {e}"))
            except Exception:  # noqa: BLE001 - a failed slice is reported, the worker lives on
                conn.send(("error", traceback.format_exc()))
    finally:
        analyzer.close()
        client.close()
        if cluster is not None:
            cluster.close()


@dataclass
class PoolOutcome:
    results: list[SliceResult] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # one line per slice not analysed
    unanalysed: int = 0  # metrics of the failed slices
    redis_error: str = ""
    abandoned: bool = False  # stopped before the run finished


class _Worker:
    def __init__(self, index: int, proc: BaseProcess, conn: Connection):
        self.index, self.proc, self.conn = index, proc, conn


class WorkerPool:
    def __init__(self, config: AnalyzerConfig, url: str, *, processes: int, timeout: float,
                 runtime_limit: float, context: Any = None,
                 cluster_nodes: Sequence[tuple[str, int]] = ()) -> None:
        self.config = config
        self.url = url
        self.cluster_nodes = list(cluster_nodes)  # on a cluster: every node known at start
        self.processes = processes
        self.timeout = timeout
        self.runtime_limit = runtime_limit
        self.context = context or mp_context()
        self._workers: list[_Worker | None] = [None] * processes
        self.restarts = 0

    def _start(self, index: int) -> _Worker:
        parent, child = self.context.Pipe()
        proc = self.context.Process(target=_worker_main,
                                    args=(child, self.config, self.url, self.timeout,
                                          self.cluster_nodes),
                                    name=f"skyline-analyzer-{index}")
        proc.start()
        child.close()
        if not parent.poll(STARTUP_TIMEOUT):
            proc.kill()
            proc.join()
            raise RuntimeError(f"analyzer worker {index} did not start within "
                               f"{STARTUP_TIMEOUT:g} s")
        try:
            kind, detail = parent.recv()
        except (EOFError, OSError):
            kind, detail = "died", f"exit code {proc.exitcode}"
        if kind != "ready":
            proc.join(5)
            raise RuntimeError(f"analyzer worker {index} failed to start:\n{detail}")
        return _Worker(index, proc, parent)

    def _ensure(self) -> list[_Worker]:
        out = []
        for i, w in enumerate(self._workers):
            if w is None or not w.proc.is_alive():
                if w is not None:
                    self._kill(w)
                    self.restarts += 1
                w = self._workers[i] = self._start(i)
            out.append(w)
        return out

    def _kill(self, w: _Worker) -> None:
        if w.proc.is_alive():
            w.proc.kill()
        w.proc.join(10)
        w.conn.close()
        self._workers[w.index] = None

    def start(self) -> None:
        self._ensure()

    def close(self) -> None:
        for w in self._workers:
            if w is None:
                continue
            try:
                w.conn.send(None)
            except OSError:
                pass
        deadline = time.monotonic() + 10
        for w in self._workers:
            if w is not None:
                w.proc.join(max(0.1, deadline - time.monotonic()))
                self._kill(w)

    def run(self, jobs: Sequence[Job], stop: threading.Event | None = None) -> PoolOutcome:
        """Give job i to worker i and collect the results."""
        assert len(jobs) <= self.processes
        out = PoolOutcome()
        if not jobs:
            return out
        workers = self._ensure()[:len(jobs)]
        busy: dict[Connection, tuple[_Worker, Job]] = {}
        for w, job in zip(workers, jobs, strict=True):
            w.conn.send(job)
            busy[w.conn] = (w, job)
        deadline = time.monotonic() + self.runtime_limit
        while busy:
            for ready in wait(list(busy), timeout=POLL):
                w, job = busy.pop(ready)  # type: ignore[call-overload]
                try:
                    kind, detail = w.conn.recv()
                except (EOFError, OSError):
                    kind, detail = "died", f"exit code {w.proc.exitcode}"
                if kind == "ok":
                    out.results.append(detail)
                    continue
                out.unanalysed += len(job.names)
                if kind == "redis":
                    out.redis_error = detail
                else:
                    out.failed.append(f"worker {w.index}: {kind}: {detail}")
                    if kind == "died":
                        self._kill(w)
            if stop is not None and stop.is_set() and busy:
                for w, job in busy.values():
                    self._kill(w)
                    out.unanalysed += len(job.names)
                out.abandoned = True
                break
            if busy and time.monotonic() > deadline:
                for w, job in busy.values():
                    self._kill(w)
                    out.unanalysed += len(job.names)
                    out.failed.append(f"worker {w.index}: killed after MAX_ANALYZER_PROCESS_"
                                      f"RUNTIME {self.runtime_limit:g} s")
                break
        return out


class InlinePool:
    """The same work in this process, one slice after another (tests, `--processes 0`)."""

    def __init__(self, config: AnalyzerConfig, client: redis.Redis,
                 cluster: ClusterStore | None = None) -> None:
        self.analyzer = SliceAnalyzer(config, client, cluster)
        self.processes = 1
        self.restarts = 0

    def start(self) -> None:
        pass

    def close(self) -> None:
        self.analyzer.close()

    def run(self, jobs: Sequence[Job], stop: threading.Event | None = None) -> PoolOutcome:
        out = PoolOutcome()
        for job in jobs:
            try:
                out.results.append(self.analyzer.run(job))
            except CONNECTION_ERRORS as e:
                out.redis_error = f"{type(e).__name__}: {e}"
                out.unanalysed += len(job.names)
        return out
