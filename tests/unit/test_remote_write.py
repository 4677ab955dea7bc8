"""The remote_write encoder (skyline.remote.write): what it writes parses as a WriteRequest
with the same labels, timestamps and values, whatever the varint length of a timestamp; and
flux's own remote_write parser reads it back."""

from __future__ import annotations

import cramjam
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from skyline.remote.prompb import WriteRequest
from skyline.remote.write import WriteSeries, batches, compress, encode, encode_samples
from skyline.services.flux import promwrite


def _parse(data: bytes) -> list[tuple[dict[str, str], list[int], list[float]]]:
    req = WriteRequest()
    req.ParseFromString(data)
    return [({lab.name: lab.value for lab in s.labels}, [x.timestamp for x in s.samples],
             [x.value for x in s.samples]) for s in req.timeseries]


def test_series_round_trip_through_the_protobuf_parser():
    a = WriteSeries({"metric": "web.host1.rps", "__name__": "skyline_anomaly_score"},
                    np.array([1_800_000_000.0, 1_800_000_060.0]), np.array([0.25, 0.95]))
    b = WriteSeries({"__name__": "skyline_anomaly", "metric": 'a{b="c"}', "source": "analyzer",
                     "status": "anomalous"}, np.array([0.001, 1.5]), np.array([-1.0, 1e300]))
    got = _parse(encode([a, b]))
    assert got[0] == ({"__name__": "skyline_anomaly_score", "metric": "web.host1.rps"},
                      [1_800_000_000_000, 1_800_000_060_000], [0.25, 0.95])
    assert got[1][1:] == ([1, 1500], [-1.0, 1e300])
    # labels go out sorted by name, as Prometheus requires
    req = WriteRequest()
    req.ParseFromString(encode([a]))
    assert [lab.name for lab in req.timeseries[0].labels] == ["__name__", "metric"]


@pytest.mark.parametrize("ms", [0, 1, 127, 128, 16383, 16384, 2**35 - 1, 2**35, 2**49,
                                2**53, 2**56, 2**62])
def test_every_varint_length(ms):
    data, ends = encode_samples(np.array([ms / 1000.0]), np.array([3.5]))
    assert ends.tolist() == [len(data)]
    got = _parse(b"\x0a" + bytes([len(data)]) + data)
    assert got == [({}, [ms], [3.5])]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2**53), st.floats(allow_nan=False)), min_size=1,
                max_size=50))
def test_any_samples_round_trip(points):
    ts = np.array([p[0] for p in points], dtype=np.float64) / 1000.0
    vs = np.array([p[1] for p in points], dtype=np.float64)
    got = _parse(encode([WriteSeries({"__name__": "x"}, ts, vs)]))
    assert got[0][1] == np.round(ts * 1000).astype(np.int64).tolist()
    assert got[0][2] == vs.tolist()


def test_flux_reads_what_the_sender_writes():
    s = WriteSeries({"__name__": "skyline_anomaly_score", "metric": "a.b"},
                    np.array([1_800_000_000.0, 1_800_000_060.0]), np.array([0.5, 0.75]))
    body = compress(encode([s]))
    points = promwrite.parse(bytes(cramjam.snappy.decompress_raw(body)))
    assert points.names == ['skyline_anomaly_score{metric="a.b"}'] * 2
    assert points.timestamps.tolist() == [1_800_000_000.0, 1_800_000_060.0]
    assert points.values.tolist() == [0.5, 0.75]


def test_batches_cut_series_at_the_sample_limit_in_order():
    long = WriteSeries({"__name__": "a"}, np.arange(7.0), np.arange(7.0), key="a")
    short = WriteSeries({"__name__": "b"}, np.arange(2.0), np.arange(2.0), key="b")
    out = batches([long, short], 3)
    assert [[(p.key, p.timestamps.tolist()) for p in b] for b in out] == [
        [("a", [0.0, 1.0, 2.0])], [("a", [3.0, 4.0, 5.0])], [("a", [6.0]), ("b", [0.0, 1.0])]]


def test_nothing_to_send_encodes_to_nothing():
    assert encode([]) == b""
