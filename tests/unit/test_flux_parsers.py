"""The flux parsers, pure: Influx line protocol, the remote_write decoder, the JSON bodies,
OTLP conversion, body decompression. Property tests feed them arbitrary bytes: nothing but
their own typed errors may come out, and valid records mixed with garbage are still read."""

from __future__ import annotations

import gzip
import math
import struct

import cramjam
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.metrics.v1.metrics_pb2 import AggregationTemporality

from skyline.ingest.names import labelled_name, name_problem
from skyline.services.flux import body, jsonbody, lineproto, otlpconv, promwrite
from skyline.services.flux.naming import label_name, label_suffix

NOW = 1_800_000_000.0
PROPS = settings(max_examples=300, deadline=None,
                 suppress_health_check=[HealthCheck.too_slow])


# Influx line protocol ---------------------------------------------------------------------------
def _points(p):
    return list(zip(p.names, np.asarray(p.timestamps).tolist(), np.asarray(p.values).tolist(),
                    strict=True))


def test_line_protocol_types_tags_and_names():
    text = (b'cpu,host=web1,cpu=cpu0 usage_idle=99.5,usage_user=0.5 1800000000000000000\n'
            b'disk,path=/var used=42i,free=7u,ro=true,rw=F 1800000000000000000\n'
            b'sys uptime_format="1 day, 2:03",load1=0.25 1800000000000000000\n')
    p = lineproto.parse(text, "ns", NOW)
    assert p.errors == [] and p.total == 3
    assert p.ignored == {"string_field": 1}
    assert _points(p) == [
        ('cpu_usage_idle{cpu="cpu0",host="web1"}', NOW, 99.5),
        ('cpu_usage_user{cpu="cpu0",host="web1"}', NOW, 0.5),
        ('disk_used{path="/var"}', NOW, 42.0),
        ('disk_free{path="/var"}', NOW, 7.0),
        ('disk_ro{path="/var"}', NOW, 1.0),
        ('disk_rw{path="/var"}', NOW, 0.0),
        ("sys_load1", NOW, 0.25),
    ]
    assert p.index == [1, 1, 2, 2, 2, 2, 3]


@pytest.mark.parametrize(("precision", "ts"), [
    ("ns", "1800000000500000000"), ("n", "1800000000500000000"), ("us", "1800000000500000"),
    ("u", "1800000000500000"), ("ms", "1800000000500"), ("s", "1800000000"),
    ("m", "30000000"), ("h", "500000"),
])
def test_line_protocol_precision(precision, ts):
    p = lineproto.parse(f"m v=1 {ts}".encode(), precision, NOW)
    expected = NOW + 0.5 if precision in ("ns", "n", "us", "u", "ms") else NOW
    assert np.asarray(p.timestamps).tolist() == [pytest.approx(expected, abs=1e-6)]


def test_line_protocol_missing_timestamp_is_now_and_comments_are_skipped():
    p = lineproto.parse(b"# a comment\n\n  \nm v=1\r\n", "ns", NOW)
    assert _points(p) == [("m_v", NOW, 1.0)] and p.total == 1


def test_line_protocol_escapes():
    text = (rb'my\ meas\,x,tag\ key=a\,b\=c\ d f\=x=1,g="a \"quoted\" = , string" 1' + b"\n")
    p = lineproto.parse(text, "s", NOW)
    assert p.errors == [] and p.ignored == {"string_field": 1}
    tags = {"tag_key": "a,b=c d"}
    assert p.names == [labelled_name("my meas,x_f=x", tags)]


@pytest.mark.parametrize("line", [
    "m", "m v=", "m v=1 x", "m v=1 1 2", "m,t v=1", "m,t= v=1", "m v=1.2.3", "m v=nan",
    "m v=1x", "m v=-1u", 'm v="open', "m =1", ",t=a v=1", "m v=1 99999999999999999999",
])
def test_line_protocol_bad_lines_are_refused_alone(line):
    p = lineproto.parse(f"ok v=1 1800000000\n{line}\nok w=2 1800000000".encode(), "s", NOW)
    assert [r for _, r in p.errors] and [i for i, _ in p.errors] == [2]
    assert p.names == ["ok_v", "ok_w"] and p.total == 3


def test_label_suffix_is_the_one_spelling():
    tags = {"b": 'x"y', "a": "1\\2", "c": "line\nbreak"}
    assert "m" + label_suffix(tags) == labelled_name("m", tags)
    assert label_suffix({}) == ""
    assert [label_name(k) for k in ("ok_1", "service.name", "9lives", "a-b", "")] == [
        "ok_1", "service_name", "_9lives", "a_b", "_"]


_printable = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)


