"""One call from raw series to per-metric verdicts: prepare, run the ensemble on every batch,
and index the outcome by the caller's series order."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from skyline.algorithms.base import BoolArray, IntArray
from skyline.algorithms.ensemble import Ensemble, EnsembleResult
from skyline.algorithms.params import AnalysisParams, Status
from skyline.algorithms.prepare import Prepared, SeriesInput, prepare
from skyline.algorithms.range_excess import RangeExcess
from skyline.algorithms.registry import Factory, build
from skyline.core.events import AlgorithmResult
from skyline.core.types import FloatArray


@dataclass
class Analysis:
    """Per input series i: status, anomalous, votes (True), opinions (True or False given),
    score (the anomaly score, or votes / opinions for a consensus ensemble), intensity (mean
    capped severity); explain(i) for the details."""

    prepared: Prepared
    results: list[EnsembleResult]
    status: npt.NDArray[np.int8]
    anomalous: BoolArray
    votes: IntArray
    opinions: IntArray
    score: FloatArray
    intensity: FloatArray
    _where: npt.NDArray[np.int64]  # (series, 2): result index and row, -1 when not analysed

    def __len__(self) -> int:
        return int(self.status.shape[0])

    def status_of(self, i: int) -> Status:
        return Status(int(self.status[i]))

    def analysed(self, i: int) -> bool:
        return bool(self._where[i, 0] >= 0)

    def explain(self, i: int) -> tuple[AlgorithmResult, ...]:
        r, row = self._where[i]
        return self.results[r].explain(int(row)) if r >= 0 else ()

    def triggered(self, i: int) -> tuple[str, ...]:
        r, row = self._where[i]
        return self.results[r].triggered(int(row)) if r >= 0 else ()

    def series(self, i: int) -> tuple[FloatArray, FloatArray]:
        """The points the algorithms saw for series i (after derivative and resampling)."""
        r, row = self._where[i]
        if r < 0:
            empty = np.empty(0)
            return empty, empty
        return self.prepared.batches[r].series(int(row))

    def exception_counts(self) -> dict[str, int]:
        """Upstream's per-run exception breakdown."""
        codes, counts = np.unique(self.status, return_counts=True)
        return {Status(int(c)).label: int(n) for c, n in zip(codes, counts, strict=True)
                if c != Status.OK}


def make_ensemble(params: AnalysisParams,
                  registry: Mapping[str, Factory] | None = None) -> Ensemble:
    """The ensemble params describe: for the "score" detector range_excess alone (consensus 1,
    its anomaly score is the score); for "consensus" ALGORITHMS and CONSENSUS."""
    if params.detector == "score":
        # the newest point alone: the pipeline judges each new point as the newest of its
        # own window (RangeExcess.run_columns for the older ones of a run)
        scorer = RangeExcess(threshold=params.score_threshold, tail=1)
        return Ensemble((scorer,), consensus=1,
                        chunk_rows=params.chunk_rows, score_column=0)
    algorithms = build(params.algorithms, registry=registry, params=params.algorithm_params)
    return Ensemble(algorithms, consensus=params.consensus, early_stop=params.early_stop,
                    chunk_rows=params.chunk_rows)


def analyse(series: Sequence[SeriesInput], params: AnalysisParams | None = None, *,
            now: float | None = None, monotonic: Sequence[bool | None] | None = None,
            analyse_all: bool = False, ensemble: Ensemble | None = None,
            registry: Mapping[str, Any] | None = None) -> Analysis:
    params = params or AnalysisParams()
    ensemble = ensemble or make_ensemble(params, registry)
    prepared = prepare(series, params, now=now, monotonic=monotonic, analyse_all=analyse_all)
    return assemble(prepared, [ensemble.run(b) for b in prepared.batches])


def assemble(prepared: Prepared, results: Sequence[EnsembleResult]) -> Analysis:
    """Index ensemble results (one per batch of `prepared`, rows in the caller's series
    numbering) by series; series no result covers stay not analysed."""
    k = len(prepared)
    where = np.full((k, 2), -1, dtype=np.int64)
    anomalous = np.zeros(k, dtype=bool)
    votes = np.zeros(k, dtype=np.int64)
    opinions = np.zeros(k, dtype=np.int64)
    score = np.zeros(k)
    intensity = np.zeros(k)
    for r, res in enumerate(results):
        where[res.rows, 0] = r
        where[res.rows, 1] = np.arange(len(res.rows))
        anomalous[res.rows] = res.anomalous
        votes[res.rows] = res.votes
        opinions[res.rows] = res.opinion_counts
        score[res.rows] = res.score
        intensity[res.rows] = res.intensity
    return Analysis(prepared, list(results), prepared.status, anomalous, votes, opinions, score,
                    intensity, where)
