"""The ensemble: run the selected algorithms over a batch and take the consensus.

A metric is anomalous when at least `consensus` algorithms say True. Abstentions count neither
way (upstream counted None as "not False", which pushed errors towards an anomaly). Score is
True votes over opinions given, or, for a scoring ensemble (`score_column` set: the "score"
detector, one algorithm with consensus 1), that algorithm's anomaly score (range_excess). Intensity is a continuous companion for ranking: the mean, over
the algorithms that gave an opinion, of each one's severity (statistic over limit, 1 = at the
limit) capped at INTENSITY_CAP, so one wild statistic cannot dominate.

early_stop is upstream's RUN_OPTIMIZED_WORKFLOW made vectorised: after each algorithm the rows
that can no longer reach consensus (True votes so far + algorithms left < consensus) are dropped
from the rest of the run and their remaining entries are NOT_RUN. The anomalous/normal decision
is unchanged; only the score of normal metrics is computed over fewer opinions.

Rows are processed in chunks of chunk_rows so every temporary array stays in the CPU cache.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import numpy.typing as npt

from skyline.algorithms.base import (
    ANOMALOUS,
    NOT_RUN,
    Algorithm,
    BoolArray,
    IntArray,
    Opinions,
    as_verdict,
)
from skyline.algorithms.batch import Batch
from skyline.algorithms.range_excess import to_score
from skyline.core.errors import InvalidInput
from skyline.core.events import AlgorithmResult
from skyline.core.types import FloatArray

INTENSITY_CAP = 10.0
SHRINK_BELOW = 0.8  # materialise a smaller batch once fewer than this share of rows is alive


def _finite_or_none(x: float) -> float | None:
    return x if math.isfinite(x) else None


@dataclass
class EnsembleResult:
    """Per-row outcome of one batch. Arrays are indexed like the batch's rows; `rows` maps
    them back to the caller's ids."""

    algorithms: tuple[Algorithm, ...]
    consensus: int
    rows: IntArray
    opinions: list[Opinions]
    errors: dict[str, str] = field(default_factory=dict)
    failed: BoolArray | None = None  # (rows, algorithms): the algorithm raised on this row's chunk
    score_column: int | None = None  # the algorithm whose anomaly score is the score

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.algorithms)

    @cached_property
    def verdicts(self) -> npt.NDArray[np.int8]:
        """(rows, algorithms) matrix of verdict codes."""
        if not self.opinions:
            return np.zeros((len(self.rows), 0), dtype=np.int8)
        return np.stack([o.verdict for o in self.opinions], axis=1)

    @cached_property
    def votes(self) -> IntArray:
        return (self.verdicts == ANOMALOUS).sum(axis=1).astype(np.int64)

    @cached_property
    def opinion_counts(self) -> IntArray:
        return (self.verdicts >= 0).sum(axis=1).astype(np.int64)

    @cached_property
    def anomalous(self) -> BoolArray:
        return self.votes >= self.consensus

    @cached_property
    def score(self) -> FloatArray:
        if self.score_column is not None:
            return to_score(self.opinions[self.score_column].statistic)
        given = self.opinion_counts
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(given > 0, self.votes / np.maximum(given, 1), 0.0)

    @cached_property
    def intensity(self) -> FloatArray:
        if not self.opinions:
            return np.zeros(len(self.rows))
        sev = np.stack([o.severity for o in self.opinions], axis=1)
        use = (self.verdicts >= 0) & np.isfinite(sev)
        capped = np.where(use, np.clip(np.nan_to_num(sev, nan=0.0), 0.0, INTENSITY_CAP), 0.0)
        n = use.sum(axis=1)
        return np.where(n > 0, capped.sum(axis=1) / np.maximum(n, 1), 0.0)

    def triggered(self, i: int) -> tuple[str, ...]:
        return tuple(a.name for a, o in zip(self.algorithms, self.opinions, strict=True)
                     if o.verdict[i] == ANOMALOUS)

    def explain(self, i: int) -> tuple[AlgorithmResult, ...]:
        """Each algorithm's verdict, statistic, limit and one line of text for row i."""
        out = []
        for k, (alg, op) in enumerate(zip(self.algorithms, self.opinions, strict=True)):
            code = int(op.verdict[i])
            if code == NOT_RUN:
                stat = limit = None
            else:
                stat = _finite_or_none(float(op.statistic[i]))
                limit = _finite_or_none(float(op.limit[i]))
            if self.failed is not None and self.failed[i, k]:
                text = f"abstained: the algorithm failed ({self.errors.get(alg.name, 'error')})"
            else:
                text = alg.describe(op, i)
            out.append(AlgorithmResult(algorithm=alg.name, verdict=as_verdict(code),
                                       statistic=stat, limit=limit, text=text))
        return tuple(out)