@PROPS
@given(garbage=st.lists(st.binary(max_size=60) | _printable.map(str.encode), max_size=8),
       good=st.lists(st.tuples(st.from_regex(r"[a-z]{1,8}", fullmatch=True),
                               st.floats(allow_nan=False, allow_infinity=False, width=32)),
                     min_size=1, max_size=5),
       precision=st.sampled_from(sorted(lineproto.PRECISIONS)))
def test_line_protocol_never_raises_and_keeps_valid_lines(garbage, good, precision):
    lines = [f"{m} v={v!r} 1800000000".encode() for m, v in good]
    # garbage may contain newlines: keep each valid line on its own line
    body_ = b"\n".join([*garbage, *lines]) + b"\n"
    p = lineproto.parse(body_, precision, NOW)
    got = set(zip(p.names, np.asarray(p.values).tolist(), strict=True))
    assert {(f"{m}_v", float(v)) for m, v in good} <= got


@PROPS
@given(st.binary(max_size=300))
def test_line_protocol_arbitrary_bytes(data):
    p = lineproto.parse(data, "ns", NOW)
    assert len(p.names) == len(p.index) == len(np.asarray(p.values))
    assert all(math.isfinite(t) for t in np.asarray(p.timestamps).tolist())


# remote_write -----------------------------------------------------------------------------------
def _write_request(series):
    req = promwrite.WriteRequest()
    for labels, samples in series:
        ts = req.timeseries.add()
        for k, v in labels.items():
            lab = ts.labels.add()
            lab.name, lab.value = k, v
        for t, v in samples:
            s = ts.samples.add()
            s.timestamp, s.value = t, v
    return req.SerializeToString()


STALE = struct.unpack("<d", struct.pack("<Q", promwrite.STALE_NAN_BITS))[0]


def test_remote_write_names_samples_and_stale_markers():
    data = _write_request([
        ({"__name__": "up", "job": "node", "instance": "h:9100", "empty": ""},
         [(1_800_000_000_000, 1.0), (1_800_000_015_500, 0.0)]),
        ({"job": "x"}, [(1_800_000_000_000, 3.0)]),
        ({"__name__": "gone"}, [(1_800_000_000_000, STALE)]),
        ({"__name__": "nan"}, [(1_800_000_000_000, float("nan"))]),
    ])
    p = promwrite.parse(data)
    up = 'up{instance="h:9100",job="node"}'
    assert p.total == 4 and p.errors == [(1, "no_metric_name")]
    assert p.ignored == {"stale_marker": 1}
    assert p.names == [up, up, "nan"] and p.index == [0, 0, 3]
    assert np.asarray(p.timestamps).tolist() == [NOW, NOW + 15.5, NOW]
    assert np.asarray(p.values)[:2].tolist() == [1.0, 0.0]


def test_remote_write_garbage_is_bad_protobuf():
    with pytest.raises(promwrite.BadProtobuf):
        promwrite.parse(b"\x0a\xff\xff\xff\xff\x0f")


@PROPS
@given(st.binary(max_size=300))
def test_remote_write_arbitrary_bytes(data):
    try:
        p = promwrite.parse(data)
    except promwrite.BadProtobuf:
        return
    assert len(p.names) == len(p.index) == len(np.asarray(p.values))
    for name in p.names:
        assert name_problem(name) in (None, "bad_name_chars", "empty_name_element",
                                      "name_too_long", "labels_too_long")


@PROPS
@given(st.lists(st.tuples(
    st.from_regex(r"[a-zA-Z_:][a-zA-Z0-9_:]{0,20}", fullmatch=True),
    st.dictionaries(st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]{0,10}", fullmatch=True)
                    .filter(lambda k: k != "__name__"), _printable, max_size=4),
    st.floats(allow_nan=False), st.integers(0, 2**62)), max_size=10))
def test_remote_write_round_trip(series):
    p = promwrite.parse(_write_request(
        [({"__name__": n, **labels}, [(t, v)]) for n, labels, v, t in series]))
    assert p.names == [labelled_name(n, {k: v for k, v in labels.items() if v})
                       for n, labels, _, _ in series]
    assert np.asarray(p.values).tolist() == [v for _, _, v, _ in series]


# JSON bodies -----------------------------------------------------------------------------------
def test_json_forms():
    key, items = jsonbody.items_of({"key": "k", "metrics": [{"metric": "a", "value": 1}]}, 450)
    assert key == "k" and len(items) == 1
    key, items = jsonbody.items_of({"metric": "a", "value": "2.5", "timestamp": "1800000000"},
                                   450)
    assert key is None
    p = jsonbody.parse_items(items, NOW)
    assert (p.names, p.timestamps, p.values) == (["a"], [NOW], [2.5])


