"""AnomalyEvent: what a detector says about one metric at one time.

The JSON form is the contract between producers (analyzer, later mirage, boundary,
ionosphere) and consumers (panorama, alerters, webapp). The window snapshot travels
compressed so graphs survive after the hot store has trimmed the points.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import zlib
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

from skyline.core.errors import InvalidInput
from skyline.core.types import FloatArray

Status = Literal["anomalous", "recovered", "vetoed", "new_level"]
STATUSES: tuple[str, ...] = ("anomalous", "recovered", "vetoed", "new_level")
SCHEMA_VERSION = 2


def event_id(metric: str, timestamp: float, source: str) -> str:
    """Deterministic id: the same detection produced twice has the same id."""
    h = hashlib.sha256(f"{source}\x00{metric}\x00{float(timestamp)!r}".encode())
    return h.hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class AlgorithmResult:
    """One algorithm's opinion: statistic, limit, verdict (None = abstained), one line of text."""

    algorithm: str
    verdict: bool | None
    statistic: float | None = None
    limit: float | None = None
    text: str = ""


@dataclass(frozen=True, slots=True)
class StageVerdict:
    """One pipeline stage's answer on a candidate (skyline.analysis.stages): confirm, veto or
    abstain, a one-line reason, the figures behind it, and how long it took."""

    stage: str
    verdict: str  # "confirm" | "veto" | "abstain"
    reason: str = ""
    figures: dict[str, float] = field(default_factory=dict)
    ms: float = 0.0


def _finite(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None


def pack_window(timestamps: FloatArray, values: FloatArray, level: int = 6) -> bytes:
    """zlib-compressed float64 pairs: the window as the detector saw it. Noisy floats barely
    compress at any level; level 1 is 10x faster than 6 for the same size (the analyzer packs
    one window per anomaly)."""
    pts = np.empty((len(timestamps), 2), dtype="<f8")
    pts[:, 0] = timestamps
    pts[:, 1] = values
    return zlib.compress(pts.tobytes(), level)


def unpack_window(blob: bytes) -> tuple[FloatArray, FloatArray]:
    raw = zlib.decompress(blob)
    pts = np.frombuffer(raw, dtype="<f8").reshape(-1, 2)
    return pts[:, 0].copy(), pts[:, 1].copy()


@dataclass(frozen=True)
class AnomalyEvent:
    """status: `anomalous` (a confirmed candidate: alerted), `vetoed` (a candidate a stage
    vetoed: stored, never alerted), `recovered` (the metric is back to what it was before the
    incident), `new_level` (the incident closed because the metric settled at a new level).
    value is the value the detector judged (a counter's rate, a dense series' step mean).
    band_low/band_high: the range the detector expected a normal value in (None: unbounded);
    since: when the incident began."""

    metric: str
    timestamp: float
    value: float
    score: float
    source: str
    status: Status = "anomalous"
    triggered: tuple[str, ...] = ()
    results: tuple[AlgorithmResult, ...] = ()
    window: bytes = b""  # pack_window() output
    created: float = 0.0
    id: str = field(default="")
    stages: tuple[StageVerdict, ...] = ()
    band_low: float | None = None
    band_high: float | None = None
    since: float | None = None

    def __post_init__(self) -> None:
        if not self.id:
            object.__setattr__(self, "id", event_id(self.metric, self.timestamp, self.source))

    @classmethod
    def build(cls, *, metric: str, timestamp: float, value: float, score: float, source: str,
              window_timestamps: FloatArray | None = None,
              window_values: FloatArray | None = None, **kw: Any) -> AnomalyEvent:
        window = b""
        if window_timestamps is not None and window_values is not None:
            window = pack_window(window_timestamps, window_values)
        return cls(metric=metric, timestamp=float(timestamp), value=float(value),
                   score=float(score), source=source, window=window, **kw)

    @property
    def veto(self) -> StageVerdict | None:
        """The stage verdict that vetoed this candidate, if one did."""
        return next((v for v in self.stages if v.verdict == "veto"), None)

    def window_arrays(self) -> tuple[FloatArray, FloatArray]:
        if not self.window:
            empty = np.empty(0, dtype=np.float64)
            return empty, empty
        return unpack_window(self.window)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["v"] = SCHEMA_VERSION
        d["triggered"] = list(self.triggered)
        d["results"] = [asdict(r) for r in self.results]
        d["stages"] = [asdict(v) for v in self.stages]
        d["band_low"], d["band_high"] = _finite(self.band_low), _finite(self.band_high)
        d["since"] = _finite(self.since)
        d["window"] = base64.b64encode(self.window).decode("ascii")
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"), allow_nan=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AnomalyEvent:
        try:
            results = tuple(AlgorithmResult(**r) for r in d.get("results", ()))
            stages = tuple(StageVerdict(**v) for v in d.get("stages", ()))
            status = d.get("status", "anomalous")
            if status not in STATUSES:
                raise ValueError(f"unknown status {status!r}")
            opt = {k: (None if d.get(k) is None else float(d[k]))
                   for k in ("band_low", "band_high", "since")}
            return cls(
                id=str(d["id"]),
                metric=str(d["metric"]),
                timestamp=float(d["timestamp"]),
                value=float(d["value"]),
                score=float(d["score"]),
                source=str(d["source"]),
                status=status,
                triggered=tuple(str(a) for a in d.get("triggered", ())),
                results=results,
                window=base64.b64decode(d.get("window", "")),
                created=float(d.get("created", 0.0)),
                stages=stages, **opt,
            )
        except (KeyError, TypeError, ValueError) as e:
            raise InvalidInput(f"not an AnomalyEvent: {e}") from None

    @classmethod
    def from_json(cls, text: str | bytes) -> AnomalyEvent:
        try:
            data = json.loads(text)
        except ValueError as e:
            raise InvalidInput(f"AnomalyEvent is not JSON: {e}") from None
        if not isinstance(data, dict):
            raise InvalidInput("AnomalyEvent JSON must be an object")
        return cls.from_dict(data)
