"""histogram_bins: the tail falls in a bin of numpy.histogram(values, bins=15) that holds 20
points or fewer.

Edge case fixed: upstream tested bin 0 with `tail <= left edge` and the others as half-open
[left, right), so a tail inside bin 0 (above the minimum) or equal to the maximum could never
fire. The tail is now placed in the bin numpy itself assigns (last bin closed), which is what
upstream's loop meant. A series of 20 points or fewer has every bin at or below the limit, so
the rule cannot say anything: no opinion.

One pass over the batch: the tail's bin edges are computed per row (numpy's linspace
arithmetic, so ties land on the same side), then the points inside that one bin are counted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from skyline.algorithms import kernels as K
from skyline.algorithms.base import BaseAlgorithm, Opinions, fmt, verdicts
from skyline.algorithms.batch import Batch


@dataclass(frozen=True)
class HistogramBins(BaseAlgorithm):
    bins: int = 15
    max_count: int = 20

    name = "histogram_bins"
    context_keys = ("tail", "bin", "left", "right")

    def run(self, batch: Batch) -> Opinions:
        lo, hi = K.vmin(batch), K.vmax(batch)
        const = K.constant(batch)
        # numpy widens a zero range to [v - 0.5, v + 0.5]
        first = np.where(const, lo - 0.5, lo)
        last = np.where(const, hi + 0.5, hi)
        with np.errstate(invalid="ignore", over="ignore"):
            step = (last - first) / self.bins
            j = np.arange(self.bins + 1, dtype=np.float64)
            edges = j[None, :] * step[:, None] + first[:, None]
            edges[:, -1] = last
            tail = np.clip(K.tail(batch), lo, hi)
            # bin index as numpy assigns it: the number of inner edges at or below the tail
            b = (edges[:, 1:-1] <= tail[:, None]).sum(axis=1)
            rows = np.arange(batch.size)
            left = edges[rows, b]
            right = np.where(b == self.bins - 1, np.inf, edges[rows, np.minimum(b + 1, self.bins)])
            x = K.work(batch)
            count = np.count_nonzero((x >= left[:, None]) & (x < right[:, None]), axis=1)
        count = np.where(const, batch.counts, count).astype(np.float64)
        has = (batch.counts > self.max_count) & np.isfinite(tail)
        fired = count <= self.max_count
        stat = np.where(has, count, np.nan)
        limit = np.where(has, float(self.max_count), np.nan)
        severity = (self.max_count + 1.0) / (stat + 1.0)
        right_edge = edges[rows, np.minimum(b + 1, self.bins)]
        ctx = {"tail": K.unscale(batch, K.tail(batch)), "bin": b.astype(np.float64),
               "left": K.unscale(batch, left), "right": K.unscale(batch, right_edge)}
        return Opinions(verdicts(fired, has), stat, limit, severity, ctx)

    def abstain_reason(self, opinions: Opinions, i: int) -> str:
        return f"{self.max_count} points or fewer: every bin is under the limit"

    def explain(self, opinions: Opinions, i: int) -> str:
        b = int(self.ctx(opinions, "bin", i))
        return (f"tail {fmt(self.ctx(opinions, 'tail', i))} falls in bin {b + 1}/{self.bins} "
                f"[{fmt(self.ctx(opinions, 'left', i))}, {fmt(self.ctx(opinions, 'right', i))}"
                f"{']' if b == self.bins - 1 else ')'} holding "
                f"{int(opinions.statistic[i])} points; limit {self.max_count}")
