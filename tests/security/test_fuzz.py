"""Fuzzing every protocol of a real `skyline run` at a bounded budget: each listener and flux
route gets mutated and generated input (seeded, so a failure replays), then a good point; at
the end every good point must be stored, the health probe must never have waited long, no
parser may have hit an internal error, and the process must still run.

SKYLINE_FUZZ_EXAMPLES (default 150 per protocol) scales the budget: CI runs the default,
a longer local run can take thousands.
"""

from __future__ import annotations

import gzip
import json
import os
import pickle
import random
import socket
import struct
import time
from collections.abc import Callable

import cramjam
import httpx
import msgpack
import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)

from skyline.services.flux.promwrite import WriteRequest
from tests.security.harness import FREEZE_BOUND, Probe, Skyline, report

KEY = "fuzzfuzzfuzzfuzzfuzzfuzzfuzzfuzz"
EXAMPLES = int(os.environ.get("SKYLINE_FUZZ_EXAMPLES", "150"))
NOW = int(time.time())


def mutate(rng: random.Random, seeds: list[bytes]) -> bytes:
    """One input: a seed, changed by a few random byte-level mutations (flip, insert, delete,
    repeat a slice, cut, splice another seed), or plain random bytes."""
    if rng.random() < 0.1:
        return rng.randbytes(rng.randrange(0, 300))
    data = bytearray(rng.choice(seeds))
    for _ in range(rng.randrange(1, 6)):
        op = rng.randrange(6)
        pos = rng.randrange(len(data) + 1)
        if op == 0 and data:
            data[min(pos, len(data) - 1)] ^= 1 << rng.randrange(8)
        elif op == 1:
            data[pos:pos] = rng.choice([b"\x00", b"\xff", b"\n", b" ", b"{", b"\"", b"\\",
                                        b"9" * 40, b"-", b".", b"e308", b"nan", b"]]]]]"])
        elif op == 2 and data:
            del data[pos:pos + rng.randrange(1, 8)]
        elif op == 3 and data:
            chunk = data[pos:pos + rng.randrange(1, 32)]
            data[pos:pos] = chunk * rng.randrange(1, 50)
        elif op == 4:
            del data[pos:]
        else:
            other = rng.choice(seeds)
            data[pos:] = other[rng.randrange(len(other) + 1):]
    return bytes(data)


def _pickle(points: list) -> bytes:
    body = pickle.dumps(points, protocol=2)
    return struct.pack("!I", len(body)) + body


def _remote_write(name: str, value: float) -> bytes:
    req = WriteRequest()
    s = req.timeseries.add()
    lab = s.labels.add()
    lab.name, lab.value = "__name__", name
    smp = s.samples.add()
    smp.value, smp.timestamp = value, NOW * 1000
    return bytes(cramjam.snappy.compress_raw(req.SerializeToString()))


def _otlp(name: str, value: float) -> bytes:
    req = ExportMetricsServiceRequest()
    m = req.resource_metrics.add().scope_metrics.add().metrics.add()
    m.name = name
    dp = m.gauge.data_points.add()
    dp.as_double, dp.time_unix_nano = value, NOW * 10**9
    return req.SerializeToString()


@pytest.fixture(scope="module")
def sky(tmp_path_factory):
    s = Skyline(tmp_path_factory.mktemp("fuzz"), SKYLINE_FLUX_API_KEYS=f'{{"{KEY}": ""}}',
                SKYLINE_STATSD__FLUSH_INTERVAL="1")
    yield s
    s.stop()


def _tcp(port: int, data: bytes) -> None:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
            c.sendall(data)
    except OSError:
        pass  # closed by the server on a hostile frame: expected


def _udp(port: int, data: bytes) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        u.sendto(data[:65000], ("127.0.0.1", port))


def _http(client: httpx.Client, path: str, headers: dict[str, str]) -> Callable[[bytes], int]:
    def post(body: bytes) -> int:
        return client.post(path, content=body, headers={"key": KEY, **headers}).status_code
    return post


