"""Prometheus remote_write 1.0 messages (`prometheus.WriteRequest`), for flux, which receives
them, and the remote_write sender (skyline.remote.write), which sends them.

The message classes are built at import from a descriptor written here, in a private pool:
the four messages of remote.proto/types.proto that carry samples, with no generated code that
must match the protobuf runtime's version and no protoc at install time. Native histograms are
declared only so that a receiver can count and refuse them.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

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
