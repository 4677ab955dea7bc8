"""Replay one series through the analyzer's code, as if it arrived row by row.

At row i the detector sees rows 0..i (its history: the window before row i's timestamp, or
everything so far) and judges it with "now" = row i's timestamp. Rather than a Python loop
per row, the windows of many rows are laid end to end (one gather through an index array) and
go through prepare_flat (the analyzer's preparation: cleaning, counters, resampling, the
TooShort/Stale/Boring checks, length buckets) and the Ensemble, one chunk of windows at a
time. The result has one score per input row, in input order.

Rows whose window is not analysed (TooShort, Stale, Boring...) score 0 and are counted.
Stale cannot happen here: a window always ends at its own row, so now - last point <= 0.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from skyline.algorithms import ANOMALOUS, NOT_RUN, Batch, Status, make_ensemble, prepare_flat
from skyline.algorithms.ensemble import Ensemble
from skyline.algorithms.prepare import chunk_ranges
from skyline.core.errors import InvalidInput
from skyline.core.types import FloatArray
from skyline.snab.detectors import Detector, RowOpinions

IntArray = npt.NDArray[np.int64]
CHUNK_POINTS = 1 << 21  # points of all windows in one chunk: ~32 MB per float64 array


@dataclass(frozen=True)
class ReplayResult:
    """Per input row: the anomaly_score, the analysis status, True votes, opinions given, and
    each algorithm's verdict code (columns in the detector's ALGORITHMS order; NOT_RUN for
    rows that were not analysed)."""

    score: FloatArray
    status: npt.NDArray[np.int8]
    votes: IntArray
    opinions: IntArray
    verdicts: npt.NDArray[np.int8]
    severity: FloatArray  # (rows, algorithms); NaN without an opinion

    def __len__(self) -> int:
        return int(self.score.shape[0])

    def abstained(self) -> dict[str, int]:
        """Rows not analysed, by upstream's exception name (TooShort, Stale, Boring...)."""
        codes, counts = np.unique(self.status, return_counts=True)
        return {Status(int(c)).label: int(n) for c, n in zip(codes, counts, strict=True)
                if c != Status.OK}


def window_starts(timestamps: FloatArray, history: float | None) -> IntArray:
    """First row of each row's history. The file's time may step back (NAB has one such file),
    so the search runs on the running maximum: the window then holds every earlier row newer
    than the newest point minus the history, and prepare's own cut (relative to that newest
    point) is the exact one."""
    n = len(timestamps)
    if history is None:
        return np.zeros(n, dtype=np.int64)
    newest = np.maximum.accumulate(timestamps)
    return np.searchsorted(newest, newest - history, side="right").astype(np.int64)


def _gather(lo: IntArray, counts: IntArray) -> IntArray:
    """Indices of rows lo[k] .. lo[k] + counts[k] - 1 for every k, laid end to end."""
    total = int(counts.sum())
    offsets = np.cumsum(counts) - counts
    return np.arange(total, dtype=np.int64) - np.repeat(offsets - lo, counts)


def replay(timestamps: FloatArray, values: FloatArray, detector: Detector, *,
           ensemble: Ensemble | None = None, chunk_points: int = CHUNK_POINTS,
           progress: Callable[[int], None] | None = None) -> ReplayResult:
    """Score every row of one series. progress(rows) is called after each chunk."""
    t = np.asarray(timestamps, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    if t.shape != v.shape or t.ndim != 1:
        raise InvalidInput("timestamps and values must be 1-D and equally long")
    if not np.isfinite(t).all():
        raise InvalidInput("timestamps must be finite")
    n = len(t)
    params = detector.params
    ensemble = ensemble or make_ensemble(params)
    status = np.zeros(n, dtype=np.int8)
    k = len(ensemble.algorithms)
    verdicts = np.full((n, k), NOT_RUN, dtype=np.int8)
    severity = np.full((n, k), np.nan)
    ens_score = np.zeros(n)
    lo = window_starts(t, detector.history)
    counts = np.arange(n, dtype=np.int64) - lo + 1
    for a, b in chunk_ranges(counts, chunk_points):
        idx = _gather(lo[a:b], counts[a:b])
        prepared = prepare_flat(t[idx], v[idx], counts[a:b], params)
        status[a:b] = prepared.status
        for batch in prepared.batches:
            if detector.anchor is not None:
                batch = Batch(batch.timestamps, batch.values, batch.counts, rows=batch.rows,
                              full_duration=detector.anchor)
            result = ensemble.run(batch)
            rows = result.rows + a
            verdicts[rows] = result.verdicts
            severity[rows] = np.stack([o.severity for o in result.opinions], axis=1)
            ens_score[rows] = result.score
        if progress is not None:
            progress(b - a)
    return score_rows(detector, t, status, verdicts, severity, ens_score)


def score_rows(detector: Detector, timestamps: FloatArray, status: npt.NDArray[np.int8],
               verdicts: npt.NDArray[np.int8], severity: FloatArray,
               ensemble_score: FloatArray | None = None) -> ReplayResult:
    """Scores from the per-row opinions (so several score rules can share one replay).
    ensemble_score: the analyzer's score of each row (EnsembleResult.score)."""
    ok = status == Status.OK
    severity = np.where(verdicts >= 0, severity, np.nan)
    if ensemble_score is None:
        ensemble_score = np.zeros(len(status))
    score = np.zeros(len(status))
    if ok.any():
        score[ok] = detector.score(RowOpinions(verdicts[ok], severity[ok],
                                               detector.params.consensus, ensemble_score[ok]))
    if detector.post is not None:
        score = np.asarray(detector.post(timestamps, score), dtype=np.float64)
    votes = (verdicts == ANOMALOUS).sum(axis=1).astype(np.int64)
    opinions = (verdicts >= 0).sum(axis=1).astype(np.int64)
    return ReplayResult(score, status, votes, opinions, verdicts, severity)
