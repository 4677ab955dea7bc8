"""What Ionosphere keeps, as plain records: a profile (a stretch of a metric's series an
operator labelled "not anomalous" or "real anomaly"), feedback on an anomaly, and a match of a
candidate against a profile. Shared by the matcher, the stage, the store and the web app
(docs/ionosphere.md)."""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from skyline.core.errors import InvalidInput
from skyline.core.types import FloatArray

Label = Literal["not_anomalous", "anomalous"]
LABELS: tuple[str, ...] = ("not_anomalous", "anomalous")
FEATURES_VERSION = 1


def check_label(label: str) -> Label:
    if label not in LABELS:
        raise InvalidInput(f"label must be one of {', '.join(LABELS)}, not {label!r}")
    return label  # type: ignore[return-value]


def pack_values(values: FloatArray) -> bytes:
    """A profile's series: float64 values on a regular grid, zlib-compressed."""
    return zlib.compress(np.ascontiguousarray(values, dtype="<f8").tobytes(), 6)


def unpack_values(blob: bytes) -> FloatArray:
    return np.frombuffer(zlib.decompress(blob), dtype="<f8").astype(np.float64)


def regularise(timestamps: FloatArray, values: FloatArray, resolution: float | None = None
               ) -> tuple[float, float, FloatArray]:
    """(start, resolution, values) of a series on a regular grid ending at its last point
    (linear interpolation across gaps); resolution: the median step unless given. InvalidInput
    for fewer than 2 finite points."""
    t = np.asarray(timestamps, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    ok = np.isfinite(t) & np.isfinite(v)
    t, v = t[ok], v[ok]
    if len(t) < 2:
        raise InvalidInput("a profile needs at least 2 points")
    order = np.argsort(t, kind="stable")
    t, v = t[order], v[order]
    if resolution is None:
        steps = np.diff(t)
        steps = steps[steps > 0]
        if not len(steps):
            raise InvalidInput("a profile needs at least 2 distinct timestamps")
        resolution = float(np.median(steps))
    if not resolution > 0:
        raise InvalidInput("resolution must be positive")
    n = int(np.floor((t[-1] - t[0]) / resolution + 1e-9)) + 1
    grid = t[-1] - resolution * np.arange(n - 1, -1, -1, dtype=np.float64)
    return float(grid[0]), float(resolution), np.interp(grid, t, v)


def features(values: FloatArray) -> dict[str, float]:
    """A small feature vector of a profile's series (version FEATURES_VERSION): kept with the
    profile for display and for a future second matcher; the motif matcher does not use it."""
    v = np.asarray(values, dtype=np.float64)
    if not len(v):
        return {}
    d = np.diff(v) if len(v) > 1 else np.zeros(1)
    return {k: round(float(x), 9) for k, x in {
        "mean": v.mean(), "std": v.std(), "min": v.min(), "max": v.max(),
        "median": np.median(v), "last": v[-1], "mean_abs_change": np.abs(d).mean(),
        "points": float(len(v))}.items()}


@dataclass(frozen=True)
class Profile:
    """A profile: `values` on a regular grid from `start` every `resolution` seconds, taught
    from the anomaly at `anchor` (event `event_id`) with `label`. parent_id: the profile it was
    learnt from (None: taught by a person)."""

    id: int
    metric: str
    label: Label
    start: float
    resolution: float
    values: FloatArray
    anchor: float
    event_id: str | None = None
    who: str = ""
    note: str = ""
    created: float = 0.0
    enabled: bool = True
    validated: bool = False
    matched_count: int = 0
    last_matched: float | None = None
    parent_id: int | None = None
    features: dict[str, float] = field(default_factory=dict)
    features_version: int = FEATURES_VERSION
    disabled_reason: str = ""

    @property
    def end(self) -> float:
        return self.start + self.resolution * (len(self.values) - 1)

    def timestamps(self) -> FloatArray:
        return self.start + self.resolution * np.arange(len(self.values), dtype=np.float64)

    def summary(self) -> dict[str, Any]:
        """JSON-ready, without the series."""
        return {"id": self.id, "metric": self.metric, "label": self.label,
                "start": self.start, "end": self.end, "resolution": self.resolution,
                "points": len(self.values), "anchor": self.anchor, "event_id": self.event_id,
                "who": self.who, "note": self.note, "created": self.created,
                "enabled": self.enabled, "validated": self.validated,
                "matched_count": self.matched_count, "last_matched": self.last_matched,
                "parent_id": self.parent_id, "features": dict(self.features),
                "features_version": self.features_version,
                "disabled_reason": self.disabled_reason}


@dataclass(frozen=True)
class Feedback:
    id: int
    event_id: str
    metric: str
    label: Label
    who: str
    note: str
    created: float
    profile_id: int | None = None


@dataclass(frozen=True)
class Match:
    """A candidate matched a profile: method (motif), the similarity figures, whether the veto
    was applied (mode on) or only recorded (shadow), and an operator's review (None: not
    reviewed, True: right, False: wrong)."""

    id: int
    profile_id: int
    metric: str
    event_id: str
    timestamp: float
    method: str
    similarity: float
    figures: dict[str, float]
    applied: bool
    created: float
    validated: bool | None = None
    reviewed_by: str = ""

    def summary(self) -> dict[str, Any]:
        return {"id": self.id, "profile_id": self.profile_id, "metric": self.metric,
                "event_id": self.event_id, "timestamp": self.timestamp,
                "method": self.method, "similarity": self.similarity,
                "figures": dict(self.figures), "applied": self.applied,
                "created": self.created, "validated": self.validated,
                "reviewed_by": self.reviewed_by}
