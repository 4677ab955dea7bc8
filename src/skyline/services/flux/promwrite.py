"""Prometheus remote_write 1.0 (`prometheus.WriteRequest`), decoded into points (pure).

The message classes are built at import from a descriptor written here, in a private pool:
the four messages of remote.proto/types.proto that carry samples, with no generated code that
must match the protobuf runtime's version and no protoc at install time. Fields not declared
(metadata, exemplars) are skipped by the parser. Native histograms are declared only to be
counted and refused.

Names follow the labelled-name rule: `__name__` is the name, the other labels (empty values
dropped, as Prometheus treats them as absent) go in braces, sorted.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError

from skyline.ingest.names import labelled_name
from skyline.services.flux.points import Points

#: the NaN Prometheus writes when a series goes stale (value.StaleNaN)
STALE_NAN_BITS = 0x7FF0000000000002

_F = descriptor_pb2.FieldDescriptorProto


def _message(fd: descriptor_pb2.FileDescriptorProto, name: str,
             fields: list[tuple[str, int, int, str | None, bool]]) -> None:
    msg = fd.message_type.add(name=name)
    for fname, number, ftype, type_name, repeated in fields:
        f = msg.field.add(name=fname, number=number, type=ftype,
                          label=_F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL)
        if type_name:
            f.type_name = type_name


def _build() -> Any:
    fd = descriptor_pb2.FileDescriptorProto(name="skyline_prometheus_remote.proto",
                                            package="prometheus", syntax="proto3")
    _message(fd, "WriteRequest", [("timeseries", 1, _F.TYPE_MESSAGE, ".prometheus.TimeSeries",
                                   True)])
    _message(fd, "TimeSeries", [
        ("labels", 1, _F.TYPE_MESSAGE, ".prometheus.Label", True),
        ("samples", 2, _F.TYPE_MESSAGE, ".prometheus.Sample", True),
        ("histograms", 4, _F.TYPE_MESSAGE, ".prometheus.Histogram", True),
    ])
    _message(fd, "Label", [("name", 1, _F.TYPE_STRING, None, False),
                           ("value", 2, _F.TYPE_STRING, None, False)])
    _message(fd, "Sample", [("value", 1, _F.TYPE_DOUBLE, None, False),
                            ("timestamp", 2, _F.TYPE_INT64, None, False)])
    _message(fd, "Histogram", [])
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fd)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("prometheus.WriteRequest"))


WriteRequest = _build()


class BadProtobuf(Exception):
    """The body is not a WriteRequest."""


def parse(data: bytes) -> Points:
    """The samples of a decompressed WriteRequest; item numbers are series numbers."""
    req = WriteRequest()
    try:
        req.ParseFromString(data)
    except DecodeError as e:
        raise BadProtobuf(f"the body is not a remote_write WriteRequest: {e}") from None
    out = Points(total=len(req.timeseries))
    names: list[str] = []
    index: list[int] = []
    ts_ms: list[int] = []
    values: list[float] = []
    for i, series in enumerate(req.timeseries):
        if series.histograms:
            out.errors.append((i, "histogram"))
        samples = series.samples
        if not samples:
            continue
        labels = {lab.name: lab.value for lab in series.labels if lab.value}
        metric = labels.pop("__name__", None)
        if not metric:
            out.errors.append((i, "no_metric_name"))
            continue
        n = len(samples)
        names += [labelled_name(metric, labels)] * n
        index += [i] * n
        ts_ms += [s.timestamp for s in samples]
        values += [s.value for s in samples]
    vs = np.array(values, dtype=np.float64)
    ts = np.array(ts_ms, dtype=np.float64) / 1000.0
    stale = vs.view(np.uint64) == STALE_NAN_BITS
    if stale.any():
        # a series that went stale is not a refusal: Prometheus says it ended
        keep = ~stale
        out.ignored["stale_marker"] = int(stale.sum())
        kept = np.flatnonzero(keep).tolist()
        names = [names[k] for k in kept]
        index = [index[k] for k in kept]
        vs, ts = vs[keep], ts[keep]
    out.names, out.index, out.timestamps, out.values = names, index, ts, vs
    return out
