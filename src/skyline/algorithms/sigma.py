"""The rule four of the nine share: a point is anomalous when its distance from a centre is
more than `sigma` spreads. Kept in one place so they all treat a zero spread the same way:
upstream's comparison `distance > sigma * spread` is kept as written (a zero spread with a
non-zero distance fires; zero over zero does not)."""

from __future__ import annotations

import numpy as np

from skyline.algorithms.base import BoolArray, Opinions, verdicts
from skyline.core.types import FloatArray


def sigma_test(distance: FloatArray, spread: FloatArray, sigma: float, has_opinion: BoolArray,
               context: dict[str, FloatArray]) -> Opinions:
    has = has_opinion & np.isfinite(spread) & np.isfinite(distance)
    fired = distance > sigma * spread
    with np.errstate(divide="ignore", invalid="ignore"):
        stat = np.where(distance == 0, 0.0, distance / spread)
    stat = np.where(has, stat, np.nan)
    limit = np.where(has, sigma, np.nan)
    return Opinions(verdicts(fired, has), stat, limit, stat / sigma, context)
