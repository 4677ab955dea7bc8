"""Bounds on hostile input, as pure logic: gzip member walking, the pickle pre-scan, StatsD
names that are forgotten, the login limiter under parallel guesses, refusal sampling, URL
masking and finite times."""

from __future__ import annotations

import gzip
import logging
import pickle
import struct
import time
from collections import Counter

import pytest

from skyline.core.errors import InvalidInput
from skyline.core.timeutil import parse_until
from skyline.ingest.batch import Batch
from skyline.ingest.refusals import PER_MINUTE, RefusalLog
from skyline.services.flux.body import BadEncoding, BodyTooLarge, gunzip
from skyline.services.flux.jsonbody import TooMany, check_size
from skyline.services.horizon.graphite_pickle import (
    FORBIDDEN_OPCODE,
    MEMO_INDEX,
    FrameReader,
    prescan,
)
from skyline.services.horizon.statsd import Aggregator
from skyline.services.webapp.limits import LoginLimiter
from skyline.settings.show import mask_url


# gzip ---------------------------------------------------------------------------------------------
def test_gzip_members_are_all_read() -> None:
    body = gzip.compress(b"hello ") + gzip.compress(b"x" * 100_000) + gzip.compress(b"!")
    assert gunzip(body, 200_000) == b"hello " + b"x" * 100_000 + b"!"


def test_many_empty_members_are_refused_at_the_cap() -> None:
    body = gzip.compress(b"") * 100_000  # 2 MB: a decompressor each, the old code's freeze
    with pytest.raises(BadEncoding, match="more than 64 members"):
        gunzip(body, 10 * 2**20)
    # and walked in linear time even without a cap (by offset, not by copying the rest)
    assert gunzip(body, 10 * 2**20, max_members=10**6) == b""


@pytest.mark.parametrize("body", [gzip.compress(b"x" * 100)[:-3], b"\x1f\x8b" + b"\x00" * 30,
                                  gzip.compress(b"x") + b"garbage"])
def test_broken_gzip_is_bad_encoding(body: bytes) -> None:
    with pytest.raises(BadEncoding):
        gunzip(body, 1000)


def test_gzip_bomb_stops_at_the_limit() -> None:
    with pytest.raises(BodyTooLarge):
        gunzip(gzip.compress(b"\x00" * 10**7), 10**6)


def test_json_body_with_far_too_many_values_is_refused_before_parsing() -> None:
    with pytest.raises(TooMany, match="FLUX_MAX_METRICS_PER_POST"):
        check_size(b"[" + b"{}," * 100_000 + b"{}]", 450)
    check_size(b'{"metrics": [' + b'{"metric": "a", "value": 1, "timestamp": 2},' * 450
               + b"{}]}", 450)


# pickle -------------------------------------------------------------------------------------------
POINTS = [(f"stats.web{i:03d}.requests", (1_700_000_000.0 + i, float(i))) for i in range(600)]


@pytest.mark.parametrize("protocol", range(6))
def test_prescan_passes_what_pickle_writes(protocol: int) -> None:
    assert prescan(pickle.dumps(POINTS, protocol=protocol)) is None


@pytest.mark.parametrize(("frame", "reason"), [
    (b"}r" + struct.pack("<I", 2**31), MEMO_INDEX),
    (b"}r" + struct.pack("<I", 7), MEMO_INDEX),  # an index the 7-byte frame cannot need
    (b"}p99999999\n.", MEMO_INDEX),
    (b"}p" + b"9" * 100 + b"\n.", MEMO_INDEX),
    (b"\x81.", FORBIDDEN_OPCODE),  # NEWOBJ
    (b"Q.", FORBIDDEN_OPCODE),  # BINPERSID
    (b"\x97.", FORBIDDEN_OPCODE),  # NEXT_BUFFER
])
def test_prescan_refuses(frame: bytes, reason: str) -> None:
    assert prescan(frame) == reason