def test_json_items_refused_alone():
    items = [{"metric": "a", "value": 1, "timestamp": NOW}, "x", {"metric": 5, "value": 1},
             {"metric": "b", "value": True}, {"metric": "c", "value": 1, "timestamp": "soon"},
             {"metric": "d", "value": "1e999999"}, {"metric": "e", "value": 10**400},
             {"metric": "f", "value": 2}]
    p = jsonbody.parse_items(items, NOW)
    assert p.errors == [(1, "bad_item"), (2, "bad_metric"), (3, "bad_value"),
                        (4, "bad_timestamp"), (6, "bad_value")]
    assert p.names == ["a", "d", "f"] and p.index == [0, 5, 7]
    assert p.timestamps == [NOW, NOW, NOW] and math.isinf(p.values[1])


@pytest.mark.parametrize("raw", [b"", b"[]", b"{}", b'{"metrics": 5}', b"\xff", b"[" * 100000,
                                 b'{"metric"'])
def test_json_bad_bodies(raw):
    with pytest.raises(jsonbody.BadBody):
        jsonbody.items_of(jsonbody.load(raw), 450)


def test_json_too_many_keeps_the_key():
    with pytest.raises(jsonbody.TooMany) as e:
        jsonbody.items_of({"key": "k", "metrics": [{}] * 3}, 2)
    assert e.value.key == "k"


_json = st.recursive(st.none() | st.booleans() | st.floats() | st.integers() | _printable,
                     lambda children: st.lists(children, max_size=4)
                     | st.dictionaries(_printable, children, max_size=4), max_leaves=20)


@PROPS
@given(st.binary(max_size=200) | _json.map(lambda v: __import__("json").dumps(v).encode()))
def test_json_arbitrary_bodies(raw):
    try:
        _, items = jsonbody.items_of(jsonbody.load(raw), 450)
    except (jsonbody.BadBody, jsonbody.TooMany):
        return
    p = jsonbody.parse_items(items, NOW)
    assert len(p.names) + len(p.errors) == len(items)


@PROPS
@given(st.lists(_json, max_size=6), st.lists(st.tuples(
    st.from_regex(r"[a-z]{1,8}(\.[a-z]{1,8}){0,2}", fullmatch=True),
    st.floats(allow_nan=False, allow_infinity=False)), max_size=6))
def test_json_valid_items_among_garbage_are_read(garbage, good):
    items = [*garbage, *({"metric": m, "value": v, "timestamp": NOW} for m, v in good)]
    p = jsonbody.parse_items(items, NOW)
    got = list(zip(p.names, p.values, strict=True))
    assert got[len(got) - len(good):] == [(m, float(v)) for m, v in good]


# OTLP -------------------------------------------------------------------------------------------
def _otlp(kind, points, *, monotonic=True,
          temporality=AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE, name="m"):
    req = ExportMetricsServiceRequest()
    rm = req.resource_metrics.add()
    for k, v in (("service.name", "svc"), ("process.pid", "42")):
        a = rm.resource.attributes.add()
        a.key, a.value.string_value = k, v
    metric = rm.scope_metrics.add().metrics.add()
    metric.name = name
    data = getattr(metric, kind)
    if kind == "sum":
        data.is_monotonic = monotonic
        data.aggregation_temporality = temporality
    for start, t, v, attrs in points:
        dp = data.data_points.add()
        dp.start_time_unix_nano, dp.time_unix_nano = start, t
        if isinstance(v, int):
            dp.as_int = v
        else:
            dp.as_double = v
        for k, val in attrs.items():
            a = dp.attributes.add()
            a.key, a.value.string_value = k, val
    return req


S = 10**9
KEEP = frozenset({"service.name"})


def _convert(req, state):
    p = otlpconv.convert(req, state, KEEP)
    return p, list(zip(p.names, p.timestamps, p.values, strict=True))


def test_otlp_gauge_names_and_labels():
    state = otlpconv.Cumulative(1000, 0)
    req = _otlp("gauge", [(0, 1800 * S * 10**6, 2.5, {"http.route": "/x"})])
    p, pts = _convert(req, state)
    assert pts == [('m{http_route="/x",service_name="svc"}', NOW, 2.5)]


def test_otlp_cumulative_counter_becomes_deltas_with_resets():
    started = 100 * S
    state = otlpconv.Cumulative(1000, started)
    name = 'm{service_name="svc"}'

    def send(start, t, v):
        return _convert(_otlp("sum", [(start, t, v, {})]), state)

    # a counter that started before this process: its first point is only a baseline
    p, pts = send(50 * S, 110 * S, 40)
    assert pts == [] and p.ignored == {"counter_baseline": 1}
    assert send(50 * S, 120 * S, 45)[1] == [(name, 120.0, 5.0)]
    # the same export again (a retry) is refused, not stored as a 0 over the 5
    p, pts = send(50 * S, 120 * S, 45)
    assert pts == [] and p.errors == [(0, "out_of_order")]
    # a decrease is a reset: the value is the increase since
    assert send(50 * S, 130 * S, 3)[1] == [(name, 130.0, 3.0)]
    # a new start time is a reset too, even when the value went up
    assert send(125 * S, 140 * S, 10)[1] == [(name, 140.0, 10.0)]
    assert send(125 * S, 150 * S, 10)[1] == [(name, 150.0, 0.0)]
    # a counter that started after this process counts from its first point
    other = otlpconv.Cumulative(1000, started)
    p = otlpconv.convert(_otlp("sum", [(started + S, 200 * S, 7.5, {})]), other, KEEP)
    assert p.values == [7.5]


