"""msgpack datagrams: upstream's [name, [timestamp, value]]."""

from __future__ import annotations

import msgpack
from hypothesis import given
from hypothesis import strategies as st

from skyline.ingest.batch import Batch
from skyline.services.horizon.msgpack_udp import parse_datagram


def points(batch: Batch) -> list[tuple[str, float, float]]:
    ts, vs = batch.arrays()
    return list(zip(batch.names, ts.tolist(), vs.tolist(), strict=True))


def test_upstream_datagram_and_several_in_one():
    b = Batch()
    parse_datagram(msgpack.packb(["a.b", [1700000000, 1.5]]), b)
    parse_datagram(msgpack.packb(("c", (1, 2))) + msgpack.packb([b"d", [3.5, -4]]), b)
    assert points(b) == [("a.b", 1700000000.0, 1.5), ("c", 1.0, 2.0), ("d", 3.5, -4.0)]
    assert not b.rejected


def test_bad_datagrams_and_records_are_counted():
    b = Batch()
    for bad in (b"\xc1", msgpack.packb(["a", [1, 2]])[:-1]):  # reserved byte; cut short
        parse_datagram(bad, b)
    for record in (["a", 1], ["a", [1]], [1, [1, 2]], ["a", ["1", 2]], ["a", [True, 2]],
                   {"a": [1, 2]}, ["a", [2**64 - 1, 2], 3], [b"\xff", [1, 2]]):
        parse_datagram(msgpack.packb(record), b)
    parse_datagram(msgpack.packb(["ok", [1, 2]]) + b"\xc1", b)  # good, then garbage
    parse_datagram(msgpack.packb(["ok2", [1, 2]]) + msgpack.packb(["x", [1, 2]])[:-2], b)
    assert b.names == ["ok", "ok2"]
    assert b.rejected == {"bad_datagram": 4, "bad_record": 8}


@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_raise(data):
    b = Batch()
    parse_datagram(data, b)
    assert len(b.arrays()[0]) == len(b.names)


@given(st.lists(st.tuples(st.text(min_size=1, max_size=10), st.integers(0, 2**40),
                          st.floats(allow_nan=False)), max_size=10))
def test_valid_records_are_all_kept(records):
    b = Batch()
    parse_datagram(b"".join(msgpack.packb([n, [t, v]]) for n, t, v in records), b)
    assert points(b) == [(n, float(t), v) for n, t, v in records]


@given(st.lists(st.one_of(
    st.binary(max_size=60).map(lambda junk: (junk, None)),
    st.tuples(st.text(min_size=1, max_size=10), st.integers(0, 2**40), st.floats())
    .map(lambda r: (msgpack.packb([r[0], [r[1], r[2]]]), r)),
), max_size=30))
def test_valid_datagrams_among_garbage_are_all_kept(datagrams):
    b = Batch()
    for data, _ in datagrams:
        parse_datagram(data, b)
    got = iter((n, repr(t), repr(v)) for n, t, v in points(b))
    for _, record in datagrams:
        if record is not None:  # in order, among whatever the junk happened to hold
            n, t, v = record
            assert any(g == (n, repr(float(t)), repr(v)) for g in got)
