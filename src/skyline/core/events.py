"""AnomalyEvent: what a detector says about one metric at one time.

The JSON form is the contract between producers (analyzer, later mirage, boundary,
ionosphere) and consumers (panorama, alerters, webapp). The window snapshot travels
compressed so graphs survive after the hot store has trimmed the points.
"""

from __future__ import annotations

import base64
import hashlib
import json
import zlib
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

from skyline.core.errors import InvalidInput
from skyline.core.types import FloatArray

Status = Literal["anomalous", "recovered"]
SCHEMA_VERSION = 1


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
        d["window"] = base64.b64encode(self.window).decode("ascii")
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"), allow_nan=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AnomalyEvent:
        try:
            results = tuple(AlgorithmResult(**r) for r in d.get("results", ()))
            return cls(
                id=str(d["id"]),
                metric=str(d["metric"]),
                timestamp=float(d["timestamp"]),
                value=float(d["value"]),
                score=float(d["score"]),
                source=str(d["source"]),
                status=d.get("status", "anomalous"),
                triggered=tuple(str(a) for a in d.get("triggered", ())),
                results=results,
                window=base64.b64decode(d.get("window", "")),
                created=float(d.get("created", 0.0)),
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