def test_otlp_other_sums_are_stored_as_they_are():
    state = otlpconv.Cumulative(1000, 0)
    updown = _otlp("sum", [(1, 10 * S, -4, {})], monotonic=False)
    delta = _otlp("sum", [(1, 10 * S, 6, {})],
                  temporality=AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA)
    assert _convert(updown, state)[0].values == [-4.0]
    assert _convert(delta, state)[0].values == [6.0]
    assert len(state) == 0


def test_otlp_histograms_are_refused_and_state_is_bounded():
    req = _otlp("histogram", [])
    h = req.resource_metrics[0].scope_metrics[0].metrics[0].histogram
    h.data_points.add()
    h.data_points.add()
    g = req.resource_metrics[0].scope_metrics[0].metrics.add()
    g.name = "g"
    g.gauge.data_points.add(time_unix_nano=S, as_double=1.0)
    g.gauge.data_points.add(time_unix_nano=S, flags=1)
    p = otlpconv.convert(req, otlpconv.Cumulative(1000, 0), KEEP)
    assert p.errors == [(0, "histogram"), (1, "histogram")] and p.index == [2] and p.total == 4
    assert p.ignored == {"no_recorded_value": 1}

    state = otlpconv.Cumulative(2, 0)
    for i in range(5):
        state.delta(f"s{i}", 1, S, 1.0)
    assert len(state) == 2


@PROPS
@given(st.binary(max_size=300))
def test_otlp_arbitrary_bytes(data):
    from google.protobuf.message import DecodeError

    try:
        req = otlpconv.parse(data)
    except DecodeError:
        return
    p = otlpconv.convert(req, otlpconv.Cumulative(1000, 0), KEEP)
    assert len(p.names) == len(p.index) == len(p.values)


# bodies ----------------------------------------------------------------------------------------
def test_gzip_and_snappy_within_limits():
    data = b"x" * 5000
    assert body.decode(gzip.compress(data), "gzip", 5000) == data
    assert body.decode(gzip.compress(data[:10]) + gzip.compress(data[10:]), "gzip", 5000) == data
    with pytest.raises(body.BodyTooLarge):
        body.decode(gzip.compress(data), "gzip", 4999)
    packed = bytes(cramjam.snappy.compress_raw(data))
    assert body.decode(packed, "snappy", 5000) == data
    with pytest.raises(body.BodyTooLarge):
        body.decode(packed, "snappy", 4999)
    for enc, bad in (("gzip", b"not gzip"), ("gzip", gzip.compress(data)[:-10]),
                     ("snappy", b"\xff\xff\xff\xff\xff\xff"), ("snappy", b"\x10abc")):
        with pytest.raises(body.BadEncoding):
            body.decode(bad, enc, 5000)
    with pytest.raises(body.BadEncoding):
        body.decode(b"", "br", 10)


@PROPS
@given(st.binary(max_size=200), st.sampled_from(["gzip", "snappy"]))
def test_decoders_arbitrary_bytes(data, enc):
    try:
        out = body.decode(data, enc, 10_000)
    except (body.BadEncoding, body.BodyTooLarge):
        return
    assert len(out) <= 10_000


_OTLP_KEYS = st.sampled_from([
    "resourceMetrics", "scopeMetrics", "metrics", "name", "gauge", "sum", "histogram",
    "dataPoints", "asDouble", "asInt", "timeUnixNano", "startTimeUnixNano", "attributes", "key",
    "value", "stringValue", "intValue", "arrayValue", "values", "kvlistValue", "isMonotonic",
    "aggregationTemporality", "resource", "flags"])
_OTLP_LEAF = (st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats()
              | st.text(max_size=5))


@PROPS
@given(st.recursive(_OTLP_LEAF, lambda c: st.lists(c, max_size=3)
                    | st.dictionaries(_OTLP_KEYS, c, max_size=4), max_leaves=25))
def test_otlp_json_shaped_documents(doc):
    import json

    from google.protobuf import json_format

    try:
        req = otlpconv.parse_json(json.dumps(doc).encode())
    except (json_format.ParseError, ValueError, RecursionError):
        return
    p = otlpconv.convert(req, otlpconv.Cumulative(1000, 0), KEEP)
    assert len(p.names) == len(p.index) == len(p.values)
