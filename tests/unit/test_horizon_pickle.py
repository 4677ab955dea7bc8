"""Graphite pickle frames: carbon's format, the restricted unpickler, framing errors."""

from __future__ import annotations

import os
import pickle
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from skyline.ingest.batch import Batch
from skyline.services.horizon.graphite_pickle import (
    ForbiddenGlobal,
    FrameReader,
    records_into,
    safe_loads,
)


def frame(obj: object, protocol: int = 2) -> bytes:
    body = pickle.dumps(obj, protocol=protocol)
    return struct.pack("!I", len(body)) + body


def points(batch: Batch) -> list[tuple[str, float, float]]:
    ts, vs = batch.arrays()
    return list(zip(batch.names, ts.tolist(), vs.tolist(), strict=True))


class CreatesFile:
    """Unpickling this with plain pickle.loads would create `path`."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


RECORDS = [("a.b", (1700000000, 1.5)), ("c.d", (1700000001.0, 2))]


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_carbon_frames_in_every_pickle_protocol(protocol):
    r, b = FrameReader(1 << 20), Batch()
    assert r.feed(frame(RECORDS, protocol) * 2, b)
    assert points(b) == [("a.b", 1700000000.0, 1.5), ("c.d", 1700000001.0, 2.0)] * 2
    assert b.units == 2 and not b.rejected


def test_frames_split_anywhere_across_reads():
    data = frame(RECORDS) + frame([("e", (3, 4))])
    r, b = FrameReader(1 << 20), Batch()
    for i in range(len(data)):
        assert r.feed(data[i:i + 1], b)
    assert [n for n, _, _ in points(b)] == ["a.b", "c.d", "e"]
    r.finish(b)
    assert not b.rejected


def test_a_global_is_never_resolved(tmp_path):
    target = tmp_path / "created-by-pickle"
    evil = pickle.dumps([("a", (1, 2)), CreatesFile(str(target))], protocol=2)
    with pytest.raises(ForbiddenGlobal) as e:
        safe_loads(evil)
    assert e.value.qualname in ("builtins.open", "io.open")
    r, b = FrameReader(1 << 20), Batch()
    keep_open = r.feed(frame([("ok", (1, 1))]) + struct.pack("!I", len(evil)) + evil
                       + frame([("after", (1, 1))]), b)
    assert not keep_open and r.refusal is not None and e.value.qualname in r.refusal
    assert b.rejected == {"forbidden_global": 1}
    assert [n for n, _, _ in points(b)] == ["ok"]  # nothing after the poisoned frame
    assert not os.path.exists(target)


@pytest.mark.parametrize("obj", [os.system, pickle.Pickler, range(3), {1, 2}.__class__])
def test_classes_and_functions_are_refused(obj):
    with pytest.raises(ForbiddenGlobal):
        safe_loads(pickle.dumps(obj, protocol=2))


def test_bytes_before_protocol_3_need_a_global_and_are_refused():
    # protocols 0-2 have no bytes opcode: they pickle bytes as a call of builtins.bytes
    with pytest.raises(ForbiddenGlobal):
        safe_loads(pickle.dumps([(b"name", (1, 2))], protocol=2))
    assert safe_loads(pickle.dumps([(b"name", (1, 2))], protocol=3)) == [(b"name", (1, 2))]


def test_frame_too_large_closes():
    r, b = FrameReader(1024), Batch()
    assert not r.feed(struct.pack("!I", 1025) + b"x" * 10, b)
    assert b.rejected == {"frame_too_large": 1}


def test_an_unreadable_frame_closes_the_connection():
    data = struct.pack("!I", 6) + b"\x80\x02junk" + frame([("after", (1, 2))])
    r, b = FrameReader(1 << 20), Batch()
    assert not r.feed(data, b)  # the stream is not one we understand: nothing more is read
    assert b.rejected == {"bad_frame": 1} and points(b) == []
    assert "not a readable pickle" in (r.refusal or "")


def test_bad_frames_and_records_are_counted_and_the_rest_kept():
    data = (frame({"a": 1})  # not a list
            + frame([("ok.1", (1, 2)), ("no.pair", 3), (b"bytes.name", ("4", b"5")),
                     ("bool", (True, 1)), (1, (1, 1)), ("ok.2", [5, 6]), ("big", (10**400, 1)),
                     ("three", (1, 2, 3)), ("none", (None, 1))], protocol=3))
    r, b = FrameReader(1 << 20), Batch()
    assert r.feed(data, b)
    assert points(b) == [("ok.1", 1.0, 2.0), ("bytes.name", 4.0, 5.0), ("ok.2", 5.0, 6.0)]
    assert b.rejected == {"bad_frame": 1, "bad_record": 6}
    r.feed(struct.pack("!I", 10) + b"abc", b)
    r.finish(b)
    assert b.rejected["incomplete_frame"] == 1


def test_records_into_fast_path_matches_record_by_record():
    fast, slow = Batch(), Batch()
    records = [(f"m.{i}", (1000 + i, i * 0.5)) for i in range(100)]
    records_into(records, fast)
    records_into(records + [("x", "bad")], slow)
    assert points(fast) == points(slow)[:100] and slow.rejected == {"bad_record": 1}


def test_a_huge_memo_index_is_refused_before_the_unpickler_allocates():
    # 2**31: 32 GiB for the unpickler's memo table; the pre-scan refuses it first
    body = b"}r" + struct.pack("<I", 1 << 31) + b"."
    r, b = FrameReader(1 << 20), Batch()
    assert not r.feed(struct.pack("!I", len(body)) + body + frame([("after", (1, 2))]), b)
    assert points(b) == [] and b.rejected["memo_index"] == 1


@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_arbitrary_frame_bodies_never_raise_and_the_next_frame_is_read(body):
    # no frame may allocate more than the pre-scan allows (memo indexes below the frame's
    # length), so random bodies need no filtering
    r, b = FrameReader(1 << 20), Batch()
    keep_open = r.feed(struct.pack("!I", len(body)) + body + frame([("after", (1, 2))]), b)
    if keep_open:  # a readable pickle (of anything): the next frame is read
        assert ("after", 1.0, 2.0) in points(b)
    else:  # refused, counted, said why; nothing after it
        assert set(b.rejected) & {"forbidden_global", "forbidden_opcode", "memo_index",
                                  "bad_frame"}
        assert r.refusal


_value = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=5),
              st.binary(max_size=5)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.tuples(inner, inner),
                            st.dictionaries(st.text(max_size=3), inner, max_size=2)),
    max_leaves=8)


def _expected(item: object) -> tuple[str, float, float] | None:
    """The spec, item by item: (name, (timestamp, value)) in tuples or lists, the name text
    (or UTF-8 bytes), the numbers anything float() takes but booleans and containers."""
    if type(item) not in (tuple, list) or len(item) != 2:  # type: ignore[arg-type]
        return None
    name, pair = item  # type: ignore[misc]
    if type(name) is bytes:
        try:
            name = name.decode()
        except UnicodeDecodeError:
            return None
    if type(name) is not str or type(pair) not in (tuple, list) or len(pair) != 2:
        return None
    try:
        ts, v = (float(x) if type(x) in (int, float, str, bytes) else None for x in pair)
    except (ValueError, OverflowError):
        return None
    if ts is None or v is None:
        return None
    return name, ts, v


def _comparable(p: tuple[str, float, float]) -> tuple[str, str, str]:
    return p[0], repr(p[1]), repr(p[2])  # NaN == NaN


@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=300)
@given(st.lists(st.one_of(_value, st.tuples(st.text(min_size=1, max_size=8),
                                            st.tuples(st.integers(0, 2**40), st.floats()))),
                max_size=20), st.integers(3, pickle.HIGHEST_PROTOCOL))
def test_any_builtin_structure_keeps_exactly_its_valid_records(items, protocol):
    r, b = FrameReader(1 << 20), Batch()
    assert r.feed(frame(items, protocol), b)
    expected = [e for e in map(_expected, items) if e is not None]
    assert list(map(_comparable, points(b))) == list(map(_comparable, expected))
    assert b.rejected.get("bad_record", 0) == len(items) - len(expected)
