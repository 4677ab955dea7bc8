"""A synthetic, labelled corpus for Luminosity (bench/luminosity.py, docs/luminosity.md):
incidents whose metrics moved together, among many unrelated metrics that have anomalies of
their own. Deterministic for a seed; everything on one 60 s grid.

- Every series is a level, a daily cycle and AR(1) noise (phi 0.9).
- Unrelated metrics: each has, with probability `unrelated_anomaly_rate`, one anomaly of its
  own at a random time: a spike (1-3 points) or a level shift (5-60 points) of 5-10 noise
  standard deviations, either sign.
- Incidents: a root metric with an anomaly (a spike, or a level shift of 6-12 noise standard
  deviations lasting 10-60 points) and 3-20 dependent metrics, each
  `a * root(t - lag) + b + noise`: |a| in [0.5, 5], negative (inverted) for a quarter of them,
  lag 0-3 steps, extra noise of 0.3-0.8 times the root's noise (scaled by |a|).
- A tenth of all metrics are counters: the running sum of the series (shifted positive),
  as a monotonic counter is stored.
- Events: the anomalies' planted times, each dependent's shifted by its lag plus a detection
  delay of 0-2 steps; not a detector's output.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from skyline.core.types import FloatArray

IntArray = npt.NDArray[np.int64]

STEP = 60.0
START = 1_700_000_040.0  # a multiple of 60


@dataclass(frozen=True)
class CorpusSpec:
    seed: int = 19
    incidents: int = 200
    unrelated: int = 10_000
    columns: int = 1440  # a day at 60 s
    min_dependents: int = 3
    max_dependents: int = 20
    unrelated_anomaly_rate: float = 0.3
    counter_share: float = 0.1


@dataclass
class Corpus:
    names: list[str]
    timestamps: FloatArray  # the grid (columns)
    values: FloatArray  # metrics x columns
    incident: IntArray  # per metric: its true incident, -1 for unrelated metrics
    roots: IntArray  # per incident: its root's row
    root_columns: IntArray  # per incident: the column of the root's anomaly
    event_rows: IntArray  # every planted anomaly event, in time order: the metric's row,
    event_columns: IntArray  # the grid column it was detected at

    def flat(self) -> tuple[FloatArray, FloatArray, IntArray]:
        """The corpus as the hot store's flat reader gives series: timestamps, values,
        counts."""
        m, n = self.values.shape
        return (np.tile(self.timestamps, m), self.values.ravel().copy(),
                np.full(m, n, dtype=np.int64))


def _ar1(rng: np.random.Generator, rows: int, columns: int, phi: float = 0.9) -> FloatArray:
    """AR(1) noise of unit stationary variance, by rows, vectorised over rows."""
    e = rng.standard_normal((rows, columns)) * np.sqrt(1 - phi * phi)
    out = np.empty_like(e)
    out[:, 0] = rng.standard_normal(rows)
    for j in range(1, columns):  # over columns (1440), each step vectorised over all rows
        out[:, j] = phi * out[:, j - 1] + e[:, j]
    return out


def _background(rng: np.random.Generator, rows: int, columns: int
                ) -> tuple[FloatArray, FloatArray]:
    """Series and each one's noise standard deviation."""
    level = rng.uniform(10, 1000, rows)
    sigma = level * rng.uniform(0.01, 0.05, rows)
    cycle = level * rng.uniform(0.0, 0.3, rows)
    phase = rng.uniform(0, 2 * np.pi, rows)
    day = 2 * np.pi * np.arange(columns) / 1440.0
    x = (level[:, None] + cycle[:, None] * np.sin(day[None, :] + phase[:, None])
         + sigma[:, None] * _ar1(rng, rows, columns))
    return x, sigma


def _anomaly(rng: np.random.Generator, x: FloatArray, sigma: FloatArray, rows: IntArray,
             at: IntArray, lo: float, hi: float, min_len: int) -> None:
    """Plant a spike or a level shift into each row at its column, in place."""
    for r, c in zip(rows.tolist(), at.tolist(), strict=True):
        size = rng.uniform(lo, hi) * sigma[r] * rng.choice((-1.0, 1.0))
        if rng.random() < 0.3:
            length = int(rng.integers(1, 4))
        else:
            length = int(rng.integers(min_len, 61))
        x[r, c:c + length] += size


def generate(spec: CorpusSpec = CorpusSpec()) -> Corpus:
    rng = np.random.default_rng(spec.seed)
    n = spec.columns
    deps = rng.integers(spec.min_dependents, spec.max_dependents + 1, spec.incidents)
    n_inc = int(spec.incidents + deps.sum())
    rows = spec.unrelated + n_inc
    x, sigma = _background(rng, rows, n)
    incident = np.full(rows, -1, dtype=np.int64)
    names: list[str] = [f"host{i % 500:03d}.service{i % 37}.metric{i:05d}"
                        for i in range(spec.unrelated)]
    # unrelated anomalies
    hit = np.flatnonzero(rng.random(spec.unrelated) < spec.unrelated_anomaly_rate)
    hit_at = rng.integers(300, n - 30, len(hit))
    _anomaly(rng, x, sigma, hit, hit_at, 5.0, 10.0, 5)
    ev_rows: list[int] = hit.tolist()
    ev_cols: list[int] = hit_at.tolist()
    # incidents
    roots = np.empty(spec.incidents, dtype=np.int64)
    root_cols = rng.integers(300, n - 30, spec.incidents)
    row = spec.unrelated
    for i in range(spec.incidents):
        root = row
        roots[i] = root
        incident[root] = i
        names.append(f"app{i:03d}.frontend.requests")
        _anomaly(rng, x, sigma, np.array([root]), root_cols[i:i + 1], 6.0, 12.0, 10)
        ev_rows.append(root)
        ev_cols.append(int(root_cols[i]))
        row += 1
        for j in range(int(deps[i])):
            a = rng.uniform(0.5, 5.0) * (-1.0 if rng.random() < 0.25 else 1.0)
            lag = int(rng.integers(0, 4))
            shifted = np.empty(n)
            shifted[lag:] = x[root, :n - lag]
            shifted[:lag] = x[root, 0]
            noise = rng.uniform(0.3, 0.8) * abs(a) * sigma[root]
            x[row] = a * shifted + rng.uniform(0, 1000) + noise * rng.standard_normal(n)
            sigma[row] = abs(a) * sigma[root]
            incident[row] = i
            names.append(f"backend{i:03d}.dep{j:02d}.latency")
            ev_rows.append(row)
            ev_cols.append(int(root_cols[i]) + lag + int(rng.integers(0, 3)))
            row += 1
    # a tenth are counters: the running sum of a positive rate
    counters = rng.random(rows) < spec.counter_share
    rate = x[counters] - x[counters].min(axis=1, keepdims=True) + 1.0
    x[counters] = np.cumsum(rate, axis=1)
    order = np.lexsort((np.array(ev_rows), np.array(ev_cols)))
    return Corpus(
        names=names, timestamps=START + STEP * np.arange(n, dtype=np.float64), values=x, incident=incident,
        roots=roots, root_columns=root_cols.astype(np.int64),
        event_rows=np.array(ev_rows, dtype=np.int64)[order],
        event_columns=np.array(ev_cols, dtype=np.int64)[order])
