"""Graphite plaintext parsing: the whole-buffer fast path, the per-line fallback, framing."""

from __future__ import annotations

import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from skyline.ingest.batch import Batch
from skyline.ingest.plaintext import LineReader, parse_datagram, parse_lines, tagged_name


def points(batch: Batch) -> list[tuple[str, float, float]]:
    ts, vs = batch.arrays()
    return list(zip(batch.names, ts.tolist(), vs.tolist(), strict=True))


def parsed(data: bytes) -> Batch:
    b = Batch()
    parse_lines(data, b)
    return b


def test_well_formed_buffer():
    b = parsed(b"a.b 1.5 1700000000\nc.d -2e3 1700000001.5\n")
    assert points(b) == [("a.b", 1700000000.0, 1.5), ("c.d", 1700000001.5, -2000.0)]
    assert b.units == 2 and not b.rejected


def test_integer_timestamps_read_from_the_buffer():
    # same-width integers take the vectorised path; anything else float()
    b = parsed(b"a 1 1700000000\nb 2 1700000009\nc 3 0000000042\n")
    assert points(b) == [("a", 1700000000.0, 1.0), ("b", 1700000009.0, 2.0), ("c", 42.0, 3.0)]
    b = parsed(b"a 1 1700000000\nb 2 17000000x9\nc 3 1.70000001\n")
    assert [n for n, _, _ in points(b)] == ["a", "c"] and b.rejected == {"bad_number": 1}
    assert points(parsed(b"a 1 999999999999999\n")) == [("a", 999999999999999.0, 1.0)]
    assert points(parsed(b"a 1 1234567890123456\n")) == [("a", 1234567890123456.0, 1.0)]


@given(st.integers(1, 15), st.lists(st.integers(0, 10**15 - 1), min_size=1, max_size=20))
def test_integer_timestamps_of_any_width_are_exact(width, stamps):
    stamps = [s % 10**width for s in stamps]
    data = b"".join(b"m 1 %0*d\n" % (width, s) for s in stamps)
    assert [t for _, t, _ in points(parsed(data))] == [float(s) for s in stamps]


def test_good_lines_survive_garbage_and_each_bad_line_is_counted_by_reason():
    data = (b"ok.one 1 100\n"
            b"too.few 5\n"
            b"too many fields 1 2\n"
            b"\n   \n"
            b"bad.value abc 100\n"
            b"bad.ts 1 yesterday\n"
            b"\xff\xfe.name 1 100\n"
            b"ok.two\t2\t200\r\n"
            b"  ok.three   3 300  \n"
            b"ok.tagged;dc=eu;host=h1 4 400\n"
            b"bad.tags;novalue 5 500\n")
    b = parsed(data)
    assert points(b) == [("ok.one", 100.0, 1.0), ("ok.two", 200.0, 2.0),
                         ("ok.three", 300.0, 3.0), ('ok.tagged{dc="eu",host="h1"}', 400.0, 4.0)]
    assert b.rejected == {"bad_line": 2, "bad_number": 2, "bad_encoding": 1, "bad_tags": 1}
    assert b.units == 10  # blank lines are not counted as lines


def test_nan_and_inf_parse_and_are_left_to_the_write_path():
    b = parsed(b"a nan 1\nb inf 2\n")
    assert math.isnan(points(b)[0][2]) and points(b)[1][2] == math.inf


def test_tagged_names():
    assert tagged_name("cpu;host=a;dc=eu") == 'cpu{dc="eu",host="a"}'
    assert tagged_name("cpu;data-center=eu-1;9x=y") == 'cpu{_9x="y",data_center="eu-1"}'
    assert tagged_name('cpu;q=say "hi"') == 'cpu{q="say \\"hi\\""}'
    for bad in ("cpu;host", "cpu;=a", "cpu;a=", "cpu;"):
        assert tagged_name(bad) is None
    b = parsed(b"x;k=v 1 2\ny;k 1 2\nz 1 2\n")  # fast path with tags
    assert [n for n, _, _ in points(b)] == ['x{k="v"}', "z"] and b.rejected == {"bad_tags": 1}


