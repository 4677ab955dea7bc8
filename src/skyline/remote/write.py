"""Sending series to a Prometheus remote_write receiver (Prometheus with
--web.enable-remote-write-receiver, VictoriaMetrics, Mimir, Thanos receive, ...): a
WriteRequest (remote_write 1.0), snappy-compressed, encoded here without a protobuf message
object per sample.

The samples of a request are encoded by numpy in one pass (tag, double, varint timestamp per
row); only the label sets are encoded per series. `prompb.WriteRequest` parses the result (the
tests check it does).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import cramjam
import numpy as np

from skyline.core.types import FloatArray

#: the headers remote_write 1.0 asks a sender to set
HEADERS = (("Content-Encoding", "snappy"), ("Content-Type", "application/x-protobuf"),
           ("X-Prometheus-Remote-Write-Version", "0.1.0"))


@dataclass
class WriteSeries:
    """One series to send: its labels (with `__name__`) and its points (Unix seconds), in
    time order."""

    labels: Mapping[str, str]
    timestamps: FloatArray
    values: FloatArray
    key: str = ""  # the sender's own name for the series (what it records as sent)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _field(tag: int, payload: bytes) -> bytes:
    n = len(payload)
    if n < 0x80:
        return bytes((tag, n)) + payload
    return bytes((tag,)) + _varint(n) + payload


@functools.lru_cache(maxsize=1 << 18)
def _encoded_labels(items: tuple[tuple[str, str], ...]) -> bytes:
    out = bytearray()
    for name, value in items:
        label = _field(0x0A, name.encode()) + _field(0x12, value.encode())
        out += _field(0x0A, label)
    return bytes(out)


def _labels(labels: Mapping[str, str]) -> bytes:
    """TimeSeries.labels (field 1), sorted by name as Prometheus requires; a label set sent
    before is encoded once (a sender sends the same series again and again)."""
    return _encoded_labels(tuple(sorted(labels.items())))


def encode_samples(timestamps: FloatArray, values: FloatArray) -> tuple[bytes, np.ndarray]:
    """Every point as a TimeSeries.samples entry (field 2: a Sample of a double value and an
    int64 millisecond timestamp), in one numpy pass. Returns the bytes and the end offset of
    each sample in them."""
    n = len(timestamps)
    ms = np.round(np.asarray(timestamps, dtype=np.float64) * 1000.0).astype(np.int64)
    if n and ms.min() < 0:
        raise ValueError("remote_write timestamps before 1970 are not sent")
    u = ms.astype(np.uint64)
    # varint: 7 bits a byte, low first, the high bit set on all but the last
    groups = np.empty((n, 10), dtype=np.uint8)
    for k in range(10):
        groups[:, k] = ((u >> np.uint64(7 * k)) & np.uint64(0x7F)).astype(np.uint8)
    length = np.ones(n, dtype=np.int64)
    for k in range(1, 10):
        length += u >= np.uint64(1 << (7 * k))
    cont = np.arange(10)[None, :] < (length - 1)[:, None]
    groups[cont] |= 0x80
    rows = np.zeros((n, 2 + 9 + 1 + 10), dtype=np.uint8)
    rows[:, 0] = 0x12  # TimeSeries.samples, length-delimited
    rows[:, 1] = (10 + length).astype(np.uint8)  # 0x09 + 8 bytes + 0x10 + varint
    rows[:, 2] = 0x09  # Sample.value, fixed64
    rows[:, 3:11] = np.asarray(values, dtype="<f8").view(np.uint8).reshape(n, 8)
    rows[:, 11] = 0x10  # Sample.timestamp, varint
    rows[:, 12:] = groups
    size = 12 + length
    keep = np.arange(rows.shape[1])[None, :] < size[:, None]
    return rows[keep].tobytes(), np.cumsum(size)


def encode(series: Sequence[WriteSeries]) -> bytes:
    """A WriteRequest of the series, uncompressed protobuf."""
    if not series:
        return b""
    counts = np.array([len(s.timestamps) for s in series], dtype=np.int64)
    ts = np.concatenate([np.asarray(s.timestamps, dtype=np.float64) for s in series])
    vs = np.concatenate([np.asarray(s.values, dtype=np.float64) for s in series])
    samples, ends = encode_samples(ts, vs)
    bounds = np.r_[0, ends][np.r_[0, np.cumsum(counts)]].tolist()
    out = bytearray()
    for i, s in enumerate(series):
        body = _labels(s.labels) + samples[bounds[i]:bounds[i + 1]]
        out += _field(0x0A, body)
    return bytes(out)


def compress(data: bytes) -> bytes:
    """Snappy block format, as remote_write sends its body."""
    return bytes(cramjam.snappy.compress_raw(data))


def batches(series: Sequence[WriteSeries], max_samples: int) -> list[list[WriteSeries]]:
    """The series in requests of at most `max_samples` samples each (a longer series is cut
    into pieces, each piece in time order)."""
    out: list[list[WriteSeries]] = []
    cur: list[WriteSeries] = []
    room = max_samples
    for s in series:
        start = 0
        n = len(s.timestamps)
        while start < n:
            take = min(room, n - start)
            cur.append(WriteSeries(s.labels, s.timestamps[start:start + take],
                                   s.values[start:start + take], s.key))
            start += take
            room -= take
            if room == 0:
                out.append(cur)
                cur, room = [], max_samples
    if cur:
        out.append(cur)
    return out
