"""Boundary's rules and judgement: upstream tuples and tables, overrides and excludes,
consecutive detections, one event when a rule breaks and one when it passes again, the rule
quoted in the event, and the state kept across a restart."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from skyline.analysis.boundary import BoundaryParams, BoundaryRules, Checker, check_key
from skyline.analysis.emit import to_event
from skyline.settings import Settings
from skyline.settings.boundary import BoundaryAlerterOpts, BoundaryRule

T0 = 1_700_000_000.0


def test_upstream_tuple_and_table_forms():
    r = BoundaryRule.model_validate(
        ["stats.rpm.total", "detect_drop_off_cliff", 1800, 500, 3600, 0, 2, "smtp|slack"])
    assert (r.algorithm, r.expiration, r.min_average, r.min_average_seconds, r.alert_threshold,
            r.channels) == ("detect_drop_off_cliff", 1800, 500, 3600, 2, ["smtp", "slack"])
    assert r.name == "stats.rpm.total" and r.pattern.startswith("re:")
    rules = BoundaryRules([r])
    # upstream's reading: a substring of the name
    assert rules.for_metric("prod.stats.rpm.total") == {"detect_drop_off_cliff": 0}
    t = BoundaryRule(pattern="x.*.requests", algorithm="less_than", trigger_value=100,
                     channels=["webhook"], excludes=["x.test.*"])
    assert t.label == "x.*.requests" and t.describe() == "x.*.requests: value < 100"
    ex = BoundaryRule.model_validate(["x.y", "less_than", 3600, 0, 0, 15, 2, "smtp", ["x.y.z"]])
    assert ex.excludes[0].startswith("re:")


@pytest.mark.parametrize("bad, message", [
    (["a", "less_than", 1, 0, 0, 1, 1], "8 or 9 elements"),
    (["a", "median", 1, 0, 0, 1, 1, "smtp"], "algorithm"),
    (["a", "less_than", 1, 0, 0, 1, 1, "hipchat"], "HipChat"),
    (["a", "less_than", -1, 0, 0, 1, 1, "smtp"], "expiration"),
    ({"pattern": "a", "algorithm": "less_than", "smooth": "mean"}, "smooth"),
    ({"pattern": "a", "algorithm": "detect_drop_off_cliff", "smooth": "mean",
      "smooth_points": 3}, "raw points"),
    ({"pattern": "re:(", "algorithm": "less_than"}, "pattern"),
])
def test_bad_rules_are_refused_with_a_reason(bad, message):
    with pytest.raises(ValidationError, match=message):
        BoundaryRule.model_validate(bad)


def test_settings_check_rule_channels_are_enabled():
    with pytest.raises(ValidationError, match=r"BOUNDARY_METRICS.0.channels .* not enabled"):
        Settings(BOUNDARY_METRICS=[["a", "less_than", 60, 0, 0, 1, 1, "slack"]])
    s = Settings(BOUNDARY_METRICS=[["a", "less_than", 60, 0, 0, 1, 1, ""]])
    assert s.BOUNDARY_METRICS[0].channels == []
    opts = BoundaryAlerterOpts()
    assert opts.limit("smtp") == (100, 60) and opts.limit("webhook") is None
    with pytest.raises(ValidationError):
        BoundaryAlerterOpts(alerter_limit={"smtp": 0})


def test_later_rule_overrides_per_algorithm_and_excludes():
    rules = BoundaryRules([
        BoundaryRule(pattern="svc.**", algorithm="less_than", trigger_value=10),
        BoundaryRule(pattern="svc.**", algorithm="greater_than", trigger_value=1000),
        BoundaryRule(pattern="svc.api.rps", algorithm="less_than", trigger_value=100),
        BoundaryRule(pattern="svc.batch.*", algorithm="less_than", trigger_value=1,
                     excludes=["svc.batch.nightly"]),
    ])
    assert rules.for_metric("svc.api.rps") == {"less_than": 2, "greater_than": 1}
    assert rules.for_metric("svc.batch.hourly") == {"less_than": 3, "greater_than": 1}
    assert rules.for_metric("svc.batch.nightly") == {"less_than": 0, "greater_than": 1}
    assert rules.for_metric("other") == {}
    names = ["svc.api.rps", "svc.batch.nightly", "other", "svc.batch.hourly"]
    checks = rules.match(names)
    got = {(names[r], int(k)) for r, k in zip(checks.row, checks.rule, strict=True)}
    assert got == {(m, i) for m in names for i in rules.for_metric(m).values()}
    assert checks.keys[0] == check_key("less_than", "svc.api.rps") or \
        check_key("less_than", "svc.api.rps") in checks.keys


class Feed:
    """One metric's series, a point per minute, judged a point at a time."""

    def __init__(self, checker, rules, names, values):
        self.checker, self.names = checker, names
        self.checks = rules.match(names)
        self.values = [list(v) for v in values]

    def push(self, *new):
        for series, x in zip(self.values, new, strict=True):
            series.append(float(x))
        t = np.concatenate([T0 + 60.0 * np.arange(len(s)) for s in self.values])
        v = np.concatenate([np.asarray(s) for s in self.values])
        counts = np.array([len(s) for s in self.values])
        return self.checker.run(self.checks, t, v, counts, now=float(t[-1]) + 1)


