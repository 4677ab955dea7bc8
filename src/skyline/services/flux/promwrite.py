"""Prometheus remote_write 1.0 (`prometheus.WriteRequest`), decoded into points (pure).

The message classes come from skyline.remote.prompb (shared with the remote_write sender).
Fields not declared there (metadata, exemplars) are skipped by the parser. Native histograms
are declared only to be counted and refused.

Names follow the labelled-name rule: `__name__` is the name, the other labels (empty values
dropped, as Prometheus treats them as absent) go in braces, sorted.
"""

from __future__ import annotations

import numpy as np
from google.protobuf.message import DecodeError

from skyline.ingest.names import labelled_name
from skyline.remote.prompb import STALE_NAN_BITS, WriteRequest
from skyline.services.flux.points import Points


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
