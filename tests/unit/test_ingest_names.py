import pytest

from skyline.ingest.guard import KnownMetrics
from skyline.ingest.names import labelled_name, name_problem, split_labelled


def test_labelled_name_sorts_and_escapes():
    assert labelled_name("up", {}) == "up"
    name = labelled_name("http_requests_total", {"path": 'a"b\\c\nd', "code": "200"})
    assert name == 'http_requests_total{code="200",path="a\\"b\\\\c\\nd"}'
    base, labels = split_labelled(name)
    assert base == "http_requests_total"
    assert labels == {"code": "200", "path": 'a"b\\c\nd'}


@pytest.mark.parametrize("name", ["web.host1.requests", "a", "x_y-z:1+2%3/4=5@6",
                                  'http{code="200"}', 'm{a="1",b=""}', 'm{a="x,y}z"}'])
def test_valid_names(name):
    assert name_problem(name) is None


@pytest.mark.parametrize("name,reason", [
    ("", "empty_name"),
    ("a b", "bad_name_chars"),
    ("a\nb", "bad_name_chars"),
    ("ünï", "bad_name_chars"),
    (".a", "empty_name_element"),
    ("a.", "empty_name_element"),
    ("a..b", "empty_name_element"),
    ("x" * 1025, "name_too_long"),
    ("m{a=1}", "bad_labels"),
    ('m{a="1"', "bad_labels"),
    ('m{a="1",}', "bad_labels"),
    ('m{1a="1"}', "bad_labels"),
    ('m{b="1",a="2"}', "labels_not_canonical"),
])
def test_invalid_names(name, reason):
    assert name_problem(name) == reason


def test_label_part_length_limit():
    name = labelled_name("m", {"a": "v" * 100})
    assert name_problem(name, max_labels_length=50) == "labels_too_long"


def test_known_metrics_budget_per_minute_and_total():
    known = KnownMetrics(max_metrics=5, max_new_per_minute=2)
    known.replace(["old.1", "old.2"])
    assert known.admit("old.1", now=60) is None
    assert known.admit("new.1", now=60) is None
    assert known.admit("new.2", now=61) is None
    assert known.admit("new.3", now=62) == "max_new_metrics_per_minute"
    assert known.admit("new.1", now=62) is None  # admitted names keep flowing
    assert known.admit("new.3", now=120) is None  # next minute
    assert known.admit("new.4", now=121) == "max_metrics"
    assert known.admit("old.2", now=122) is None


def test_reload_keeps_recently_admitted_names():
    known = KnownMetrics(max_metrics=0, max_new_per_minute=1)
    assert known.admit("fresh", now=0) is None
    known.replace(["stored"])  # "fresh" not flushed yet when the index was read
    assert known.admit("fresh", now=1) is None
    assert known.admit("other", now=2) == "max_new_metrics_per_minute"
