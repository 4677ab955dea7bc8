import numpy as np

from skyline.store.series import POINT_SIZE, decode, encode, encode_point, normalise


def test_encode_decode_round_trip():
    t = np.array([3.0, 1.5, 2.0])
    v = np.array([1.0, -2.5, np.inf])
    raw = encode(t, v)
    assert len(raw) == 3 * POINT_SIZE
    t2, v2, extra = decode(raw)
    assert extra == 0
    np.testing.assert_array_equal(t2, t)
    np.testing.assert_array_equal(v2, v)


def test_encode_point_matches_encode():
    assert encode_point(10.0, 2.0) == encode(np.array([10.0]), np.array([2.0]))


def test_decode_reports_trailing_bytes_and_keeps_whole_points():
    raw = encode_point(1.0, 2.0) + b"\x01\x02\x03"
    t, v, extra = decode(raw)
    assert extra == 3
    assert t.tolist() == [1.0] and v.tolist() == [2.0]


def test_decode_empty_and_none():
    for raw in (None, b""):
        t, v, extra = decode(raw)
        assert t.size == 0 and v.size == 0 and extra == 0


def test_normalise_sorts_and_last_write_wins():
    t = np.array([5.0, 1.0, 3.0, 1.0, 5.0])
    v = np.array([50.0, 10.0, 30.0, 11.0, 51.0])
    t2, v2 = normalise(t, v)
    assert t2.tolist() == [1.0, 3.0, 5.0]
    assert v2.tolist() == [11.0, 30.0, 51.0]


def test_normalise_since_and_non_finite_timestamps():
    t = np.array([1.0, np.nan, 3.0, 4.0])
    v = np.array([1.0, 2.0, 3.0, 4.0])
    t2, v2 = normalise(t, v, since=2.0)
    assert t2.tolist() == [3.0, 4.0]
    assert v2.tolist() == [3.0, 4.0]


def test_normalise_sorted_input_unchanged():
    t = np.arange(10.0)
    v = t * 2
    t2, v2 = normalise(t, v)
    np.testing.assert_array_equal(t2, t)
    np.testing.assert_array_equal(v2, v)
