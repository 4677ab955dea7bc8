"""Series for the algorithm tests: seeded random ones and adversarial ones (NaN gaps, constant,
3 points, 1e300, negative, step changes, integer counts, irregular timestamps)."""

from __future__ import annotations

import numpy as np

STEP = 60.0
T0 = 1_700_000_000.0
FULL_DURATION = 6000.0  # short window, so short test series still have a first hour

Series = tuple[np.ndarray, np.ndarray]


def grid(n: int, step: float = STEP) -> np.ndarray:
    return T0 + step * np.arange(n, dtype=np.float64)


def random_series(rng: np.random.Generator, n: int) -> Series:
    kind = rng.integers(0, 8)
    t = grid(n)
    if kind == 0:  # plain noise around a level
        v = rng.normal(rng.uniform(-100, 1000), rng.uniform(0.1, 50), n)
    elif kind == 1:  # integer counts, many ties
        v = rng.poisson(rng.uniform(0.5, 20), n).astype(np.float64)
    elif kind == 2:  # trend plus noise
        v = np.arange(n) * rng.normal(0, 2) + rng.normal(0, 5, n)
    elif kind == 3:  # seasonal
        v = 50 * np.sin(np.arange(n) / rng.uniform(20, 200)) + rng.normal(0, 3, n)
    elif kind == 4:  # step change near the end
        v = rng.normal(10, 1, n)
        v[-rng.integers(1, 30):] += rng.uniform(-20, 20)
    elif kind == 5:  # spike at the end
        v = rng.normal(0, 1, n)
        v[-rng.integers(1, 4):] += rng.uniform(3, 30) * rng.choice([-1, 1])
    elif kind == 6:  # irregular timestamps with gaps
        t = T0 + np.cumsum(rng.choice([10.0, 60.0, 60.0, 600.0], n))
        v = rng.normal(5, 2, n)
    else:  # heavy tails
        v = rng.standard_t(2, n) * 10
    return t, v


def adversarial_series(rng: np.random.Generator) -> list[Series]:
    out: list[Series] = []
    for n in (0, 1, 2, 3, 4, 5, 19, 20, 21, 22, 23, 24, 25, 39, 40, 41, 99, 100, 119, 120, 121,
              150, 300):
        t = grid(n)
        out.append((t, rng.normal(0, 1, n)))
        out.append((t, np.full(n, 0.1)))  # constant, not exactly summable
        out.append((t, np.full(n, -7.0)))
        out.append((t, rng.normal(0, 1, n) * 2.0**996))  # ~1e300
        out.append((t, rng.normal(0, 1, n) * 1e-300))
        out.append((t, rng.normal(-1e6, 1, n)))  # negative, large level
        out.append((t, np.round(rng.normal(0, 2, n))))  # integers: exact ties
    for n in (130, 250):
        t = grid(n)
        v = rng.normal(0, 1, n)
        v[-1] = 1e300  # one huge point
        out.append((t, v))
        v = np.zeros(n)
        v[-1] = 5.0  # all equal but the last
        out.append((t, v))
        v = np.zeros(n)
        v[-3:] = 5.0
        out.append((t, v))
        v = np.ones(n)
        v[: n // 2] = 0.0  # half and half: MAD 0 or 0.5
        out.append((t, v))
        v = np.r_[np.zeros(n - 20), np.full(20, 3.0)] + rng.normal(0, 0.1, n)
        out.append((t, v))  # level shift over the ks probe window
        out.append((t, np.arange(n, dtype=np.float64)))  # perfect line
        out.append((t, 1e9 + np.arange(n) * 1e6 + rng.normal(0, 1, n)))  # near-perfect line
        out.append((t, np.linspace(0, 15, n)))  # tail on a histogram edge
    return out


def with_nan_gaps(rng: np.random.Generator, t: np.ndarray, v: np.ndarray) -> Series:
    """A copy with some values NaN or inf (what the batch must drop)."""
    v = v.copy()
    if len(v):
        holes = rng.random(len(v)) < 0.1
        v[holes] = rng.choice([np.nan, np.inf, -np.inf], holes.sum())
    return t, v


def clean(t: np.ndarray, v: np.ndarray) -> Series:
    keep = np.isfinite(t) & np.isfinite(v)
    return t[keep], v[keep]


DAY_POINTS = 1440


def normal_day(rng: np.random.Generator, kind: int) -> np.ndarray:
    """A day at 60 s: 0 noise around a level, 1 a daily sine, 2 a slow trend."""
    i = np.arange(DAY_POINTS)
    noise = rng.normal(0, rng.uniform(1, 5), DAY_POINTS)
    level = rng.uniform(50, 500)
    if kind == 0:
        return level + noise
    if kind == 1:
        return level + rng.uniform(5, 30) * np.sin(2 * np.pi * (i / DAY_POINTS + rng.uniform())) \
            + noise
    return level + rng.uniform(-20, 20) * i / DAY_POINTS + noise


def planted_day(rng: np.random.Generator, anomaly: str, base: np.ndarray) -> np.ndarray:
    """spike / drop: the last 3 points 5-10 sigma (of the whole day) up / down;
    shift: the last 10 points 3-6 sigma up or down."""
    v = base.copy()
    sigma = float(np.std(base))
    if anomaly == "spike":
        v[-3:] += rng.uniform(5, 10) * sigma
    elif anomaly == "drop":
        v[-3:] -= rng.uniform(5, 10) * sigma
    elif anomaly == "shift":
        v[-10:] += rng.uniform(3, 6) * sigma * rng.choice([-1, 1])
    return v
