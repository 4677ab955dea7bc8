"""The one write path: validate a batch of points, guard cardinality, buffer what is valid.

Every protocol hands its parsed points here. Valid points are stored even when they arrive
mixed with garbage; each refused point is counted by protocol and reason in the `ingest`
self-metrics (`rejected_<protocol>_<reason>`). The buffer is flushed to the hot store by the
runner at least every ingest.flush_interval; above ingest.high_watermark buffered points the
TCP listeners pause (backpressure) until it drains below ingest.low_watermark.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import compress

import numpy as np
import numpy.typing as npt

from skyline.core.patterns import PatternSet
from skyline.ingest.guard import KnownMetrics
from skyline.ingest.names import name_problem
from skyline.ingest.refusals import RefusalLog
from skyline.settings import Settings
from skyline.store.writer import PointBuffer
from skyline.telemetry import Telemetry

SKIPPED = "skip_list"
RESERVED = "reserved_name"
_NAME_CACHE_MAX = 2_000_000
#: bytes of names each cache may hold (a name costs its length plus ~100 bytes of dict or
#: set entry and str header); past it the cache starts afresh
_NAME_CACHE_BYTES = 128 * 2**20
_ENTRY_OVERHEAD = 100


@dataclass
class SubmitResult:
    received: int = 0
    accepted: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    #: per item: None when accepted, else the reason (only when asked for)
    reasons: list[str | None] | None = None

    def add(self, other: SubmitResult) -> None:
        self.received += other.received
        self.accepted += other.accepted
        self.rejected.update(other.rejected)


class Ingest:
    def __init__(self, settings: Settings, buffer: PointBuffer, telemetry: Telemetry,
                 known: KnownMetrics | None = None):
        self.settings = settings
        self.buffer = buffer
        self.telemetry = telemetry
        self.known = known or KnownMetrics(settings.MAX_METRICS,
                                           settings.MAX_NEW_METRICS_PER_MINUTE)
        self._skip = PatternSet(settings.SKIP_LIST)
        self._keep = PatternSet(settings.DO_NOT_SKIP_LIST)
        # name -> reason it is refused (None: valid and not skipped); names repeat endlessly
        self._verdicts: dict[str, str | None] = {}
        self._verdict_bytes = 0
        # names longer than this are refused for their length, which is checked without
        # caching them: a flood of huge refused names must not fill memory
        self._longest = settings.ingest.max_name_length + settings.ingest.max_labels_length + 2
        self._reserved = settings.telemetry.series_prefix + "."
        # names valid, not skipped and admitted by the guard of this generation: points of
        # these need no per-name work at all (a set difference in C finds the others)
        self._admitted: set[str] = set()
        self._admitted_bytes = 0
        self._admitted_generation = -1
        self._paused = False
        self._drained = asyncio.Event()
        self._drained.set()
        self.refusals = RefusalLog()

    # validation ------------------------------------------------------------------------------
    def _name_verdict(self, name: str) -> str | None:
        verdict = self._verdicts.get(name, "")
        if verdict != "":
            return verdict
        ing = self.settings.ingest
        problem = name_problem(name, ing.max_name_length, ing.max_labels_length)
        if len(name) > self._longest:
            return problem
        if problem is None and name.startswith(self._reserved):
            problem = RESERVED  # only Skyline writes its own series: nobody can forge them
        if problem is None and self._skip and self._skip.any(name) and not self._keep.any(name):
            problem = SKIPPED
        if len(self._verdicts) >= _NAME_CACHE_MAX or self._verdict_bytes > _NAME_CACHE_BYTES:
            self._verdicts.clear()
            self._verdict_bytes = 0
        self._verdicts[name] = problem
        self._verdict_bytes += len(name) + _ENTRY_OVERHEAD
        return problem

    def submit(
        self,
        protocol: str,
        names: Sequence[str],
        timestamps: Sequence[float] | npt.NDArray[np.float64],
        values: Sequence[float] | npt.NDArray[np.float64],
        *,
        now: float | None = None,
        with_reasons: bool = False,
        quota: KnownMetrics | None = None,
        peer: str | None = None,
    ) -> SubmitResult:
        """Validate and buffer points; `quota` is an extra guard (e.g. one flux key's)."""
        n = len(names)
        result = SubmitResult(received=n)
        if n == 0:
            if with_reasons:
                result.reasons = []
            return result
        now = time.time() if now is None else now
        ts = np.asarray(timestamps, dtype=np.float64)
        vs = np.asarray(values, dtype=np.float64)
        if ts.shape != (n,) or vs.shape != (n,):
            raise ValueError("names, timestamps and values must have the same length")

        bad_value = ~np.isfinite(vs)
        bad_ts = ~np.isfinite(ts)
        too_old = ts < now - self.settings.ingest_max_age
        too_new = ts > now + self.settings.ingest.max_future
        numeric_bad = bad_value | bad_ts | too_old | too_new
        any_numeric_bad = bool(numeric_bad.any())

        # Names repeat within a batch (a metric per point), so each distinct name is judged
        # once, in order of first appearance among the points still in play: the cardinality
        # guards then admit names in arrival order, as a loop over the points would.
        candidates: Iterable[str] = (
            compress(names, (~numeric_bad).tolist()) if any_numeric_bad else names)
        refused: dict[str, str] = {}
        admitted: set[str] | None = None
        todo: Iterable[str]
        if quota is None:  # a quota must see every name, so only the plain guard is cached
            if (self._admitted_generation != self.known.generation
                    or len(self._admitted) >= _NAME_CACHE_MAX
                    or self._admitted_bytes > _NAME_CACHE_BYTES):
                self._admitted, self._admitted_generation = set(), self.known.generation
                self._admitted_bytes = 0
            admitted = self._admitted  # a reload meanwhile swaps it: adds go to the old one
            if any_numeric_bad:
                candidates = list(candidates)
            if admitted.issuperset(candidates):  # the steady state: no name to look at
                todo = ()
            else:
                unique = dict.fromkeys(candidates)
                new = unique.keys() - admitted
                todo = [n for n in unique if n in new]
        else:
            todo = dict.fromkeys(candidates)
        verdict = self._name_verdict
        admit = self.known.admit
        for name in todo:
            r = verdict(name)
            if r is None:
                r = admit(name, now)
                if r is None and quota is not None:
                    r = quota.admit(name, now)
            if r is not None:
                refused[name] = r
            elif admitted is not None:
                admitted.add(name)
                self._admitted_bytes += len(name) + _ENTRY_OVERHEAD

        if refused:
            keep_mask = ~numeric_bad & np.fromiter(
                (name not in refused for name in names), dtype=bool, count=n)
        else:
            keep_mask = ~numeric_bad
        n_keep = int(np.count_nonzero(keep_mask))
        if n_keep == n:
            accepted = self.buffer.add_many(names, ts, vs)
        elif n_keep:
            idx = np.flatnonzero(keep_mask)
            accepted = self.buffer.add_many(list(compress(names, keep_mask.tolist())), ts[idx],
                                            vs[idx])
        else:
            accepted = 0
        result.accepted = accepted

        # the per-point reasons are only spelled out when something was refused (or asked for)
        if with_reasons or accepted < n:
            reasons: list[str | None] = [None] * n
            if any_numeric_bad:
                for i in np.flatnonzero(numeric_bad).tolist():
                    reasons[i] = ("bad_timestamp" if bad_ts[i] else "timestamp_too_old"
                                  if too_old[i] else "timestamp_in_future" if too_new[i]
                                  else "bad_value")
            if refused:
                for i, name in enumerate(names):
                    if reasons[i] is None:
                        reasons[i] = refused.get(name)
            if accepted < n_keep:
                for i in np.flatnonzero(keep_mask)[accepted:].tolist():
                    reasons[i] = "buffer_full"
            result.rejected = Counter(r for r in reasons if r is not None)
            if with_reasons:
                result.reasons = reasons
        self._count(protocol, result, peer)
        self._update_pressure()
        return result

    def reject(self, protocol: str, reason: str, count: int = 1, peer: str | None = None,
               detail: str = "") -> None:
        """Count input refused before it became points (a frame, line or request), and log a
        sample of it with the sender's address."""
        self.telemetry.incr(f"rejected_{protocol}_{reason}", count)
        self.refusals.refused(protocol, reason, count, peer, detail)

    def _count(self, protocol: str, result: SubmitResult, peer: str | None) -> None:
        tel = self.telemetry
        tel.incr(f"received_{protocol}", result.received)
        tel.incr(f"accepted_{protocol}", result.accepted)
        for reason, count in result.rejected.items():
            tel.incr(f"rejected_{protocol}_{reason}", count)
            self.refusals.refused(protocol, reason, count, peer)

    # backpressure ----------------------------------------------------------------------------
    def _update_pressure(self) -> None:
        depth = len(self.buffer)
        ing = self.settings.ingest
        if not self._paused and depth >= ing.high_watermark:
            self._paused = True
            self._drained.clear()
            self.telemetry.incr("backpressure_pauses")
        elif self._paused and depth <= ing.low_watermark:
            self._paused = False
            self._drained.set()

    @property
    def paused(self) -> bool:
        """True while TCP listeners should stop reading and UDP packets are dropped."""
        return self._paused

    def after_flush(self) -> None:
        """The runner calls this after each flush, from the event loop."""
        self._update_pressure()
        self.telemetry.gauge("buffer_depth", len(self.buffer))

    async def wait_writable(self) -> None:
        if self._paused:
            await self._drained.wait()