def test_consecutive_detections_then_one_event_each_way():
    rules = BoundaryRules([BoundaryRule(pattern="rps", algorithm="less_than",
                                        trigger_value=100, alert_threshold=3,
                                        expiration=3600)])
    checker = Checker(rules, BoundaryParams(stale_period=0))
    rng = np.random.default_rng(1)
    feed = Feed(checker, rules, ["rps"], [200 + rng.normal(0, 5, 150)])
    statuses = []
    texts = []
    for x in [150, 42, 40, 160, 41, 40, 39, 38, 37, 150, 150, 45, 150, 150, 150, 150]:
        r = feed.push(x)
        statuses.append([e.status for e in r.events])
        texts += [e.results[0].text for e in r.events]
    # 42, 40 then a pass: no alert; 41, 40, 39 alert once; 38, 37 are the same incident;
    # back needs three passes in a row (the 45 restarts the count)
    assert statuses == [[], [], [], [], [], [], ["anomalous"], [], [], [], [], [], [], [],
                        ["recovered"], []]
    assert texts[0] == "value 39 < 100 for 3 consecutive checks (rule rps)"
    assert texts[1] == "value 150 >= 100 again for 3 consecutive checks (rule rps)"


def test_point_judged_once_and_realert_after_expiration():
    rules = BoundaryRules([BoundaryRule(pattern="q", algorithm="greater_than",
                                        trigger_value=10, expiration=300)])
    checker = Checker(rules, BoundaryParams(stale_period=0, max_tolerable_boredom=5))
    feed = Feed(checker, rules, ["q"], [np.arange(50) % 5])
    assert [e.status for e in feed.push(11).events] == ["anomalous"]
    t = np.concatenate([T0 + 60.0 * np.arange(len(s)) for s in feed.values])
    v = np.concatenate([np.asarray(s) for s in feed.values])
    again = checker.run(feed.checks, t, v, np.array([len(t)]), now=float(t[-1]))
    assert again.events == [] and again.stats.unchanged == 1
    out = [[e.status for e in feed.push(x).events] for x in (12, 13, 14, 15, 16)]
    assert out == [[], [], [], [], ["anomalous"]]  # 5 minutes after the first


def test_stale_and_boring_neither_detect_nor_recover():
    rules = BoundaryRules([BoundaryRule(pattern="m", algorithm="less_than", trigger_value=5)])
    checker = Checker(rules, BoundaryParams(stale_period=0, max_tolerable_boredom=10))
    feed = Feed(checker, rules, ["m"], [np.arange(30.0) + 10])
    assert [e.status for e in feed.push(1).events] == ["anomalous"]
    for _ in range(10):
        r = feed.push(1)  # the same low value: Boring after 10 points, never "recovered"
        assert r.events == []
    assert r.stats.boring == 1


def test_cliff_is_not_recovered_while_the_metric_is_still_down():
    rules = BoundaryRules([BoundaryRule(pattern="web.rpm", algorithm="detect_drop_off_cliff",
                                        alert_threshold=1, expiration=86400)])
    checker = Checker(rules, BoundaryParams(stale_period=0, min_tolerable_length=30))
    rng = np.random.default_rng(3)
    feed = Feed(checker, rules, ["web.rpm"], [np.round(1000 + rng.normal(0, 20, 60))])
    first = feed.push(2)
    assert [e.status for e in first.events] == ["anomalous"]
    assert first.events[0].results[0].text.startswith("drop-off cliff: the last 10 points' mean")
    down = [feed.push(x).events for x in (3, 2, 4, 1, 3)]
    assert down == [[]] * 5  # the guards stop firing, but it has not recovered
    up = [[e.status for e in feed.push(x).events] for x in (990, 1010)]
    assert up == [["recovered"], []]


def test_events_of_two_algorithms_on_one_point_do_not_collide():
    rules = BoundaryRules([
        BoundaryRule(pattern="m", algorithm="less_than", trigger_value=50),
        BoundaryRule(pattern="m", algorithm="detect_drop_off_cliff"),
    ])
    checker = Checker(rules, BoundaryParams(stale_period=0, min_tolerable_length=30))
    rng = np.random.default_rng(4)
    feed = Feed(checker, rules, ["m"], [np.round(1000 + rng.normal(0, 20, 60))])
    r = feed.push(0)
    evs = [to_event(pe, "boundary", 1.0, scope=pe.results[0].algorithm) for pe in r.events]
    assert sorted(e.triggered[0] for e in evs) == ["detect_drop_off_cliff", "less_than"]
    assert len({e.id for e in evs}) == 2 and {e.source for e in evs} == {"boundary"}


def test_state_survives_a_restart():
    rules = BoundaryRules([BoundaryRule(pattern="m", algorithm="less_than", trigger_value=5,
                                        alert_threshold=2)])
    checker = Checker(rules, BoundaryParams(stale_period=0))
    feed = Feed(checker, rules, ["m"], [np.arange(30.0) + 10])
    assert feed.push(1).events == []
    put, gone = checker.snapshot()
    assert list(put) == [check_key("less_than", "m")] and gone == []
    fresh = Checker(rules, BoundaryParams(stale_period=0))
    assert fresh.restore({**put, "junk": b"\x09xx"}) == 1
    feed.checker = fresh
    assert [e.status for e in feed.push(2).events] == ["anomalous"]  # the 2nd in a row
    assert [e.status for e in feed.push(9).events] == []
    assert [e.status for e in feed.push(9).events] == ["recovered"]
    put, gone = fresh.snapshot()
    assert put == {} and gone == [check_key("less_than", "m")]
