"""The long history's buckets and their encoding (store/history.py)."""

from __future__ import annotations

import numpy as np
import pytest

from skyline.store import history as hist

R = 600


def _same(a: hist.Buckets, b: hist.Buckets) -> None:
    assert a.resolution == b.resolution
    for f in ("index", "count", "sum", "min", "max"):
        x, y = getattr(a, f), getattr(b, f)
        assert x.shape == y.shape, f
        assert np.array_equal(x.view(np.uint64) if x.dtype == np.float64 else x,
                              y.view(np.uint64) if y.dtype == np.float64 else y), f


def test_bucketise_aggregates_each_epoch_aligned_bucket():
    t = np.array([0.0, 59, 599, 600, 1800, 1799.5])
    v = np.array([1.0, 3, 2, 10, 5, np.nan])
    b = hist.bucketise(t, v, R)
    assert b.index.tolist() == [0, 1, 3]  # the NaN value is left out, bucket 2 is empty
    assert b.count.tolist() == [3, 1, 1]
    assert b.sum.tolist() == [6.0, 10.0, 5.0]
    assert b.min.tolist() == [1.0, 10.0, 5.0]
    assert b.max.tolist() == [3.0, 10.0, 5.0]
    assert b.mean.tolist() == [2.0, 10.0, 5.0]


@pytest.mark.parametrize("kind", ["int", "dec2", "float", "huge"])
def test_encode_decode_is_exact(kind):
    rng = np.random.default_rng(7)
    t = np.arange(10080) * 60.0 + 1.7e9
    v = {"int": rng.poisson(200, t.size).astype(float),
         "dec2": np.round(rng.normal(50, 5, t.size), 2),
         "float": rng.normal(50, 5, t.size),
         "huge": rng.normal(0, 1e300, t.size)}[kind]
    b = hist.bucketise(t, v, R)
    raw = hist.encode(b)
    _same(hist.decode(raw), b)
    _same(hist.decode(hist.encode(b, version=1)), b)  # histories written before still read
    if kind in ("int", "dec2"):  # decimals are stored as scaled integers: small
        assert len(raw) < 5.5 * 1024
        assert len(raw) < len(hist.encode(b, version=1))


@pytest.mark.parametrize("values", [
    [2.0**40, -(2.0**40), 3.0],  # extremes too far from the mean for int32: int64 columns
    [0.0, 1e-6, 123456.789012],  # six digits after the point
    [-5.0, -5.0, -4.0],  # negative means round down (floor) on both sides
    [7.0]])
def test_version_2_is_exact_whatever_the_integer_width(values):
    t = np.array([0.0, 10.0, 20.0, 600.0])[: len(values)]
    b = hist.bucketise(t, np.array(values), R)
    raw = hist.encode(b)
    assert raw[2] == 2
    _same(hist.decode(raw), b)


def test_decimal_sums_merge_without_rounding():
    # 0.1 + 0.2 is not 0.3 in floats; a history of decimals adds them as integers
    a = hist.bucketise(np.array([0.0]), np.array([0.1]), R)
    b = hist.bucketise(np.array([1.0]), np.array([0.2]), R)
    m = hist.merge(a, b)
    assert m.sum.tolist() == [0.3] and m.count.tolist() == [2]
    assert m.min.tolist() == [0.1] and m.max.tolist() == [0.2]
    _same(hist.decode(hist.encode(m)), m)


def test_merge_drops_buckets_before_the_span_and_merges_repeats():
    old = hist.bucketise(np.array([0.0, 600, 1200]), np.array([1.0, 2, 3]), R)
    new = hist.bucketise(np.array([1300.0, 1800]), np.array([7.0, 4]), R)
    m = hist.merge(old, new, first_index=1)
    assert m.index.tolist() == [1, 2, 3]
    assert m.count.tolist() == [1, 2, 1]
    assert m.sum.tolist() == [2.0, 10.0, 4.0]
    assert m.max.tolist() == [2.0, 7.0, 4.0]


def test_merge_rebuckets_a_history_kept_at_another_resolution():
    old = hist.bucketise(np.arange(6) * 600.0, np.arange(6.0), 600)
    new = hist.bucketise(np.array([3600.0]), np.array([9.0]), 1800)
    m = hist.merge(old, new)
    assert m.resolution == 1800
    assert m.index.tolist() == [0, 1, 2]
    assert m.sum.tolist() == [3.0, 12.0, 9.0]
    assert m.count.tolist() == [3, 3, 1]


@pytest.mark.parametrize("raw", [b"", b"SH", b"XX" + bytes(40), b"SH\x01\x00" + bytes(16) + b"junk"])
def test_corrupt_history_is_refused(raw):
    with pytest.raises(hist.CorruptHistory):
        hist.decode(raw)


def test_truncated_body_is_refused():
    b = hist.bucketise(np.arange(100) * 600.0, np.arange(100.0), R)
    raw = hist.encode(b)
    with pytest.raises(hist.CorruptHistory):
        hist.decode(raw[:-5])
