"""From decided events to AnomalyEvents on the stream, for any source (the analyzer,
boundary, thunder): the same ids, statuses and fields whoever produced them.

Ids are deterministic: the anomalous event of a metric at a time from a source always has
the same id, so a run repeated after a crash, or a replay, never duplicates a stored anomaly.
The other statuses get ids of their own (a point first judged anomalous and later, under other
settings, vetoed must not collide with it).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import numpy as np
import redis

from skyline.analysis.pipeline import PointEvent
from skyline.core.events import AnomalyEvent, event_id, pack_window
from skyline.events.stream import publish
from skyline.store import keys


def _finite(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def to_event(pe: PointEvent, source: str, created: float, *, level: int = 1,
             scope: str = "") -> AnomalyEvent:
    """The AnomalyEvent of a decided point (the window compressed at zlib `level`: 1 in the
    analyzer's workers, where noisy floats barely compress at any level). `scope` names the
    check within the source when one source may decide the same point twice (Boundary's
    algorithms): it goes into the id, so the two events do not collide."""
    extra: dict[str, Any] = {}
    origin = f"{source}/{scope}" if scope else source
    if pe.status != "anomalous":
        extra["id"] = event_id(pe.metric, pe.timestamp, f"{origin}/{pe.status}")
    elif scope:
        extra["id"] = event_id(pe.metric, pe.timestamp, origin)
    window = pack_window(pe.window_timestamps, pe.window_values, level=level) \
        if len(pe.window_timestamps) else b""
    return AnomalyEvent(
        metric=pe.metric, timestamp=float(pe.timestamp), value=float(pe.value),
        score=float(pe.score) if np.isfinite(pe.score) else 0.0, source=source,
        status=pe.status,  # type: ignore[arg-type]
        triggered=tuple(pe.triggered), results=tuple(pe.results), window=window,
        created=created, stages=tuple(pe.stages), band_low=_finite(pe.band_low),
        band_high=_finite(pe.band_high), since=_finite(pe.since), **extra)


def publish_all(client: redis.Redis, events: Iterable[AnomalyEvent], *, maxlen: int) -> int:
    """Every event in one round trip; how many were published."""
    pipe = client.pipeline(transaction=False)
    n = 0
    for event in events:
        publish(pipe, event, maxlen=maxlen)
        n += 1
    if n:
        pipe.execute()
    return n


def index_incidents(client: redis.Redis, events: Iterable[AnomalyEvent]) -> None:
    """Keep keys.OPEN_INCIDENTS in step with the events (in order): an anomalous event
    (a new incident or a re-alert) writes the metric's entry, a vetoed, recovered or new-level
    one removes it, unless another source wrote it (Boundary's open incident on a metric
    stays listed when the analyzer's incident on it ends)."""
    events = list(events)
    ending = list(dict.fromkeys(e.metric for e in events if e.status != "anomalous"))
    owner: dict[str, str | None] = {}
    if ending:
        for m, raw in zip(ending, client.hmget(keys.OPEN_INCIDENTS, ending), strict=True):
            try:
                owner[m] = json.loads(raw).get("source") if raw is not None else None
            except (ValueError, AttributeError):
                owner[m] = None
    pipe = client.pipeline(transaction=False)
    n = 0
    for e in events:
        if e.status != "anomalous":
            if owner.get(e.metric) not in (None, e.source):
                continue
            owner[e.metric] = None
        elif e.metric in owner:
            owner[e.metric] = e.source
        if e.status == "anomalous":
            pipe.hset(keys.OPEN_INCIDENTS, e.metric, json.dumps({
                "since": e.since if e.since is not None else e.timestamp,
                "last_event": e.timestamp, "band_low": e.band_low, "band_high": e.band_high,
                "score": e.score, "value": e.value, "source": e.source, "event": e.id},
                allow_nan=False))
        else:
            pipe.hdel(keys.OPEN_INCIDENTS, e.metric)
        n += 1
    if n:
        pipe.execute()
