"""isolation_forest: the last value is one a random forest isolates in few splits.

earthgecko's custom algorithm of that name, as a built-in: per row, scikit-learn's
IsolationForest (Liu, Ting and Zhou 2008) is fitted on the window's values (one feature,
standardised) and scores the last value. The score is the paper's s = 2^(-E[h] / c(psi)),
where E[h] is the mean number of splits that isolate the value and c(psi) the mean for a
sample of psi points: about 0.5 for an ordinary value, towards 1 for one isolated at once.
Anomalous when s > `threshold` (0.75).

Decisions: upstream used contamination="auto", i.e. s > 0.5, which flags the last point of a
quarter of normal 60 s days; 0.75 flags none of 90 normal days in the tuning run while a 5-10
sigma spike scores 0.78-0.9 (docs/algorithms.md). The forest is seeded (`seed`, 0), so one
series always gets one answer, alone or in any batch. The paper's sizes are kept:
`n_estimators` 100 trees of `max_samples` 256 points.

Costly and opt-in: one forest per row, ~0.2-0.4 s each on one core (scikit-learn's per-tree
overhead; the window's length matters little), against microseconds per row for the
vectorised algorithms. Rows with fewer than `min_points` (100) points abstain (too few to
learn what is ordinary), as do constant rows (nothing to isolate).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from skyline.algorithms import kernels as K
from skyline.algorithms.base import BaseAlgorithm, Opinions, fmt, verdicts
from skyline.algorithms.batch import Batch
from skyline.core.errors import InvalidInput
from skyline.core.types import FloatArray


def isolation_score(x: FloatArray, n_estimators: int, max_samples: int, seed: int) -> float:
    """The paper's anomaly score of the last value of x (finite, not constant)."""
    # imported here: scikit-learn takes ~1 s to import and only this opt-in algorithm needs it
    from sklearn.ensemble import IsolationForest as Forest

    z = ((x - x.mean()) / x.std())[:, None]
    forest = Forest(n_estimators=n_estimators, max_samples=min(max_samples, len(x)),
                    random_state=seed).fit(z)
    return float(-forest.score_samples(z[-1:])[0])


@dataclass(frozen=True)
class IsolationForest(BaseAlgorithm):
    threshold: float = 0.75
    n_estimators: int = 100
    max_samples: int = 256
    min_points: int = 100
    seed: int = 0

    name = "isolation_forest"
    context_keys = ("last", "points")

    def __post_init__(self) -> None:
        if self.n_estimators < 1 or self.max_samples < 2 or self.min_points < 2:
            raise InvalidInput("isolation_forest: n_estimators must be at least 1, max_samples "
                               "and min_points at least 2")

    def run(self, batch: Batch) -> Opinions:
        size = batch.size
        score = np.full(size, np.nan)
        x = K.work(batch)
        enough = (batch.counts >= self.min_points) & ~K.constant(batch)
        for i in np.flatnonzero(enough):
            row = x[i, batch.width - int(batch.counts[i]):]
            score[i] = isolation_score(row, self.n_estimators, self.max_samples, self.seed)
        has = np.isfinite(score)
        limit = np.where(has, self.threshold, np.nan)
        return Opinions(verdicts(score > self.threshold, has), score, limit,
                        score / self.threshold,
                        {"last": K.unscale(batch, K.last(batch)), "points": K.counts_f(batch)})

    def abstain_reason(self, opinions: Opinions, i: int) -> str:
        points = int(self.ctx(opinions, "points", i))
        if points < self.min_points:
            return f"{points} points, fewer than the {self.min_points} a forest needs"
        return "all values are equal (nothing to isolate)"

    def explain(self, opinions: Opinions, i: int) -> str:
        return (f"last value {fmt(self.ctx(opinions, 'last', i))} has isolation score "
                f"{fmt(float(opinions.statistic[i]))} (0.5 ordinary, 1 isolated at once); "
                f"limit {fmt(self.threshold)}")
