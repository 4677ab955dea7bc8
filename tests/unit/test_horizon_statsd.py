"""StatsD parsing and aggregation, against values worked out by hand."""

from __future__ import annotations

import math
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from skyline.services.horizon.statsd import Aggregator, pct_name, sanitise, timer_stats


def agg(*lines: str, percentiles=(90.0,), delete_idle=False, prefix="stats"):
    a = Aggregator(prefix=prefix, percentiles=percentiles, delete_idle=delete_idle)
    rejected: Counter[str] = Counter()
    for line in lines:
        a.feed(line.encode(), rejected)
    return a, rejected


def flushed(a: Aggregator, interval: float = 10.0) -> dict[str, float]:
    names, values = a.flush(interval)
    assert len(names) == len(set(names))
    return dict(zip(names, values, strict=True))


def test_counters_with_sample_rates():
    # 1 sampled at 10% counts 10; 2 + 10 + 3 = 15 over 10 s is 1.5/s
    a, rej = agg("hits:2|c", "hits:1|c|@0.1", "hits:3|c\nother:-1|c")
    out = flushed(a)
    assert out["stats.counters.hits.count"] == 15
    assert out["stats.counters.hits.rate"] == 1.5
    assert out["stats.counters.other.count"] == -1 and not rej


def test_gauges_set_and_change():
    a, _ = agg("temp:10|g", "temp:+5|g", "temp:-3|g", "fresh:-4|g", "fresh:+1|g")
    out = flushed(a)
    assert out["stats.gauges.temp"] == 12
    assert out["stats.gauges.fresh"] == -3  # a change to an unseen gauge starts from 0
    a.feed(b"temp:+1|g", Counter())
    assert flushed(a)["stats.gauges.temp"] == 13  # gauges carry over between intervals


def test_timer_statistics_one_to_ten():
    # values 1..10: sum 55, mean 5.5, median (5+6)/2, population variance 8.25;
    # 90th percentile: round(0.9 * 10) = 9 lowest values -> 1..9: sum 45, mean 5, upper 9
    a, _ = agg(*(f"req:{v}|ms" for v in (7, 3, 10, 1, 5, 9, 2, 8, 6, 4)))
    out = {k.removeprefix("stats.timers.req."): v for k, v in flushed(a).items()}
    assert out == {
        "count": 10, "count_ps": 1.0, "lower": 1, "upper": 10, "sum": 55, "mean": 5.5,
        "median": 5.5, "std": pytest.approx(math.sqrt(8.25)),
        "count_90": 9, "mean_90": 5.0, "upper_90": 9, "sum_90": 45,
    }


def test_percentiles_round_as_statsd_and_are_named_without_dots():
    # 5 values, 50%: 2.5 rounds half up (JavaScript's Math.round) to 3 -> 10, 20, 30
    stats = timer_stats([50, 10, 40, 20, 30], 5, 10, [50, 99.9, 1])
    assert stats["count_50"] == 3 and stats["upper_50"] == 30 and stats["mean_50"] == 20
    assert stats["count_99_9"] == 5 and stats["upper_99_9"] == 50  # round(4.995) = 5
    assert "count_1" not in stats  # round(0.05) = 0 values: nothing to report
    assert stats["median"] == 30
    assert pct_name(90.0) == "90" and pct_name(99.9) == "99_9"
    one = timer_stats([7], 1, 10, [90])  # a single value is its own percentile
    assert one["upper_90"] == 7 and one["count_90"] == 1 and one["std"] == 0


def test_timer_sample_rate_counts_each_value_as_one_over_rate():
    a, _ = agg("t:100|ms|@0.5", "t:300|ms")
    out = flushed(a)
    assert out["stats.timers.t.count"] == 3 and out["stats.timers.t.count_ps"] == 0.3
    assert out["stats.timers.t.mean"] == 200 and out["stats.timers.t.count_90"] == 2


def test_histograms_sets_and_several_samples_per_line():
    a, _ = agg("h:1|h:3|h", "users:alice|s", "users:bob|s", "users:alice|s", "c:1|c:2|c")
    out = flushed(a)
    assert out["stats.histograms.h.mean"] == 2 and out["stats.histograms.h.count"] == 2
    assert out["stats.sets.users.count"] == 2
    assert out["stats.counters.c.count"] == 3


def test_names_are_sanitised_and_tags_become_labels():
    assert sanitise("my key/with:odd!chars") == "my_key-withoddchars"
    a, rej = agg("api hits/x:1|c", "lat:5|ms|#route:/a,code:200", "lat:7|ms|#code:200,route:/a",
                 "g:1|g|#bad", prefix="app")
    out = flushed(a)
    assert out["app.counters.api_hits-x.count"] == 1
    assert out['app.timers.lat.mean{code="200",route="/a"}'] == 6
    assert rej == {"bad_tags": 1}


def test_bad_lines_are_counted_and_good_ones_kept():
    a, rej = agg("ok:1|c\nnocolon\nx:|c\nx:1\nx:abc|c\nx:1|zz\nx:1|c|@2\nx:1|c|@x\n"
                 "x:nan|g\n!!!:1|c\nx:1|c:oops\nok:2|c")
    a.feed(b"\xff\xfe:1|c\nok:4|c", rej)  # one undecodable line costs only itself
    assert flushed(a)["stats.counters.ok.count"] == 7
    assert rej == {"bad_line": 4, "bad_value": 2, "bad_type": 1, "bad_rate": 2, "bad_name": 1,
                   "bad_encoding": 1}
    assert "x" not in str(a.counters)  # the line with a bad second sample applied nothing


def test_idle_names_report_zeros_or_nothing():
    a, _ = agg("c:1|c", "t:1|ms", "s:x|s", "g:5|g")
    flushed(a)
    assert flushed(a) == {
        "stats.counters.c.count": 0, "stats.counters.c.rate": 0, "stats.gauges.g": 5,
        "stats.timers.t.count": 0, "stats.timers.t.count_ps": 0, "stats.sets.s.count": 0,
    }
    b, _ = agg("c:1|c", "t:1|ms", "s:x|s", "g:5|g", delete_idle=True)
    assert flushed(b)
    assert flushed(b) == {}


@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_raise(data):
    a = Aggregator(prefix="stats", percentiles=[90, 99.9], delete_idle=False)
    rejected: Counter[str] = Counter()
    a.feed(data, rejected)
    names, values = a.flush(10)
    assert all(math.isfinite(v) for v in values) and len(names) == len(values)


@given(st.lists(st.tuples(st.from_regex(r"[a-z][a-z0-9_.\-]{0,15}", fullmatch=True),
                          st.integers(-1000, 1000)), min_size=1, max_size=20),
       st.binary(max_size=50))
def test_valid_counters_among_garbage_add_up(counts, junk):
    a = Aggregator(prefix="stats", percentiles=[], delete_idle=False)
    rejected: Counter[str] = Counter()
    lines = [f"{n}:{v}|c".encode() for n, v in counts]
    a.feed(b"\n".join([junk.replace(b"\n", b" ") + b"\x00", *lines]), rejected)
    expected: Counter[str] = Counter()
    for n, v in counts:
        expected[n] += v
    out = dict(zip(*a.flush(10), strict=True))
    for n, total in expected.items():
        assert out[f"stats.counters.{n}.count"] == total
