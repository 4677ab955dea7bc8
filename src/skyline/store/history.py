"""The long history: each metric's points downsampled to MIRAGE_ANALYSIS_RESOLUTION buckets
(count, sum, min and max of the points in each), kept for mirage.history_days beside the raw
FULL_DURATION series, under the same hash tag (keys.history).

The roomba builds it: when a metric's oldest raw points are older than the retention by more
than mirage.history_batch seconds, it moves every whole bucket that lies beyond the retention
out of the raw series into the history, in one Lua script that rewrites both keys (so a point
is in exactly one of the two, whatever crashes or restarts happen; the history is as durable
as the raw series). Buckets are epoch-aligned (bucket i covers [i*R, (i+1)*R)); only complete
buckets move (no point older than the retention can still arrive: ingest refuses points older
than FULL_DURATION), and a bucket met twice (a late point) is merged exactly.

Encoding (version 2): a 21-byte header (magic b"SH", version, scale, integer width,
resolution, first bucket index, bucket count), then zlib of the columns of the non-empty
buckets, each byte-shuffled: index gaps (uint32), counts (uint32), then three columns. When
every stored figure is a decimal of at most 6 digits after the point (integers, 12.5, 0.25:
what most operational metrics send), figures are integers scaled by 10**scale and the columns
are the sum delta-coded, max - floor(sum / count) and floor(sum / count) - min (a bucket's
extremes sit near its mean: a few bits each), as int32 when every one fits, else int64;
sums of decimal values are added as integers so merging never rounds. Otherwise (scale 255)
the columns are sum, min and max as float64. Both are exact: decode(encode(b)) == b, bit for
bit. Version 1 (the same without the width byte; min and max delta-coded like the sum, always
int64) is still read: histories written before are rewritten in version 2 by the roomba's
next move.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from skyline.core.types import FloatArray

IntArray = npt.NDArray[np.int64]

MAGIC = b"SH"
VERSION = 2
FLOAT_SCALE = 255  # the scale byte of a history stored as float64
MAX_SCALE = 6
_HEADER_V1 = struct.Struct("<2sBBIqI")
_HEADER = struct.Struct("<2sBBBIqI")
_EXACT = 2.0**53  # integers up to this are exact in float64
# zlib level 3: within 10 % of level 6's size on these columns at half its time (bench/mirage.py)
_LEVEL = 3


class CorruptHistory(ValueError):
    """A history key whose bytes are not a history this version can read."""


@dataclass
class Buckets:
    """Non-empty buckets in time order: bucket index (start = index * resolution), number of
    points, their sum, min and max. scale: every figure is a decimal with at most this many
    digits after the point (exact integer arithmetic applies), or None."""

    resolution: int
    index: IntArray
    count: IntArray
    sum: FloatArray
    min: FloatArray
    max: FloatArray
    scale: int | None

    def __len__(self) -> int:
        return int(self.index.shape[0])

    @property
    def timestamps(self) -> FloatArray:
        """Start of each bucket."""
        return (self.index * self.resolution).astype(np.float64)

    @property
    def mean(self) -> FloatArray:
        return self.sum / self.count

    def since(self, first_index: int) -> Buckets:
        """Only the buckets from `first_index` on."""
        keep = self.index >= first_index
        if keep.all():
            return self
        return Buckets(self.resolution, self.index[keep], self.count[keep], self.sum[keep],
                       self.min[keep], self.max[keep], self.scale)

    def window(self, start: float, end: float) -> Buckets:
        """The buckets that start in [start, end)."""
        t = self.timestamps
        keep = (t >= start) & (t < end)
        return Buckets(self.resolution, self.index[keep], self.count[keep], self.sum[keep],
                       self.min[keep], self.max[keep], self.scale)

    @staticmethod
    def empty(resolution: int) -> Buckets:
        z = np.zeros(0)
        return Buckets(resolution, np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64),
                       z, z.copy(), z.copy(), 0)


def decimal_scale(x: FloatArray) -> int | None:
    """The fewest digits after the point (0..6) that write every value of x exactly, or None."""
    if x.shape[0] == 0:
        return 0
    for k in range(MAX_SCALE + 1):
        f = 10.0**k
        y = x * f
        if not np.all(np.abs(y) < _EXACT):
            return None
        if np.array_equal(np.round(y) / f, x):
            return k
    return None


def _scaled(x: FloatArray, k: int) -> FloatArray:
    return np.round(x * 10.0**k)


def _aggregate(resolution: int, idx: IntArray, count: IntArray, sm: FloatArray, mn: FloatArray,
               mx: FloatArray, scale: int | None) -> Buckets:
    """Group rows by bucket index (any order, repeats merged exactly)."""
    if idx.shape[0] == 0:
        return Buckets.empty(resolution)
    order = np.argsort(idx, kind="stable")
    idx, count, sm, mn, mx = idx[order], count[order], sm[order], mn[order], mx[order]
    first = np.ones(idx.shape[0], dtype=bool)
    first[1:] = idx[1:] != idx[:-1]
    starts = np.flatnonzero(first)
    if scale is not None:
        # integers add exactly (up to 2**53), so a merged sum is the sum of all its points
        sums = np.add.reduceat(_scaled(sm, scale), starts) / 10.0**scale
    else:
        sums = np.add.reduceat(sm, starts)
    return Buckets(resolution, idx[starts], np.add.reduceat(count, starts), sums,
                   np.minimum.reduceat(mn, starts), np.maximum.reduceat(mx, starts), scale)


def bucketise(t: FloatArray, v: FloatArray, resolution: int, *, exact: bool = True) -> Buckets:
    """The buckets of points (t, v); non-finite values are left out. exact=False: float
    sums without looking for a decimal scale (for reading, never for storing)."""
    ok = np.isfinite(t) & np.isfinite(v)
    if not ok.all():
        t, v = t[ok], v[ok]
    idx = np.floor(t / resolution).astype(np.int64)
    if not exact:
        return _aggregate(resolution, idx, np.ones(idx.shape[0], dtype=np.int64), v, v, v, None)
    scale = decimal_scale(v)
    if scale is not None and v.shape[0] and \
            np.abs(_scaled(v, scale)).sum() * 1.0 >= _EXACT:  # sums would not stay exact
        scale = None
    return _aggregate(resolution, idx, np.ones(idx.shape[0], dtype=np.int64), v, v, v, scale)


def merge(old: Buckets | None, new: Buckets, first_index: int | None = None) -> Buckets:
    """old and new together (a bucket in both is merged), from `first_index` on. A history
    kept at another resolution is re-bucketed to new's (exact when new's is a multiple)."""
    if old is None or len(old) == 0:
        return new if first_index is None else new.since(first_index)
    if len(new) == 0 and old.resolution == new.resolution:
        return old if first_index is None else old.since(first_index)
    r = new.resolution
    old_idx = old.index if old.resolution == r else (old.index * old.resolution) // r
    scale = None if old.scale is None or new.scale is None else max(old.scale, new.scale)
    if scale is not None:
        total = np.abs(_scaled(old.sum, scale)).sum() + np.abs(_scaled(new.sum, scale)).sum()
        if total >= _EXACT:
            scale = None
    cat = np.concatenate
    out = _aggregate(r, cat([old_idx, new.index]), cat([old.count, new.count]),
                     cat([old.sum, new.sum]), cat([old.min, new.min]), cat([old.max, new.max]),
                     scale)
    return out if first_index is None else out.since(first_index)


def _shuffle(a: npt.NDArray[np.generic]) -> bytes:
    """Bytes of a grouped by byte position (all first bytes, then all second bytes...):
    zlib then finds the runs the high bytes of similar numbers make."""
    width = a.dtype.itemsize
    return np.ascontiguousarray(a.view(np.uint8).reshape(a.shape[0], width).T).tobytes()


def _unshuffle(raw: bytes, n: int, dtype: str) -> npt.NDArray[np.generic]:
    width = np.dtype(dtype).itemsize
    return np.ascontiguousarray(
        np.frombuffer(raw, dtype=np.uint8, count=n * width).reshape(width, n).T
    ).view(dtype).reshape(n)


def _columns(b: Buckets, scale: int) -> tuple[IntArray, IntArray, IntArray]:
    """The three integer columns of version 2: sum deltas, max - mean, mean - min (scaled)."""
    sm = _scaled(b.sum, scale).astype(np.int64)
    mean = np.floor_divide(sm, b.count)
    return (np.diff(sm, prepend=np.int64(0)),
            _scaled(b.max, scale).astype(np.int64) - mean,
            mean - _scaled(b.min, scale).astype(np.int64))


def encode(b: Buckets, version: int = VERSION) -> bytes:
    """b's bytes (version 2; version 1 only to test that old histories still read)."""
    n = len(b)
    first = int(b.index[0]) if n else 0
    # b.scale holds by construction (bucketise checks the points, merge takes the larger)
    scale = b.scale
    gaps = np.diff(b.index, prepend=first).astype("<u4")
    parts = [_shuffle(gaps), _shuffle(b.count.astype("<u4"))]
    width = 8
    if scale is None:
        parts += [_shuffle(col.astype("<f8")) for col in (b.sum, b.min, b.max)]
    elif version == 1:
        for col in (b.sum, b.min, b.max):
            ints = _scaled(col, scale).astype("<i8")
            parts.append(_shuffle(np.diff(ints, prepend=np.int64(0)).astype("<i8")))
    else:
        cols = _columns(b, scale)
        if all(not c.size or int(np.abs(c).max()) < 2**31 for c in cols):
            width = 4
        parts += [_shuffle(c.astype(f"<i{width}")) for c in cols]
    scale_b = FLOAT_SCALE if scale is None else scale
    if version == 1:
        head = _HEADER_V1.pack(MAGIC, 1, scale_b, b.resolution, first, n)
    else:
        head = _HEADER.pack(MAGIC, VERSION, scale_b, width, b.resolution, first, n)
    return head + zlib.compress(b"".join(parts), _LEVEL)