def test_every_protocol_survives_mutated_input(sky: Skyline) -> None:
    rng = random.Random(int(os.environ.get("SKYLINE_FUZZ_SEED", "16")))
    port = sky.port_of
    good: list[str] = []  # names of the good points that must be stored
    statuses: dict[str, dict[int, int]] = {}
    client = httpx.Client(base_url=sky.base, timeout=60)

    def line(name: str) -> bytes:
        return f"{name} 1 {NOW}\n".encode()

    cases: list[tuple[str, list[bytes], Callable[[bytes], object], Callable[[str], None]]] = []
    plain_seeds = [line("a.b.c"), b"web.host1;dc=eu;x=y 0.25 1700000000.5\n",
                   line('up{job="x"}'), b"a 1 2\r\nb 3 4\n"]
    cases.append(("plaintext_tcp", plain_seeds,
                  lambda d: _tcp(port("SKYLINE_HORIZON__PLAINTEXT_PORT"), d),
                  lambda n: _tcp(port("SKYLINE_HORIZON__PLAINTEXT_PORT"), line(n))))
    cases.append(("plaintext_udp", plain_seeds,
                  lambda d: _udp(port("SKYLINE_HORIZON__PLAINTEXT_UDP_PORT"), d),
                  lambda n: _udp(port("SKYLINE_HORIZON__PLAINTEXT_UDP_PORT"), line(n))))
    pickle_seeds = [_pickle([("a.b", (NOW, 1.0))] * 3), _pickle([["x", [1, 2]], ("y", (3, 4))]),
                    struct.pack("!I", 6) + b"}r\x00\x00\x00\x01"]
    cases.append(("pickle", pickle_seeds, lambda d: _tcp(port("SKYLINE_PICKLE_PORT"), d),
                  lambda n: _tcp(port("SKYLINE_PICKLE_PORT"), _pickle([(n, (NOW, 1.0))]))))
    cases.append(("msgpack", [msgpack.packb(["a.b", [NOW, 1.5]]), msgpack.packb([1, 2, 3])],
                  lambda d: _udp(port("SKYLINE_UDP_PORT"), d),
                  lambda n: _udp(port("SKYLINE_UDP_PORT"), msgpack.packb([n, [NOW, 1.0]]))))
    statsd_seeds = [b"hits:1|c", b"lat:320|ms|@0.1", b"t:+3|g\nu:alice|s", b"x:1|c|#a:b,c:d"]
    cases.append(("statsd", statsd_seeds, lambda d: _udp(port("SKYLINE_HORIZON__STATSD_PORT"), d),
                  lambda n: _udp(port("SKYLINE_HORIZON__STATSD_PORT"), f"{n}:1|g".encode())))

    def http_case(name: str, seeds: list[bytes], path: str, headers: dict[str, str],
                  good_body: Callable[[str], bytes]) -> None:
        post = _http(client, path, headers)
        counts = statuses.setdefault(name, {})

        def bad(d: bytes) -> None:
            code = post(d)
            counts[code] = counts.get(code, 0) + 1

        def ok(n: str) -> None:
            assert post(good_body(n)) in (200, 204), name

        cases.append((name, seeds, bad, ok))

    def json_body(n: str) -> bytes:
        return json.dumps({"metrics": [{"metric": n, "timestamp": NOW, "value": 1}]}).encode()

    http_case("json", [json_body("a.b"), b'{"metric": "x", "value": "1e3"}', b"[[[[1]]]]"],
              "/flux/metric_data_post", {"Content-Type": "application/json"}, json_body)
    http_case("json_gzip", [gzip.compress(json_body("a.b")) * 2],
              "/flux/metric_data_post", {"Content-Encoding": "gzip"},
              lambda n: gzip.compress(json_body(n)))
    http_case("remote_write", [_remote_write("a_b", 1.0)], "/flux/prometheus/write",
              {"Content-Encoding": "snappy", "Content-Type": "application/x-protobuf"},
              lambda n: _remote_write(n, 1.0))
    http_case("influx", [b"cpu,host=a usage=1,x=2i 1800000000000000000\n",
                         b'm,t=a\\ b f="s\\"x",g=t\n'], "/api/v2/write?precision=s", {},
              lambda n: f"{n} v=1 {NOW}\n".encode())
    http_case("otlp", [_otlp("a.b", 1.0)], "/v1/metrics",
              {"Content-Type": "application/x-protobuf"}, lambda n: _otlp(n, 1.0))

    with Probe(sky.base) as probe:
        for name, seeds, bad, ok in cases:
            for i in range(EXAMPLES):
                bad(mutate(rng, seeds))
                if i % 25 == 24:  # a good point after the bad ones, on this protocol
                    good_name = f"fuzzgood.{name}.n{i}"
                    ok(good_name)
                    good.append(good_name)
    client.close()
    assert sky.run.proc.poll() is None, sky.run.stderr[-3000:]

    # statsd's gauges are written at its next flush under stats.gauges.; Influx names are
    # <measurement>_<field>
    want = {n + "_v" if ".influx." in n else n for n in good}
    deadline = time.monotonic() + 60
    while True:
        stored = set(sky.get("/api/v1/metrics", params={"pattern": "**fuzzgood.**",
                                                        "limit": 1000}).json()["metrics"])
        missing = sorted(n for n in want if not any(s.endswith(n) for s in stored))
        if not missing or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    counters = sky.counters()
    internal = {k: v for k, v in counters.items() if "internal_error" in k and v}
    report("fuzz", examples=EXAMPLES * len(cases), good=len(good), missing=len(missing),
           probe_worst_s=round(probe.worst, 3), statuses=statuses)
    assert not missing, missing
    assert not internal, internal
    for name, counts in statuses.items():
        assert not [c for c in counts if c >= 500 and c != 503], (name, counts)
    assert probe.worst < FREEZE_BOUND
