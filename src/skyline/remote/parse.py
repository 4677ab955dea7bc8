"""Turning a remote's JSON answer into numpy series (pure: bytes in, arrays out).

Graphite's render JSON is `[{"target": name, "datapoints": [[value, timestamp], ...]}, ...]`:
the value comes first, and a null value is a gap (Graphite has no point there), never a zero.
Prometheus' query_range answers `{"status": "success", "data": {"resultType": "matrix",
"result": [{"metric": {labels}, "values": [[timestamp, "value"], ...]}]}}`: values are
strings ("NaN" and "+Inf" included). Both are converted with one numpy call per series.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from skyline.core.types import FloatArray


class BadBody(ValueError):
    """The body is not the JSON the remote's API answers."""


@dataclass
class RemoteSeries:
    """One series of a remote's answer: Graphite's target name, or Prometheus' labels
    (`__name__` among them when the result has one). Points are sorted by time; gaps (null,
    NaN) are left out."""

    name: str
    labels: dict[str, str] = field(default_factory=dict)
    timestamps: FloatArray = field(default_factory=lambda: np.empty(0))
    values: FloatArray = field(default_factory=lambda: np.empty(0))


def _loads(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BadBody(f"not JSON: {e}") from None


def _pairs(rows: Any, what: str) -> np.ndarray:
    """An (n, 2) float array of JSON [a, b] pairs; None becomes NaN."""
    if not isinstance(rows, list):
        raise BadBody(f"{what} is not a list")
    if not rows:
        return np.empty((0, 2))
    try:
        arr = np.array(rows, dtype=np.float64)
    except (TypeError, ValueError):
        raise BadBody(f"{what} are not [number, number] pairs") from None
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise BadBody(f"{what} are not [number, number] pairs")
    return arr


def _clean(ts: np.ndarray, vs: np.ndarray) -> tuple[FloatArray, FloatArray]:
    keep = np.isfinite(ts) & np.isfinite(vs)
    ts, vs = ts[keep], vs[keep]
    if ts.size > 1 and np.any(np.diff(ts) <= 0):
        # sorted, one point per timestamp (the last one given wins)
        order = np.argsort(ts, kind="stable")
        ts, vs = ts[order], vs[order]
        last = np.append(ts[1:] != ts[:-1], True)
        ts, vs = ts[last], vs[last]
    return np.ascontiguousarray(ts), np.ascontiguousarray(vs)


def graphite_render(body: bytes) -> list[RemoteSeries]:
    """The series of a Graphite render?format=json answer."""
    data = _loads(body)
    if not isinstance(data, list):
        raise BadBody("a Graphite render answer is a JSON list")
    out = []
    for i, item in enumerate(data):
        if not isinstance(item, dict) or not isinstance(item.get("target"), str):
            raise BadBody(f"item {i} has no target")
        arr = _pairs(item.get("datapoints"), f"the datapoints of {item['target']!r}")
        ts, vs = _clean(arr[:, 1], arr[:, 0])  # [value, timestamp]
        tags = item.get("tags")
        labels = {str(k): str(v) for k, v in tags.items()} if isinstance(tags, dict) else {}
        out.append(RemoteSeries(item["target"], labels, ts, vs))
    return out


def prometheus_error(body: bytes) -> str | None:
    """The error Prometheus put in a JSON answer, if it is one."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    if isinstance(data, dict) and data.get("status") == "error":
        return f"{data.get('errorType', 'error')}: {data.get('error', '')}"
    return None


def prometheus_matrix(body: bytes) -> list[RemoteSeries]:
    """The series of a Prometheus /api/v1/query_range answer (a vector answer, from
    /api/v1/query, is accepted too)."""
    data = _loads(body)
    if not isinstance(data, dict):
        raise BadBody("a Prometheus answer is a JSON object")
    if data.get("status") != "success":
        raise BadBody(f"Prometheus answered {data.get('status')!r}: "
                      f"{data.get('errorType', '')} {data.get('error', '')}".strip())
    inner = data.get("data")
    if not isinstance(inner, dict) or not isinstance(inner.get("result"), list):
        raise BadBody("no data.result in the answer")
    kind = inner.get("resultType")
    if kind not in ("matrix", "vector"):
        raise BadBody(f"resultType {kind!r} is not a matrix or a vector")
    out = []
    for i, item in enumerate(inner["result"]):
        if not isinstance(item, dict) or not isinstance(item.get("metric"), dict):
            raise BadBody(f"result {i} has no metric labels")
        labels = {str(k): str(v) for k, v in item["metric"].items()}
        rows = item.get("values") if kind == "matrix" else [item.get("value")]
        arr = _pairs(rows, f"the values of result {i}")
        ts, vs = _clean(arr[:, 0], arr[:, 1])
        out.append(RemoteSeries(labels.get("__name__", ""), labels, ts, vs))
    return out