def decode(raw: bytes) -> Buckets:
    """CorruptHistory when raw is not a history of version 1 or 2."""
    if len(raw) < _HEADER_V1.size or raw[:2] != MAGIC or raw[2] not in (1, 2):
        raise CorruptHistory("not a version 1 or 2 history")
    version = raw[2]
    if version == 1:
        magic, _, scale_b, resolution, first, n = _HEADER_V1.unpack_from(raw)
        width, size = 8, _HEADER_V1.size
    else:
        if len(raw) < _HEADER.size:
            raise CorruptHistory("history shorter than its header")
        magic, _, scale_b, width, resolution, first, n = _HEADER.unpack_from(raw)
        size = _HEADER.size
    if resolution == 0 or (scale_b > MAX_SCALE and scale_b != FLOAT_SCALE) or \
            width not in (4, 8) or (scale_b == FLOAT_SCALE and width != 8):
        raise CorruptHistory(f"not a version {version} history")
    want = n * (8 + 3 * width)
    try:
        body = zlib.decompress(raw[size:], bufsize=want + 1)
    except zlib.error as e:
        raise CorruptHistory(f"history body: {e}") from None
    if len(body) != want:
        raise CorruptHistory("history body has the wrong length")
    gaps = _unshuffle(body[: 4 * n], n, "<u4").astype(np.int64)
    count = _unshuffle(body[4 * n: 8 * n], n, "<u4").astype(np.int64)
    if n and count.min() < 1:
        raise CorruptHistory("a bucket without points")
    scale = None if scale_b == FLOAT_SCALE else int(scale_b)
    raw_cols = [_unshuffle(body[8 * n + width * n * j: 8 * n + width * n * (j + 1)], n,
                           f"<{'f' if scale is None else 'i'}{width}") for j in range(3)]
    index = first + np.cumsum(gaps)
    if scale is None:
        cols = [c.astype(np.float64) for c in raw_cols]
    else:
        ints = [c.astype(np.int64) for c in raw_cols]
        sm = np.cumsum(ints[0])
        if version == 1:
            mn, mx = np.cumsum(ints[1]), np.cumsum(ints[2])
        else:
            mean = np.floor_divide(sm, count)
            mx, mn = mean + ints[1], mean - ints[2]
        f = 10.0**scale
        cols = [sm.astype(np.float64) / f, mn.astype(np.float64) / f, mx.astype(np.float64) / f]
    return Buckets(int(resolution), index, count, cols[0], cols[1], cols[2], scale)


def downsample(t: FloatArray, v: FloatArray, resolution: int) -> tuple[FloatArray, FloatArray]:
    """(bucket starts, bucket means) of raw points."""
    b = bucketise(t, v, resolution)
    return b.timestamps, b.mean
