"""Finding 2 (flux read and decompressed bodies before checking the key, gzip members one
decompressor each on the event loop) and the 413 that arrived as a connection reset (10)."""

from __future__ import annotations

import gzip
import time

import httpx
import pytest

from tests.security.harness import (
    FREEZE_BOUND,
    RSS_BOUND,
    PeakRss,
    Probe,
    Skyline,
    raw_http,
    report,
)

KEY = "0123456789abcdef0123456789abcdef"
EMPTY_MEMBER = gzip.compress(b"")


@pytest.fixture(scope="module")
def sky(tmp_path_factory):
    s = Skyline(tmp_path_factory.mktemp("flux"), SKYLINE_FLUX_API_KEYS=f'{{"{KEY}": "sec"}}')
    yield s
    s.stop()


def _post(sky: Skyline, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(f"{sky.base}/flux/metric_data_post", content=body,
                      headers={"Content-Encoding": "gzip", **headers}, timeout=FREEZE_BOUND * 12)


@pytest.mark.parametrize("with_key", [True, False], ids=["key", "no-key"])
def test_empty_gzip_members_are_refused_without_a_freeze(sky: Skyline, with_key: bool) -> None:
    # just under flux.max_body_bytes: the old code spent about a minute on it, loop frozen
    body = EMPTY_MEMBER * ((10 * 2**20 - 1024) // len(EMPTY_MEMBER))
    headers = {"key": KEY} if with_key else {}
    with Probe(sky.base) as probe:
        started = time.monotonic()
        r = _post(sky, body, headers)
        took = time.monotonic() - started
    report("gzip_members", key=with_key, status=r.status_code, request_s=round(took, 3),
           probe_worst_s=round(probe.worst, 3))
    # with a key: too many members; without: too large to read before the key is known
    assert r.status_code == (400 if with_key else 413), r.text
    assert probe.worst < FREEZE_BOUND


def test_small_gzip_expanding_to_millions_of_objects(sky: Skyline) -> None:
    doc = b"[" + b"{}," * (10 * 2**20 // 3 - 1) + b"{}]"
    body = gzip.compress(doc, 9)
    assert len(body) < 64 * 1024
    with Probe(sky.base) as probe, PeakRss(sky) as rss:
        r = _post(sky, body, {"key": KEY})
    report("json_bomb", status=r.status_code, rss_growth_mb=round(rss.growth / 2**20, 1),
           probe_worst_s=round(probe.worst, 3))
    assert r.status_code == 413, r.text
    assert "FLUX_MAX_METRICS_PER_POST" in r.json()["error"]
    assert rss.growth < RSS_BOUND
    assert probe.worst < FREEZE_BOUND


def test_oversized_post_gets_its_413_not_a_reset(sky: Skyline) -> None:
    size = 11 * 2**20
    head = (f"POST /flux/metric_data_post HTTP/1.1\r\nHost: x\r\nkey: {KEY}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {size}\r\n\r\n")
    chunks = (b" " * 65536 for _ in range(size // 65536))
    # the whole body, as a client that does not read while it sends: the old code answered
    # and closed at once, and the unread body turned the close into a reset
    answer = raw_http(sky.port, head, chunks, stop_on_answer=False)
    report("oversized_post", answer=answer[:12])
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert sky.wait_counter("skyline_ingest_rejected_json_body_too_large", 1) >= 1


def test_unauthenticated_chunked_login_post_is_cut_at_the_limit(sky: Skyline) -> None:
    # the old code spooled all of it to /tmp, then answered 403
    head = ("POST /login HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
            "Content-Type: multipart/form-data; boundary=xx\r\n\r\n")
    piece = b"a" * 65536
    chunk = f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    sent = 0

    def body():
        nonlocal sent
        yield b"--xx\r\nContent-Disposition: form-data; name=\"f\"; filename=\"f\"\r\n\r\n"
        for _ in range(64 * 16):  # 64 MiB, unless the answer comes first
            sent += len(chunk)
            yield chunk

    first = b"--xx\r\nContent-Disposition: form-data; name=\"f\"; filename=\"f\"\r\n\r\n"
    chunks = (f"{len(c):x}\r\n".encode() + c + b"\r\n" if c is first else c for c in body())
    answer = raw_http(sky.port, head, chunks)
    report("login_body", answer=answer[:12], sent_mb=round(sent / 2**20, 1))
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert sent < 48 * 2**20  # answered long before the 64 MiB were sent


@pytest.mark.parametrize("processes", [1, 0], ids=["parse-process", "parse-thread"])
def test_a_large_body_is_parsed_without_stalling_the_web_app(tmp_path, processes) -> None:
    """A valid 8 MiB Influx body (150,000 lines): parsed in flux's own process by default
    (flux.parse_processes), the web app's health answers throughout; the figures of the
    threads-only variant are reported beside it."""
    s = Skyline(tmp_path, SKYLINE_FLUX_API_KEYS=f'{{"{KEY}": "sec"}}',
                SKYLINE_FLUX__PARSE_PROCESSES=str(processes))
    try:
        now = int(time.time())
        body = "\n".join(f"big.line{i % 500},host=h{i % 7} value={i}.5 {now}000000000"
                         for i in range(150_000)).encode()
        assert 7 * 2**20 < len(body) < 10 * 2**20
        with Probe(s.base) as probe:
            started = time.monotonic()
            r = httpx.post(f"{s.base}/write", params={"p": KEY}, content=body,
                           timeout=FREEZE_BOUND * 60)
            took = time.monotonic() - started
        report("large_influx_body", processes=processes, status=r.status_code,
               request_s=round(took, 3), probe_worst_s=round(probe.worst, 3))
        assert r.status_code == 204, r.text
        if processes:
            assert probe.worst < FREEZE_BOUND
    finally:
        s.stop()
