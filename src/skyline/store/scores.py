"""Reading anomaly-score series: each metric's scores, packed as its points are, under
keys.scores(metric). A metric the analyzer has not scored has no such key: an empty series."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import redis

from skyline.core.types import Series
from skyline.store import keys
from skyline.store.series import decode, normalise

CHUNK = 1000


def has_scores(client: redis.Redis, metrics: Sequence[str]) -> list[bool]:
    """Whether each metric has a score series (one pipelined EXISTS per metric)."""
    out: list[bool] = []
    for start in range(0, len(metrics), CHUNK):
        pipe = client.pipeline(transaction=False)
        for m in metrics[start : start + CHUNK]:
            pipe.exists(keys.scores(m))
        out += [bool(r) for r in pipe.execute()]
    return out


def read_scores(client: redis.Redis, metrics: Sequence[str], since: float | None = None,
                until: float | None = None) -> list[Series]:
    """Each metric's score series (sorted, one point per timestamp) between since (exclusive)
    and until (inclusive), in the order of `metrics`."""
    out: list[Series] = []
    for start in range(0, len(metrics), CHUNK):
        chunk = metrics[start : start + CHUNK]
        pipe = client.pipeline(transaction=False)
        for m in chunk:
            pipe.get(keys.scores(m))
        for m, raw in zip(chunk, pipe.execute(raise_on_error=False), strict=True):
            if isinstance(raw, Exception):
                if isinstance(raw, redis.ResponseError):  # not a string: no scores to show
                    raw = None
                else:
                    raise raw
            t, v, _extra = decode(raw)
            t, v = normalise(t, v, since)
            if until is not None and t.size and t[-1] > until:
                cut = int(np.searchsorted(t, until, side="right"))
                t, v = t[:cut], v[:cut]
            out.append(Series(m, t, v))
    return out

