"""The contract every algorithm meets: a batch of metrics in, one opinion per metric out.

An opinion is a verdict code per row plus the numbers behind it. Verdicts are int8 codes rather
than Python objects so a whole batch of them is one array: ANOMALOUS, NORMAL, ABSTAIN (the
algorithm has no opinion: too little data for its window, or a statistic that is undefined,
such as a division by a zero spread) and NOT_RUN (the ensemble skipped it because consensus
was already out of reach). Abstentions count neither for nor against an anomaly.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from skyline.core.numbers import si
from skyline.core.types import FloatArray

if TYPE_CHECKING:
    from skyline.algorithms.batch import Batch

ANOMALOUS: Final = 1
NORMAL: Final = 0
ABSTAIN: Final = -1
NOT_RUN: Final = -2

VerdictArray = npt.NDArray[np.int8]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]


def verdicts(fired: BoolArray, has_opinion: BoolArray) -> VerdictArray:
    """ANOMALOUS/NORMAL where the algorithm could judge, ABSTAIN elsewhere."""
    out = np.full(fired.shape, ABSTAIN, dtype=np.int8)
    out[has_opinion & fired] = ANOMALOUS
    out[has_opinion & ~fired] = NORMAL
    return out


def as_verdict(code: int) -> bool | None:
    return True if code == ANOMALOUS else False if code == NORMAL else None


@dataclass(frozen=True, eq=False)
class Opinions:
    """One algorithm's output for a batch; every array has one entry per row.

    statistic and limit are in the algorithm's own units (sigmas, a bin count, a KS D...);
    severity is the statistic over its limit, oriented so that values above 1 lie past the
    limit, and feeds the ensemble's continuous score. context holds the extra numbers an
    explanation quotes (raw units), e.g. the mean and the tail.
    """

    verdict: VerdictArray
    statistic: FloatArray
    limit: FloatArray
    severity: FloatArray
    context: Mapping[str, FloatArray] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.verdict.shape[0])

    @classmethod
    def not_run(cls, size: int, context_keys: tuple[str, ...] = ()) -> Opinions:
        nan = np.full(size, np.nan)
        return cls(np.full(size, NOT_RUN, dtype=np.int8), nan, nan.copy(), nan.copy(),
                   {k: nan.copy() for k in context_keys})

    @classmethod
    def abstain(cls, size: int) -> Opinions:
        nan = np.full(size, np.nan)
        return cls(np.full(size, ABSTAIN, dtype=np.int8), nan, nan.copy(), nan.copy())

    def place(self, rows: IntArray, part: Opinions) -> None:
        """Write part (the opinions for a subset of rows) into this full-size result."""
        self.verdict[rows] = part.verdict
        self.statistic[rows] = part.statistic
        self.limit[rows] = part.limit
        self.severity[rows] = part.severity
        for key, arr in part.context.items():
            if key in self.context:
                self.context[key][rows] = arr


@runtime_checkable
class Algorithm(Protocol):
    """What the ensemble runs. Implementations are pure, picklable and vectorised over rows."""

    @property
    def name(self) -> str: ...

    def run(self, batch: Batch) -> Opinions: ...

    def describe(self, opinions: Opinions, i: int) -> str: ...


def fmt(x: float) -> str:
    """Numbers in explanations: short, and a word where a number would not read."""
    if math.isnan(x):
        return "n/a"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return si(x, 4)


class BaseAlgorithm:
    """Shared plumbing for built-ins: the generic description and the abstain wording."""

    name: str = ""
    context_keys: tuple[str, ...] = ()

    def run(self, batch: Batch) -> Opinions:  # pragma: no cover - every subclass overrides
        raise NotImplementedError

    def describe(self, opinions: Opinions, i: int) -> str:
        code = int(opinions.verdict[i])
        if code == NOT_RUN:
            return "not run: consensus was out of reach before this algorithm's turn"
        if code == ABSTAIN:
            return "abstained: " + self.abstain_reason(opinions, i)
        return self.explain(opinions, i)

    def abstain_reason(self, opinions: Opinions, i: int) -> str:
        return "not enough data for this test"

    def explain(self, opinions: Opinions, i: int) -> str:
        return (f"statistic {fmt(float(opinions.statistic[i]))}, "
                f"limit {fmt(float(opinions.limit[i]))}")

    def ctx(self, opinions: Opinions, key: str, i: int) -> float:
        return float(opinions.context[key][i])
