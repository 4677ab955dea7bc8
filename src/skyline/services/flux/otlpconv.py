"""OTLP metrics (an ExportMetricsServiceRequest) into points (pure but for the cumulative
state it is given).

- Gauges, delta sums and non-monotonic sums (up-down counters) are stored as they are.
- Cumulative monotonic sums (counters) are stored as deltas: the increase since the previous
  point of the same series, kept in `Cumulative`. A new start time, or a value below the
  previous one, is a reset: the delta is then the value itself (its increase since the new
  start). The first point of a series Skyline has not seen only sets its baseline, unless the
  series started after this process did (then all of it is new).
- Histograms, exponential histograms and summaries are refused and counted until supported.

Names: the metric's name, with labels from the point's attributes and the resource
attributes listed in flux.otlp_resource_attributes (keys made label names: service.name ->
service_name; a point attribute wins over a resource one). Scope attributes are not kept.
Item numbers count data points across the request.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

from google.protobuf import json_format
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import AggregationTemporality, Metric

from skyline.services.flux.naming import label_name, label_suffix
from skyline.services.flux.points import Points

_CUMULATIVE = AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE
_NO_RECORDED_VALUE = 1  # DataPointFlags.DATA_POINT_FLAGS_NO_RECORDED_VALUE_MASK
_UNSUPPORTED = {"histogram": "histogram", "exponential_histogram": "exponential_histogram",
                "summary": "summary"}


class Cumulative:
    """The last point of every cumulative counter, to turn the next one into a delta.

    Bounded in count and bytes: beyond `max_series` series or MAX_BYTES of names the least
    recently updated series is forgotten (its next point only sets a new baseline), and a name
    longer than the ingest limits allow is never kept (its points are refused anyway).
    Thread-safe, since routes may run in worker threads."""

    MAX_BYTES = 128 * 2**20
    MAX_NAME = 5120  # ingest.max_name_length + ingest.max_labels_length at their defaults
    _ENTRY = 150  # bytes of an entry besides its name (tuple, ints, dict slot)

    def __init__(self, max_series: int, started_ns: int):
        self.max_series = max_series
        self.started_ns = started_ns
        self._last: OrderedDict[str, tuple[int, int, float]] = OrderedDict()  # start, time, v
        self._bytes = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._last)

    def delta(self, name: str, start_ns: int, time_ns: int, value: float) -> float | str:
        """The increase to store, or why nothing is stored ("baseline", "out_of_order",
        "name_too_long")."""
        if len(name) > self.MAX_NAME:
            return "name_too_long"
        with self._lock:
            last = self._last.get(name)
            if last is not None:
                prev_start, prev_time, prev_value = last
                if start_ns == prev_start and time_ns <= prev_time:
                    # an export sent again (a retry) or late: storing it would overwrite the
                    # delta already stored for that time
                    return "out_of_order"
                self._last.move_to_end(name)
            else:
                self._bytes += len(name) + self._ENTRY
                while self._last and (len(self._last) >= self.max_series
                                      or self._bytes > self.MAX_BYTES):
                    old, _ = self._last.popitem(last=False)
                    self._bytes -= len(old) + self._ENTRY
            self._last[name] = (start_ns, time_ns, value)
            if last is None:
                return value if start_ns and start_ns >= self.started_ns else "baseline"
            if start_ns > prev_start or value < prev_value:
                return value  # reset
            return value - prev_value


def _any(v: AnyValue) -> str | None:
    kind = v.WhichOneof("value")
    if kind is None:
        return None
    if kind == "string_value":
        return str(v.string_value)
    if kind == "bool_value":
        return "true" if v.bool_value else "false"
    if kind in ("int_value", "double_value"):
        return str(getattr(v, kind))
    if kind == "bytes_value":
        return bytes(v.bytes_value).hex()
    if kind == "array_value":
        return json.dumps([_any(x) for x in v.array_value.values])
    return json.dumps({kv.key: _any(kv.value) for kv in v.kvlist_value.values})


def _labels(attributes: Iterable[KeyValue], into: dict[str, str]) -> dict[str, str]:
    for kv in attributes:
        value = _any(kv.value)
        if value:
            into[label_name(kv.key)] = value
    return into


def convert(req: Any, state: Cumulative, resource_keys: frozenset[str]) -> Points:
    """The points of an ExportMetricsServiceRequest."""
    out = Points()
    names: list[str] = []
    timestamps: list[float] = []
    values: list[float] = []
    item = 0
    for rm in req.resource_metrics:
        resource = _labels((kv for kv in rm.resource.attributes if kv.key in resource_keys), {})
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                kind = metric.WhichOneof("data")
                if kind in _UNSUPPORTED:
                    n = len(getattr(metric, kind).data_points)
                    out.errors += [(item + k, _UNSUPPORTED[kind]) for k in range(n)]
                    item += n
                    continue
                item = _numbers(metric, kind, resource, state, item, out, names, timestamps,
                                values)
    out.total = item
    out.names, out.timestamps, out.values = names, timestamps, values
    return out


def _numbers(metric: Metric, kind: str | None, resource: dict[str, str], state: Cumulative,
             item: int, out: Points, names: list[str], timestamps: list[float],
             values: list[float]) -> int:
    if kind == "gauge":
        points, as_delta = metric.gauge.data_points, False
    elif kind == "sum":
        s = metric.sum
        points = s.data_points
        as_delta = s.is_monotonic and s.aggregation_temporality == _CUMULATIVE
    else:  # a kind this version of the protocol does not know
        return item
    for dp in points:
        here = item
        item += 1
        if dp.flags & _NO_RECORDED_VALUE:
            out.ignored["no_recorded_value"] += 1
            continue
        which = dp.WhichOneof("value")
        if which is None:
            out.errors.append((here, "no_value"))
            continue
        value = float(dp.as_double if which == "as_double" else dp.as_int)
        name = metric.name + label_suffix(_labels(dp.attributes, dict(resource)))
        if as_delta:
            d = state.delta(name, dp.start_time_unix_nano, dp.time_unix_nano, value)
            if isinstance(d, str):
                if d == "baseline":
                    out.ignored["counter_baseline"] += 1
                else:
                    out.errors.append((here, d))
                continue
            value = d
        names.append(name)
        timestamps.append(dp.time_unix_nano / 1e9)
        values.append(value)
        out.index.append(here)
    return item


def parse(data: bytes) -> Any:
    """The request message of an OTLP/HTTP protobuf body; DecodeError when it is not one."""
    req = ExportMetricsServiceRequest()
    req.ParseFromString(data)
    return req


def parse_json(data: bytes) -> Any:
    """The request message of an OTLP/HTTP JSON body (protobuf's JSON mapping, which reads
    OTLP's lowerCamelCase names and int64-as-string); ParseError or ValueError when it is not
    one. Unknown members are ignored, as OTLP asks of receivers."""
    return json_format.Parse(data, ExportMetricsServiceRequest(), ignore_unknown_fields=True)
