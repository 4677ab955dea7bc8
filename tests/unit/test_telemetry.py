import pytest

from skyline.telemetry import Telemetry
from skyline.telemetry.counters import check_name, prometheus_text


def test_series_points_are_increases_since_last_call():
    t = Telemetry("horizon", "h1")
    t.incr("points", 5)
    t.incr("points", 2)
    t.gauge("queue", 7)
    pts = t.series_points("skyline", 100.0)
    assert ("skyline.horizon.points", 100.0, 7.0) in pts
    assert ("skyline.horizon.queue", 100.0, 7.0) in pts
    t.incr("points")
    pts = dict((n, v) for n, _, v in t.series_points("skyline", 160.0))
    assert pts["skyline.horizon.points"] == 1.0
    pts = dict((n, v) for n, _, v in t.series_points("skyline", 220.0))
    assert pts["skyline.horizon.points"] == 0.0


def test_prometheus_text_format():
    text = prometheus_text([
        ("horizon", "h1", "points", "counter", 12.0),
        ("horizon", 'h"2', "points", "counter", 3.0),
        ("roomba", "h1", "pass_seconds", "gauge", 0.5),
    ])
    lines = text.splitlines()
    assert "# TYPE skyline_horizon_points_total counter" in lines
    assert "# HELP skyline_horizon_points_total Skyline horizon counter: points" in lines
    assert 'skyline_horizon_points_total{instance="h1"} 12.0' in lines
    assert 'skyline_horizon_points_total{instance="h\\"2"} 3.0' in lines
    assert "# TYPE skyline_roomba_pass_seconds gauge" in lines
    assert lines.count("# TYPE skyline_horizon_points_total counter") == 1
    assert not any("build_info" in line for line in lines)


def test_prometheus_text_is_never_empty_with_a_version():
    assert prometheus_text([], "1.2.3").splitlines()[-1] == 'skyline_build_info{version="1.2.3"} 1'
    assert prometheus_text([]) == ""


@pytest.mark.parametrize("bad", ["with.dot", "1abc", "sp ace", ""])
def test_counter_names_are_checked(bad):
    with pytest.raises(ValueError):
        check_name(bad)