@dataclass(frozen=True)
class Ensemble:
    algorithms: tuple[Algorithm, ...]
    consensus: int = 6
    early_stop: bool = False
    chunk_rows: int = 1024
    score_column: int | None = None

    def __post_init__(self) -> None:
        if not self.algorithms:
            raise InvalidInput("the ensemble needs at least one algorithm")
        if not 1 <= self.consensus <= len(self.algorithms):
            raise InvalidInput(f"CONSENSUS {self.consensus} must be between 1 and the number of "
                               f"algorithms ({len(self.algorithms)})")
        if self.chunk_rows < 1:
            raise InvalidInput("chunk_rows must be at least 1")
        if self.score_column is not None and not 0 <= self.score_column < len(self.algorithms):
            raise InvalidInput(f"score_column {self.score_column} names no algorithm")

    def run(self, batch: Batch) -> EnsembleResult:
        size = batch.size
        opinions = [Opinions.not_run(size, tuple(getattr(a, "context_keys", ())))
                     for a in self.algorithms]
        errors: dict[str, str] = {}
        failed = np.zeros((size, len(self.algorithms)), dtype=bool)
        for lo in range(0, size, self.chunk_rows):
            hi = min(size, lo + self.chunk_rows)
            chunk = batch if (lo == 0 and hi == size) else batch.slice(lo, hi)
            self._run_chunk(chunk, lo, opinions, errors, failed)
        return EnsembleResult(self.algorithms, self.consensus, batch.rows, opinions, errors,
                              failed, self.score_column)

    def _run_chunk(self, chunk: Batch, offset: int, opinions: list[Opinions],
                   errors: dict[str, str], failed: BoolArray) -> None:
        n_alg = len(self.algorithms)
        votes = np.zeros(chunk.size, dtype=np.int64)
        current = chunk
        current_rows = np.arange(chunk.size)  # rows of `current`, in chunk coordinates
        for k, alg in enumerate(self.algorithms):
            if self.early_stop and k:
                alive = votes + (n_alg - k) >= self.consensus
                if not alive.any():
                    return
                alive_rows = np.flatnonzero(alive)
                if len(alive_rows) < SHRINK_BELOW * len(current_rows):
                    current = chunk.take(alive_rows)
                    current_rows = alive_rows
            part = self._run_one(alg, current, errors)
            if part is None:
                part = Opinions.abstain(current.size)
                failed[current_rows + offset, k] = True
            opinions[k].place(current_rows + offset, part)
            votes[current_rows] += part.verdict == ANOMALOUS

    @staticmethod
    def _run_one(alg: Algorithm, batch: Batch, errors: dict[str, str]) -> Opinions | None:
        """The algorithm's opinions, or None (and the error noted once) when it raised."""
        try:
            part = alg.run(batch)
            if len(part) != batch.size:
                raise ValueError(f"returned {len(part)} opinions for {batch.size} rows")
        except Exception as e:  # noqa: BLE001 - a failing algorithm abstains; the run goes on
            errors.setdefault(alg.name, f"{type(e).__name__}: {e}")
            return None
        return part