def test_reader_joins_lines_split_across_reads():
    r, b = LineReader(1024), Batch()
    for piece in (b"a.b 1", b" 10\nc", b".d 2 2", b"0\n", b"e 3 30\nf 4"):
        r.feed(piece, b)
    assert points(b) == [("a.b", 10.0, 1.0), ("c.d", 20.0, 2.0), ("e", 30.0, 3.0)]
    r.finish(b)  # "f 4" may be cut short: counted, not guessed at
    assert b.rejected == {"incomplete_line": 1} and len(b) == 3


def test_overlong_line_is_skipped_to_its_end_and_counted():
    r, b = LineReader(256), Batch()
    r.feed(b"a 1 1\n" + b"x" * 200, b)
    r.feed(b"y" * 200, b)  # over the limit without a newline
    r.feed(b"z" * 5000 + b" 1 1\nb 2 2\n", b)
    assert points(b) == [("a", 1.0, 1.0), ("b", 2.0, 2.0)]
    assert b.rejected == {"line_too_long": 1}


def test_complete_lines_over_the_limit_are_counted_on_both_paths():
    for sep in (b" ", b"\t"):  # the fast path, then the per-line one
        b = Batch()
        parse_lines(b"a 1 1\n" + b"x" * 300 + sep + b"1 1\nb 2 2\n", b, max_line=256)
        assert [n for n, _, _ in points(b)] == ["a", "b"] and b.rejected == {"line_too_long": 1}
    b = Batch()
    parse_lines(b"a" * 252 + b" 1 1\n", b, max_line=256)  # 256 bytes exactly
    assert len(b) == 1


def test_datagram_last_newline_is_optional():
    b = Batch()
    parse_datagram(b"a 1 1\nb 2 2", b)
    assert [n for n, _, _ in points(b)] == ["a", "b"]


# properties ------------------------------------------------------------------------------------
_name = st.from_regex(r"[A-Za-z0-9_.\-]{1,30}", fullmatch=True)
_num = st.one_of(st.integers(-10**12, 10**12), st.floats(allow_nan=False, allow_infinity=False))
_sep = st.sampled_from([b" ", b"  ", b"\t", b" \t "])
_line = st.tuples(_name, _num, st.integers(0, 2_000_000_000), _sep, _sep, _sep)


def _encode(name: str, value: float, ts: int, s1: bytes, s2: bytes, trail: bytes) -> bytes:
    return name.encode() + s1 + repr(value).encode() + s2 + str(ts).encode() + trail


@given(st.lists(_line, max_size=30))
def test_fast_and_slow_paths_agree(lines):
    """Any spacing gives the same points as single spaces (the fast path) would."""
    plain = b"".join(_encode(n, v, t, b" ", b" ", b"") + b"\n" for n, v, t, *_ in lines)
    spaced = b"".join(_encode(n, v, t, s1, s2, s3 if i % 2 else b"") + b"\r\n"
                      for i, (n, v, t, s1, s2, s3) in enumerate(lines))
    expect = [(n, float(t), float(v)) for n, v, t, *_ in lines]
    assert points(parsed(plain)) == expect
    assert points(parsed(spaced)) == expect


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2000))
def test_arbitrary_bytes_never_raise(data):
    b = parsed(data)
    ts, vs = b.arrays()
    assert len(ts) == len(vs) == len(b.names)
    r = LineReader(256)
    r.feed(data, Batch())
    r.finish(Batch())


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(
    st.binary(max_size=80).map(lambda g: ("junk", g.replace(b"\n", b""))),
    _line.map(lambda x: ("good", x)),
), max_size=40), st.lists(st.integers(1, 300), min_size=1, max_size=10))
def test_valid_lines_among_garbage_are_all_kept(items, cuts):
    """Garbage lines cost only themselves, whatever the reads' boundaries."""
    data = b""
    good = []
    for kind, x in items:
        if kind == "junk":
            data += x + b"\n"
        else:
            n, v, t, *_ = x
            data += _encode(n, v, t, b" ", b" ", b"") + b"\n"
            good.append((n, float(t), float(v)))
    r, b = LineReader(512), Batch()
    pos, i = 0, 0
    while pos < len(data):
        step = cuts[i % len(cuts)]
        r.feed(data[pos:pos + step], b)
        pos, i = pos + step, i + 1
    r.finish(b)
    got = iter(points(b))
    # the good lines, in order, are a subsequence of what was parsed (junk may parse too)
    assert all(any(g == p for p in got) for g in good)
