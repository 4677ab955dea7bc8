"""The SQL narrowing of namespace patterns: whatever the pattern matches, the narrowing keeps
(it may keep more; the pattern itself decides afterwards)."""

from __future__ import annotations

import fnmatch
import re

import pytest

from skyline.core.patterns import matches
from skyline.store.sql.anomaly_scan import _after_prefix, glob_like, glob_prefix, regex_like

NAMES = ["stats.svc-1.requests.errors", "stats.svc-10.latency.p99", "stats", "stats.",
         "statsd.x", "host-0042.cpu.user", "host-00a.cpu", "web_x.cpu", "web%y.cpu",
         'api.rpm{code="500",path="/a.b"}', "ünï.cödé", "a\\b.c"]


def _like_matches(like: str, name: str) -> bool:
    """LIKE with backslash escapes, case-sensitive (as on PostgreSQL: the strictest)."""
    rx = ""
    i = 0
    while i < len(like):
        ch = like[i]
        if ch == "\\":
            rx += re.escape(like[i + 1])
            i += 2
            continue
        rx += ".*" if ch == "%" else "." if ch == "_" else re.escape(ch)
        i += 1
    return re.fullmatch(rx, name, re.S) is not None


@pytest.mark.parametrize("pattern", [
    "stats.*.requests.errors", "**.errors", "stats", "stats.**", "host-00?2.*.*", "web_*.cpu",
    "web%*", 'api.rpm{code="50*"*}', "ünï.*", "a\\b.*", "*", "**",
])
def test_glob_narrowing_keeps_every_match(pattern: str) -> None:
    like = glob_like(pattern)
    prefix = glob_prefix(pattern)
    for name in NAMES:
        if matches(pattern, name):
            assert name.startswith(prefix)
            assert like is None or _like_matches(like, name), (pattern, like, name)


def test_like_is_none_when_it_would_not_narrow() -> None:
    assert glob_like("**") is None and glob_like("*") is None
    assert glob_like("re:^stats") is None
    assert glob_like("web_?.cpu") == "web\\__.cpu"


@pytest.mark.parametrize(("pattern", "prefix"), [
    (r"re:^stats\.svc-1\d", "stats.svc-1"),
    (r"re:^host-00[0-4]", "host-00"),
    (r"re:^abc?", "ab"),
    (r"re:^abc*x", "ab"),
    (r"re:^ab{0,2}", "a"),
    ("re:^a|^w", ""),
    (r"re:stats\.", ""),
    ("re:^(?:s)tats", ""),
    (r're:^api\.rpm\{code="5', 'api.rpm{code="5'),
])
def test_regex_prefix(pattern: str, prefix: str) -> None:
    assert glob_prefix(pattern) == prefix
    rx = re.compile(pattern[3:])
    for name in NAMES + ["ab", "a", "abx", "stats.svc-12.x", "STATS"]:
        if rx.search(name):
            assert name.startswith(prefix), (pattern, name)


def test_after_prefix_bounds_every_extension() -> None:
    for prefix in ["stats.", "a", "ü", "\ud7ff", "z\U0010ffff", "host-00"]:
        upper = _after_prefix(prefix)
        assert upper is not None and upper > prefix
        for tail in ["", "\U0010ffff" * 3, "zzz", "\x00"]:
            assert prefix + tail < upper
        assert upper.encode("utf-8", "strict")  # never a lone surrogate
    assert _after_prefix("\U0010ffff") is None


def test_fnmatch_is_not_our_glob() -> None:
    # why the pattern, not a LIKE, has the last word: `*` stays within one element
    assert fnmatch.fnmatch("stats.a.b.errors", "stats.*.errors")
    assert not matches("stats.*.errors", "stats.a.b.errors")


REGEXES = [r"svc-1\d\.latency", r"^host-00[0-4]\d\.cpu\.", r"cpu\.(user|system)$", r"^a\.b+c",
           r"x?y*z{2}w", r"api\.rpm\{code=\"5", r"api.rpm{code", r"[.]errors", r"\berrors\b",
           r"^stats\.", r"e{,2}rr", r"(?:a|b)c", r"(?i)^stats", r"a|b", r"ü.ö", r"\\b"]


@pytest.mark.parametrize("body", REGEXES)
def test_regex_narrowing_keeps_every_match(body: str) -> None:
    like = regex_like(body)
    rx = re.compile(body)
    names = NAMES + ["svc-12.latency.p99", "stats.svc-15.latency", "xyzzw", "a.bbbc", "a.bc",
                     "errors", "x.errors.y", "err", "rr", "ac", "bc", "\\b", "ümö",
                     "host-0042.cpu.system", "api.rpm{code=\"503\"}", "Stats.x"]
    for name in names:
        if rx.search(name):
            assert like is None or _like_matches(like, name), (body, like, name)


def test_regex_like_narrows_what_it_can() -> None:
    assert regex_like(r"svc-1\d\.latency") == "%svc-1%.latency%"
    assert regex_like(r"^host-00[0-4]\d\.cpu\.") == "host-00%.cpu.%"
    assert regex_like("a|b") is None and regex_like("(?i)abc") is None
    assert regex_like(r"\d+") is None
