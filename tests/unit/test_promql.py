"""The PromQL subset of the Prometheus-compatible API: selectors, matchers, comparisons, and a
clear refusal of everything else."""

from __future__ import annotations

import numpy as np
import pytest

from skyline.services.webapp.promql import Unsupported, parse, parse_duration


def test_name_and_matchers():
    s = parse('node_load1{job="node", instance=~"a.*", mode!="idle", x!~`b|c`,}')
    assert s.name() == "node_load1" and s.label_value("job") == "node"
    assert s.matches({"__name__": "node_load1", "job": "node", "instance": "a:9100"})
    assert not s.matches({"__name__": "node_load1", "job": "node", "instance": "ba"})
    assert not s.matches({"__name__": "node_load1", "job": "node", "instance": "a", "x": "b"})
    assert not s.matches({"__name__": "node_load1", "job": "node", "instance": "a",
                          "mode": "idle"})


def test_dotted_graphite_names_by_name_label():
    s = parse('{__name__="web.host1.requests"}')
    assert s.name() == "web.host1.requests"
    assert s.matches({"__name__": "web.host1.requests"})
    assert parse("{__name__=~'web\\\\..*'}").matches({"__name__": "web.x"})


def test_regex_is_anchored_and_linear():
    s = parse('{__name__=~"web"}')
    assert not s.matches({"__name__": "web.x"}) and s.matches({"__name__": "web"})
    # a pattern that backtracking engines take exponential time on: RE2 answers at once
    evil = parse('{__name__=~"(a+)+$"}')
    assert not evil.matches({"__name__": "a" * 64 + "b"})


def test_escapes_in_strings():
    s = parse('x{a="q\\"uote\\n", b=\'it\\\'s\', c="\\x41\\u00e9"}')
    assert [m.value for m in s.matchers[1:]] == ['q"uote\n', "it's", "Aé"]


def test_range_and_comparison():
    assert parse("up[5m]").range == 300
    assert parse("up[1h30m]").range == 5400
    s = parse('skyline_anomaly_score{metric="a.b"} > 0.7')
    assert s.comparison == (">", 0.7)
    assert s.compare(np.array([0.5, 0.7, 0.9])).tolist() == [False, False, True]
    assert parse("x <= 1e3").comparison == ("<=", 1000.0)


@pytest.mark.parametrize("q,why", [
    ("rate(x[5m])", "function"), ("sum(x)", "function"), ("x + 1", "unsupported"),
    ("x offset 5m", "unsupported"), ('{job=""}', "non-empty"), ("{}", "non-empty"),
    ('x{a=~"("}', "regular expression"), ('x{a="b"', "expected"), ("x{1a=\"b\"}", "label"),
    ('x{a="b}', "unterminated"), ("x[5x]", "duration"), ("x > y", "number"),
    ("x > bool 1", "bool"), ("up[5m] > 1", "range"), ("", "expected"),
    ("x" * 20000, "characters"),
])
def test_refused(q, why):
    with pytest.raises(Unsupported) as e:
        parse(q)
    assert why in str(e.value)


def test_durations():
    assert parse_duration("15s") == 15 and parse_duration("1m") == 60
    assert parse_duration("0.5") == 0.5 and parse_duration("500ms") == 0.5
    for bad in ("-1", "abc", "1q", "nan"):
        with pytest.raises(Unsupported):
            parse_duration(bad)