def test_memo_bomb_closes_the_connection_and_allocates_nothing() -> None:
    reader, batch = FrameReader(2**22), Batch()
    bomb = b"}r" + struct.pack("<I", 2**32 - 1)
    good = pickle.dumps([("a.b", (1.0, 2.0))], protocol=2)
    data = struct.pack("!I", len(bomb)) + bomb + struct.pack("!I", len(good)) + good
    assert reader.feed(data, batch) is False
    assert batch.rejected[MEMO_INDEX] == 1 and "memo" in (reader.refusal or "")
    assert len(batch) == 0  # nothing after the bad frame is read


def test_unreadable_frame_closes_the_connection() -> None:
    reader, batch = FrameReader(2**22), Batch()
    assert reader.feed(struct.pack("!I", 4) + b"junk", batch) is False
    assert batch.rejected["bad_frame"] == 1


# statsd -------------------------------------------------------------------------------------------
def test_idle_statsd_names_are_forgotten() -> None:
    agg = Aggregator(prefix="stats", percentiles=[90], delete_idle=False,
                     forget_after_flushes=3, max_names=1000)
    rejected: Counter[str] = Counter()
    agg.feed(b"once:1|c\nkept:1|c", rejected)
    for _ in range(5):
        agg.feed(b"kept:1|c", rejected)
        names, _ = agg.flush(10)
    assert "stats.counters.kept.count" in names
    assert not any("once" in n for n in names)
    assert "once" not in agg.last_seen


def test_statsd_names_are_capped() -> None:
    agg = Aggregator(prefix="stats", percentiles=[90], delete_idle=False, max_names=100)
    rejected: Counter[str] = Counter()
    agg.feed(b"\n".join(f"n{i}:1|c".encode() for i in range(150)), rejected)
    assert rejected["too_many_names"] == 50 and len(agg.last_seen) == 100
    agg.feed(b"x" * 6000 + b":1|c", rejected)
    assert rejected["name_too_long"] == 1


# login limiter ------------------------------------------------------------------------------------
def test_parallel_guesses_are_checked_only_up_to_the_limit() -> None:
    lim = LoginLimiter(max_failures=5, lockout=60)
    now = time.time()
    started = [lim.begin("admin", "10.0.0.1", now) == 0 for _ in range(100)]
    assert sum(started) == 5  # the other 95 are refused before any password check
    for _ in range(5):
        lim.failed("admin", "10.0.0.1", now)
    wait = lim.begin("admin", "10.0.0.1", now)
    assert 59 <= wait <= 60  # the first lockout, not doubled 95 times


def test_a_check_that_failed_to_run_counts_nothing() -> None:
    lim = LoginLimiter(max_failures=1, lockout=60)
    assert lim.begin("a", "x", 0.0) == 0
    lim.abandoned("a", "x")
    assert lim.begin("a", "x", 0.0) == 0


# refusal log --------------------------------------------------------------------------------------
def test_refusals_are_sampled_per_reason_with_the_peer(caplog) -> None:
    log = RefusalLog()
    with caplog.at_level(logging.INFO, logger="skyline.ingest.refused"):
        for _ in range(100):
            log.refused("pickle", "frame_too_large", peer="10.0.0.9:5000")
        log.refused("pickle", "forbidden_global", peer="10.0.0.9:5001", detail="os.system")
    lines = [r.getMessage() for r in caplog.records]
    assert sum("frame_too_large" in m for m in lines) == PER_MINUTE
    assert any("forbidden_global" in m and "os.system" in m and "10.0.0.9:5001" in m
               for m in lines)


# masking and times --------------------------------------------------------------------------------
@pytest.mark.parametrize(("url", "shown"), [
    ("redis://h:6379/0?password=abc&db=1", "redis://h:6379/0?password=***&db=1"),
    ("postgresql://u:pw@h/db?sslmode=require", "postgresql://u:***@h/db?sslmode=require"),
    ("https://h/x?token=t#f", "https://h/x?token=***#f"),
])
def test_mask_url(url: str, shown: str) -> None:
    assert mask_url(url) == shown


@pytest.mark.parametrize("text", ["nan", "inf", "-inf", "1e400", "NaN"])
def test_until_is_finite(text: str) -> None:
    with pytest.raises(InvalidInput):
        parse_until(text)
