"""The packed series encoding: each point is 16 bytes, float64 timestamp then float64 value,
little-endian, appended in arrival order. A whole series decodes with one numpy.frombuffer."""

from __future__ import annotations

import numpy as np

from skyline.core.types import FloatArray

POINT_SIZE = 16
POINT_DTYPE = np.dtype([("t", "<f8"), ("v", "<f8")])


def encode_point(timestamp: float, value: float) -> bytes:
    return np.array([(timestamp, value)], dtype=POINT_DTYPE).tobytes()


def encode(timestamps: FloatArray, values: FloatArray) -> bytes:
    pts = np.empty(len(timestamps), dtype=POINT_DTYPE)
    pts["t"] = timestamps
    pts["v"] = values
    return pts.tobytes()


def decode(raw: bytes | None) -> tuple[FloatArray, FloatArray, int]:
    """(timestamps, values, trailing_bytes). Trailing bytes that do not make a whole point are
    ignored and reported, so a corrupt series never stops a reader."""
    if not raw:
        empty = np.empty(0, dtype=np.float64)
        return empty, empty, 0
    extra = len(raw) % POINT_SIZE
    pts = np.frombuffer(raw, dtype=POINT_DTYPE, count=len(raw) // POINT_SIZE)
    return pts["t"].astype(np.float64), pts["v"].astype(np.float64), extra


def normalise(
    timestamps: FloatArray, values: FloatArray, since: float | None = None
) -> tuple[FloatArray, FloatArray]:
    """Sorted by time, one point per timestamp (the last written wins), finite timestamps only,
    and, when `since` is given, only points newer than it."""
    keep = np.isfinite(timestamps)
    if since is not None:
        keep &= timestamps > since
    if not keep.all():
        timestamps, values = timestamps[keep], values[keep]
    n = timestamps.shape[0]
    if n == 0:
        return timestamps, values
    if n > 1 and not (np.all(timestamps[1:] > timestamps[:-1])):
        order = np.argsort(timestamps, kind="stable")
        timestamps, values = timestamps[order], values[order]
        last_of_run = np.empty(n, dtype=bool)
        last_of_run[:-1] = timestamps[1:] != timestamps[:-1]
        last_of_run[-1] = True
        timestamps, values = timestamps[last_of_run], values[last_of_run]
    return timestamps, values
