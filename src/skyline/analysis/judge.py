"""From raw series to the final verdict per metric: the built-in ensemble plus the custom
algorithms. One code path for the live analyzer, crucible and crucible's replay.

The ensemble runs vectorised in this process; custom algorithms are per-series user code and
run in isolation (a child process that is killed on overrun). How they combine (upstream's
CUSTOM_ALGORITHMS fields, docs/analyzer.md):

- a custom algorithm in scope gives one more opinion; its True is a vote towards CONSENSUS;
- `alone` (upstream consensus 1): its True makes the metric anomalous by itself;
- `veto` (run after the ensemble, only if consensus): runs only on anomalies, and its False
  clears the anomaly;
- `run_3sigma` false: the built-in ensemble does not run for metrics in its scope.

Rows a voting custom algorithm may tip over CONSENSUS are run through the ensemble without
early stop: early stop drops a row once the built-ins alone cannot reach CONSENSUS, which an
extra vote could change.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from skyline.algorithms import (
    Analysis,
    AnalysisParams,
    Batch,
    EnsembleResult,
    Prepared,
    Status,
    assemble,
    make_ensemble,
    prepare,
    prepare_flat,
)
from skyline.analysis.customs import CustomSpec
from skyline.analysis.isolation import Isolation, Outcome
from skyline.core.events import AlgorithmResult, pack_window
from skyline.core.types import FloatArray


@dataclass
class Judgement:
    """One metric's verdict with everything an event needs. timestamp and value are the raw
    last point; window is what the algorithms saw (after derivative and resampling)."""

    metric: str
    timestamp: float
    value: float
    anomalous: bool
    score: float
    status: str
    triggered: tuple[str, ...] = ()
    results: tuple[AlgorithmResult, ...] = ()
    window_timestamps: FloatArray = field(default_factory=lambda: np.empty(0))
    window_values: FloatArray = field(default_factory=lambda: np.empty(0))
    packed_window: bytes = b""  # pack_window() of the window, when compressed already

    def pack(self) -> Judgement:
        """Compress the window (where the work can be spread, e.g. in a worker process) and
        drop the arrays: the event needs only the packed form."""
        if not self.packed_window:
            self.packed_window = pack_window(self.window_timestamps, self.window_values, level=1)
            self.window_timestamps = self.window_values = np.empty(0)
        return self


@dataclass
class CustomFailures:
    """Per custom algorithm: how many series it failed on, by kind, and the first reason."""

    counts: dict[str, Counter[str]] = field(default_factory=dict)
    first: dict[str, str] = field(default_factory=dict)

    def add(self, name: str, outcome: Outcome, metric: str) -> None:
        self.counts.setdefault(name, Counter())[outcome.failure] += 1
        if outcome.failure != "skipped":
            self.first.setdefault(name, f"{metric}: {outcome.error or outcome.text}")

    def merge(self, other: CustomFailures) -> None:
        for name, c in other.counts.items():
            self.counts.setdefault(name, Counter()).update(c)
        for name, text in other.first.items():
            self.first.setdefault(name, text)

    def total(self, kind: str) -> int:
        return sum(c[kind] for c in self.counts.values())


@dataclass
class Verdicts:
    """A chunk of metrics judged. Arrays are indexed like the input names."""

    names: Sequence[str]
    prepared: Prepared
    analysis: Analysis
    status: npt.NDArray[np.int8]
    anomalous: npt.NDArray[np.bool_]
    judged: npt.NDArray[np.bool_]
    score: FloatArray
    custom: dict[int, list[tuple[CustomSpec, Outcome]]]
    failures: CustomFailures
    algorithm_errors: dict[str, str]
    _where: npt.NDArray[np.int64]  # (input, 2): prepared batch and row, -1 when not batched
    timings: dict[str, float] = field(default_factory=dict)  # seconds: prepare, algorithms, custom

    def __len__(self) -> int:
        return len(self.names)

    def exception_counts(self) -> dict[str, int]:
        return self.analysis.exception_counts()

    def series(self, i: int) -> tuple[FloatArray, FloatArray]:
        b, row = self._where[i]
        if b < 0:
            empty = np.empty(0)
            return empty, empty
        return self.prepared.batches[b].series(int(row))

    def judgement(self, i: int) -> Judgement:
        results = list(self.analysis.explain(i))
        triggered = list(self.analysis.triggered(i))
        for spec, out in self.custom.get(i, ()):
            verdict = True if out.verdict == 1 else False if out.verdict == 0 else None
            results.append(AlgorithmResult(
                algorithm=spec.name, verdict=verdict,
                statistic=out.score if math.isfinite(out.score) else None, limit=None,
                text=out.text))
            if verdict:
                triggered.append(spec.name)
        t, v = self.series(i)
        prepared = self.prepared
        return Judgement(
            metric=self.names[i], timestamp=float(prepared.last_timestamp[i]),
            value=float(prepared.last_value[i]), anomalous=bool(self.anomalous[i]),
            score=float(self.score[i]), status=Status(int(self.status[i])).label,
            triggered=tuple(triggered), results=tuple(results),
            window_timestamps=t.copy(), window_values=v.copy())


def _aggregate(prepared: Prepared, ran: list[Batch], results: list[EnsembleResult]) -> Analysis:
    """The analysis of ensemble results for batches we chose (row subsets of the prepared
    ones): those batches are the ones its series(i) must read from."""
    return assemble(dataclasses.replace(prepared, batches=ran), results)


class Judge:
    def __init__(self, params: AnalysisParams, customs: Sequence[CustomSpec] = (), *,
                 isolation: Isolation | None = None, registry: Mapping[str, Any] | None = None,
                 run_builtins: bool = True, consensus: int | None = None) -> None:
        self.params = params
        self.customs = tuple(customs)
        self.isolation = isolation
        if self.customs and isolation is None:
            raise ValueError("custom algorithms need a isolation to run in")
        self.run_builtins = run_builtins
        self.ensemble = make_ensemble(params, registry)
        # the vote over built-ins and custom algorithms together (crucible may select fewer
        # built-ins than CONSENSUS and add custom ones; the score detector votes once, so a
        # voting custom algorithm's True is then enough on its own)
        self.consensus = self.ensemble.consensus if consensus is None else consensus
        self.full = dataclasses.replace(self.ensemble, early_stop=False)
        self._matchers = [(s, s.matcher()) for s in self.customs]

    # -- entry points --------------------------------------------------------------------------

    def judge_flat(self, names: Sequence[str], timestamps: FloatArray, values: FloatArray,
                   counts: npt.NDArray[np.int64], *, now: float | None,
                   monotonic: Sequence[bool | None] | None = None,
                   analyse_all: bool = False) -> Verdicts:
        started = time.perf_counter()
        prepared = prepare_flat(timestamps, values, counts, self.params, now=now,
                                monotonic=monotonic, analyse_all=analyse_all)
        took = time.perf_counter() - started
        v = self.judge_prepared(names, prepared)
        v.timings["prepare"] = took
        return v

    def judge_series(self, names: Sequence[str],
                     series: Sequence[tuple[FloatArray, FloatArray]], *, now: float | None,
                     monotonic: Sequence[bool | None] | None = None,
                     analyse_all: bool = False) -> Verdicts:
        started = time.perf_counter()
        prepared = prepare(series, self.params, now=now, monotonic=monotonic,
                           analyse_all=analyse_all)
        took = time.perf_counter() - started
        v = self.judge_prepared(names, prepared)
        v.timings["prepare"] = took
        return v

    # -- the work ------------------------------------------------------------------------------

    def _scopes(self, names: Sequence[str]) -> dict[str, npt.NDArray[np.bool_]]:
        return {s.name: np.fromiter((m.any(n) for n in names), dtype=bool, count=len(names))
                for s, m in self._matchers}

    def judge_prepared(self, names: Sequence[str], prepared: Prepared, *,
                       ok_only: bool = False) -> Verdicts:
        """The newest point of each prepared series judged. ok_only: series whose status is
        not OK (too short, stale, boring) sit in the batches (prepared with analyse_all, for
        the pipeline, which needs their points) but are not judged."""
        started = time.perf_counter()
        k = len(prepared)
        scopes = self._scopes(names) if self.customs else {}
        no_builtins = np.zeros(k, dtype=bool) if self.run_builtins else np.ones(k, dtype=bool)
        if ok_only:
            no_builtins |= prepared.status != Status.OK
        needs_full = np.zeros(k, dtype=bool)
        for s in self.customs:
            if not s.run_3sigma:
                no_builtins |= scopes[s.name]
            if not s.alone and not s.veto:
                needs_full |= scopes[s.name]
        where = np.full((k, 2), -1, dtype=np.int64)
        ran: list[Batch] = []
        results: list[EnsembleResult] = []
        for b, batch in enumerate(prepared.batches):
            where[batch.rows, 0] = b
            where[batch.rows, 1] = np.arange(batch.size)
            rows = batch.rows
            skip, full = no_builtins[rows], needs_full[rows]
            if not skip.any() and not full.any():
                ran.append(batch)
                results.append(self.ensemble.run(batch))
                continue
            pos = np.arange(batch.size)
            for sel, ens in ((~skip & ~full, self.ensemble), (~skip & full, self.full)):
                if sel.any():
                    part = batch if sel.all() else batch.take(pos[sel])
                    ran.append(part)
                    results.append(ens.run(part))
        analysis = _aggregate(prepared, ran, results)
        errors: dict[str, str] = {}
        for res in results:
            for name, err in res.errors.items():
                errors.setdefault(name, err)
        in_batches = where[:, 0] >= 0
        if ok_only:
            in_batches &= prepared.status == Status.OK
        v = Verdicts(names=names, prepared=prepared, analysis=analysis, status=prepared.status,
                     anomalous=analysis.anomalous.copy(), judged=analysis.opinions > 0,
                     score=analysis.score.copy(), custom={}, failures=CustomFailures(),
                     algorithm_errors=errors, _where=where)
        v.timings["algorithms"] = time.perf_counter() - started
        if self.customs:
            started = time.perf_counter()
            self._run_customs(v, scopes, in_batches)
            v.timings["custom"] = time.perf_counter() - started
        return v

    def _run_customs(self, v: Verdicts, scopes: dict[str, npt.NDArray[np.bool_]],
                     in_batches: npt.NDArray[np.bool_]) -> None:
        assert self.isolation is not None
        analysis = v.analysis
        votes = analysis.votes.copy()
        opinions = analysis.opinions.copy()
        builtin_anomalous = analysis.anomalous
        alone = np.zeros(len(v), dtype=bool)
        vetoed = np.zeros(len(v), dtype=bool)
        # the ensemble-only ones first, so a veto sees the votes of the others
        for spec in sorted(self.customs, key=lambda s: s.veto):
            want = scopes[spec.name] & in_batches
            if spec.veto:
                want &= (votes >= self.consensus) | alone | builtin_anomalous
            idx = np.flatnonzero(want)
            if not len(idx):
                continue
            rows = [(v.names[int(i)], *v.series(int(i))) for i in idx]
            outcomes = self.isolation.run(spec.name, rows)
            for i, out in zip(idx, outcomes, strict=True):
                v.custom.setdefault(int(i), []).append((spec, out))
                if out.failure:
                    v.failures.add(spec.name, out, v.names[int(i)])
                if out.verdict < 0:
                    continue
                if spec.veto:
                    vetoed[i] |= out.verdict == 0
                    continue
                opinions[i] += 1
                votes[i] += out.verdict == 1
                alone[i] |= spec.alone and out.verdict == 1
        v.anomalous = ((votes >= self.consensus) | alone) & ~vetoed
        v.judged = opinions > 0
        if self.ensemble.score_column is None:  # a scoring ensemble keeps its anomaly score
            with np.errstate(invalid="ignore", divide="ignore"):
                v.score = np.where(opinions > 0, votes / np.maximum(opinions, 1), 0.0)
