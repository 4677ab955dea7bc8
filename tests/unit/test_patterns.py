"""The one namespace matcher: globs over dotted names, `re:` regexes, upstream conversion."""

from __future__ import annotations

import pickle

import pytest

from skyline.core.errors import PatternError
from skyline.core.patterns import (
    PatternSet,
    compile_pattern,
    from_upstream,
    from_upstream_list,
    glob_to_regex,
    matches,
    skipped,
    validate,
)


# globs ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("pattern", "name", "expected"),
    [
        # `*` stays within one element
        ("stats.*.rpm", "stats.web01.rpm", True),
        ("stats.*.rpm", "stats.web01.eu.rpm", False),
        ("stats.*.rpm", "stats..rpm", True),  # an empty element is still one element
        ("stats.*", "stats.web01", True),
        ("stats.*", "stats.web01.rpm", False),
        ("*.rpm", "web01.rpm", True),
        ("*.rpm", "stats.web01.rpm", False),
        ("stats.web*", "stats.web01", True),
        ("stats.*01", "stats.web01", True),
        ("stats.*01", "stats.web02", False),
        # `**` crosses elements
        ("stats.**.rpm", "stats.web01.rpm", True),
        ("stats.**.rpm", "stats.web01.eu.rpm", True),
        ("stats.**.rpm", "stats.rpm", False),  # the two dots around ** are literal
        ("stats.**", "stats.web01.eu.rpm", True),
        ("stats.**", "stats", False),
        ("**.rpm", "a.b.c.rpm", True),
        ("**", "anything.at.all", True),
        ("**rpm", "stats.web01.rpm", True),
        # `?` is one character other than a dot
        ("stats.web??.cpu", "stats.web01.cpu", True),
        ("stats.web??.cpu", "stats.web1.cpu", False),
        ("stats.web??.cpu", "stats.web001.cpu", False),
        ("a?b", "a.b", False),
        ("a?b", "axb", True),
        # whole-name match
        ("carbon", "carbon", True),
        ("carbon", "carbon.agents", False),
        ("carbon", "my.carbon", False),
        ("agents", "carbon.agents.host", False),
        ("stats.rpm", "stats.rpm\n", False),
        # everything else is literal
        ("stats.rpm", "statsXrpm", False),
        ("a+b.c", "a+b.c", True),
        ("a+b.c", "aab.c", False),
        ("a[1].b", "a[1].b", True),
        ("a(b)|c", "a(b)|c", True),
        ("a$b^c", "a$b^c", True),
        ("100%.x", "100%.x", True),
    ],
)
def test_glob(pattern: str, name: str, expected: bool) -> None:
    assert matches(pattern, name) is expected


def test_glob_regex_is_anchored() -> None:
    rx = glob_to_regex("a.*")
    assert rx.startswith("^") and rx.endswith("$")


# labelled series ---------------------------------------------------------------------------------
LABELLED = 'http_requests_total{code="200"}'
WITH_DOTS = 'node_cpu_seconds_total{cpu="0",instance="10.0.0.1:9100",mode="idle"}'


@pytest.mark.parametrize(
    ("pattern", "name", "expected"),
    [
        (LABELLED, LABELLED, True),  # the exact labelled name (braces and quotes are literal)
        (LABELLED, 'http_requests_total{code="500"}', False),
        ("http_requests_total*", LABELLED, True),
        ("http_requests_total*", "http_requests_total", True),
        ("http_*", LABELLED, True),
        ("http_requests_total{*}", LABELLED, True),
        ('http_requests_total{code="2*"}', LABELLED, True),
        ('http_requests_total{code="2??"}', LABELLED, True),
        ('http_requests_total{code="5*"}', LABELLED, False),
        # dots inside label values do not split elements
        ("node_cpu_seconds_total*", WITH_DOTS, True),
        ("node_*", WITH_DOTS, True),
        ('node_cpu_seconds_total{*instance="10.0.0.1:9100"*}', WITH_DOTS, True),
        ('node_cpu_seconds_total{*instance="10.0.0.2:9100"*}', WITH_DOTS, False),
        ('app.*', 'app.requests{host="web01.example.com"}', True),
        ('app.*.count', 'app.requests{host="web01.example.com"}.count', True),
        ("*", 'up{instance="a.b"}', True),
        ("*", "a.b", False),
        ("**", WITH_DOTS, True),
        ("re:^node_cpu", WITH_DOTS, True),
        (r're:mode="idle"', WITH_DOTS, True),
        (r're:mode="user"', WITH_DOTS, False),
        # a `}` inside a quoted label value does not end the label set
        ("api_*", 'api_calls{path="/a}.b"}', True),
    ],
)
def test_labelled_names(pattern: str, name: str, expected: bool) -> None:
    assert matches(pattern, name) is expected


# regular expressions -----------------------------------------------------------------------------
def test_regex_is_searched_anywhere() -> None:
    assert matches(r"re:\.errors$", "app.web.errors")
    assert matches("re:web", "app.web.errors")
    assert not matches(r"re:\.errors$", "errors.count")
    assert matches(r"re:^stats\.web\d+\.", "stats.web01.cpu")
    assert not matches(r"re:^stats\.web\d+\.", "app.stats.web01.cpu")
    assert matches("re:^carbon$", "carbon") and not matches("re:^carbon$", "carbon.x")


def test_regex_keeps_glob_characters_as_regex() -> None:
    # in a regex `*` and `.` have their regex meaning, not the glob one
    assert matches("re:a.*b", "a.x.y.b")
    assert matches("re:a.b", "aXb")


@pytest.mark.parametrize("bad", ["re:(", "re:[a-", "re:*x", "re:a{2,1}"])
def test_invalid_regex_raises_pattern_error(bad: str) -> None:
    with pytest.raises(PatternError) as info:
        compile_pattern(bad)
    assert bad[len("re:"):] in str(info.value)
    with pytest.raises(PatternError):
        validate(bad)
    with pytest.raises(PatternError):
        matches(bad, "x")
    with pytest.raises(PatternError):
        PatternSet(["ok.*", bad])


def test_empty_pattern_raises() -> None:
    with pytest.raises(PatternError):
        compile_pattern("")


def test_empty_regex_matches_everything() -> None:
    assert matches("re:", "anything")


def test_validate_accepts_valid_patterns() -> None:
    for p in ["a.*", "a.**", "a?", "re:^a", 'x{k="v"}']:
        validate(p)


def test_compiled_patterns_are_picklable() -> None:
    rx = compile_pattern("stats.*.rpm")
    assert pickle.loads(pickle.dumps(rx)).matches("stats.a.rpm")


# PatternSet --------------------------------------------------------------------------------------
def test_pattern_set_first_all_any_filter() -> None:
    ps = PatternSet(["stats.**", "*.rpm", "re:web", "carbon"])
    assert len(ps) == 4 and bool(ps)
    assert ps.patterns == ("stats.**", "*.rpm", "re:web", "carbon")
    assert ps.first("stats.web01.rpm") == 0
    assert ps.all("stats.web01.rpm") == [0, 2]
    assert ps.first("web01.rpm") == 1
    assert ps.all("web01.rpm") == [1, 2]
    assert ps.first("carbon") == 3
    assert ps.first("other.thing") is None
    assert ps.all("other.thing") == []
    assert ps.any("carbon") and not ps.any("carbon.agents")
    names = ["stats.a", "carbon", "carbon.agents", "x.rpm", "x.y"]
    assert ps.filter(names) == ["stats.a", "carbon", "x.rpm"]


def test_empty_pattern_set() -> None:
    ps = PatternSet()
    assert not ps and len(ps) == 0
    assert not ps.any("a") and ps.first("a") is None and ps.all("a") == []
    assert ps.filter(["a", "b"]) == []


def test_pattern_set_takes_any_iterable() -> None:
    ps = PatternSet(p for p in ["a.*", "b"])
    assert ps.any("a.x") and ps.any("b")


# skip lists ---------------------------------------------------------------------------------------
def test_skipped() -> None:
    skip = PatternSet(["statsd.**", "re:\\.(lower|upper)$"])
    keep = PatternSet(["statsd.important.**"])
    assert skipped("statsd.numStats", skip, keep)
    assert skipped("app.timer.lower", skip, keep)
    assert not skipped("statsd.important.numStats", skip, keep)  # DO_NOT_SKIP wins
    assert not skipped("app.requests", skip, keep)
    assert not skipped("app.requests", PatternSet(), keep)
    assert not skipped("statsd.numStats", PatternSet(), PatternSet())
    assert skipped("statsd.numStats", skip, PatternSet())


# upstream patterns --------------------------------------------------------------------------------
def _upstream(entry: str, name: str) -> bool:
    """Upstream Skyline's matching (earthgecko's matched_or_regexed_in_list), as reference;
    without the regex reading of plain entries (`.` as any character), which we drop."""
    import re

    if entry in name:
        return True
    entry_elements = entry.split(".")
    if len(set(name.split(".")) & set(entry_elements)) == len(entry_elements):
        return True
    if any(c in "^$*+?[](){}|\\" for c in entry):
        try:
            return re.match(entry, name) is not None
        except re.error:
            return False
    return False


def test_from_upstream_substring_only_entries() -> None:
    assert from_upstream("statsd.") == r"re:statsd\."
    assert from_upstream("_90") == "re:_90"
    assert from_upstream("carbon") == "re:carbon"
    p = from_upstream("statsd.")
    assert matches(p, "statsd.numStats")
    assert matches(p, "app.statsd.timer")  # upstream's substring reading matches anywhere
    assert not matches(p, "statsd")


def test_from_upstream_dotted_elements() -> None:
    p = from_upstream("stats.rpm")
    assert p.startswith("re:")
    assert matches(p, "stats.rpm.total")  # substring
    assert matches(p, "stats.rpm_total")  # substring, as upstream
    assert matches(p, "stats.web01.rpm")  # both elements present
    assert matches(p, "rpm.eu.stats")  # in any order
    assert not matches(p, "stats.web01.rpm_total")  # rpm is not a whole element
    assert not matches(p, "stats.web01")


def test_from_upstream_regex_entries_keep_the_literal_reading() -> None:
    # `+` is allowed in metric names: the entry must still match the name it spells
    p = from_upstream("foo+bar.baz")
    assert matches(p, "x.foo+bar.baz")
    assert matches(p, "baz.foo+bar")  # elements


def test_from_upstream_regex_is_anchored_at_the_start() -> None:
    p = from_upstream(r"stats\..*\.errors")
    assert p == r"re:stats\\\.\.\*\\\.errors|^(?:stats\..*\.errors)"
    assert matches(p, "stats.web01.errors")
    assert not matches(p, "app.stats.web01.errors")  # re.match, as upstream


def test_from_upstream_invalid_regex_keeps_the_other_readings() -> None:
    p = from_upstream("a.b[")
    validate(p)
    assert matches(p, "x.a.b[")
    assert matches(p, "b[.a")


def test_from_upstream_entries_whose_element_test_never_matched() -> None:
    # a trailing dot gives an empty element and repeated elements count twice upstream:
    # neither could pass upstream's element test, so only the substring reading remains
    assert not matches(from_upstream("skyline.analyzer."), "analyzer.x.skyline")
    assert matches(from_upstream("skyline.analyzer."), "skyline.analyzer.run_time")
    assert not matches(from_upstream("a.a"), "a.b")
    assert matches(from_upstream("a.a"), "x.a.a")


def test_from_upstream_keeps_our_regexes() -> None:
    assert from_upstream("re:^x") == "re:^x"


def test_from_upstream_labelled_entry() -> None:
    p = from_upstream(LABELLED)
    validate(p)
    assert matches(p, LABELLED)
    assert not matches(p, 'http_requests_total{code="500"}')


ENTRIES = ["statsd.", "stats.rpm", "carbon.agents", "a.a", "skyline.analyzer.", "_90",
           r"stats\..*\.errors", "foo+bar.baz", "web0[1-3].cpu", "a.b[", "x|y.z"]
NAMES = ["statsd.numStats", "app.statsd.timer", "stats.rpm.total", "stats.web01.rpm",
         "rpm.eu.stats", "carbon.agents.host", "host.agents.carbon", "a.b", "x.a.a",
         "analyzer.x.skyline", "skyline.analyzer.run", "timer_90", "stats.web01.errors",
         "app.stats.web01.errors", "x.foo+bar.baz", "baz.foo+bar", "fooo+bar.baz",
         "web02.cpu", "host.web02.cpu", "web0[1-3].cpu", "a.b[", "b[.a", "x", "y.z", "z.y"]


@pytest.mark.parametrize("entry", ENTRIES)
def test_from_upstream_agrees_with_upstream(entry: str) -> None:
    converted = from_upstream(entry)
    for name in NAMES:
        assert matches(converted, name) is _upstream(entry, name), (entry, converted, name)


def test_from_upstream_list() -> None:
    assert from_upstream_list(["statsd.", "re:x"]) == [r"re:statsd\.", "re:x"]
    PatternSet(from_upstream_list(ENTRIES))  # every conversion compiles


# linear time and limits -------------------------------------------------------------------------
# Each of these took seconds (and doubled per character) with a backtracking engine; RE2
# answers in microseconds. A regression to backtracking makes this test hang, not pass.
@pytest.mark.parametrize(
    ("pattern", "name"),
    [
        ("re:^zz([a-z_.]+)*!", "zz" + "a" * 5000),
        ("re:(a+)+b", "a" * 5000),
        ("re:(a|aa)*c", "a" * 5000),
        ("**a**a**a**a**a**a**a**a**b", "a" * 5000),
        ("*a*a*a*a*a*a*a*a*b", "a" * 5000),
    ],
)
def test_hostile_patterns_run_in_linear_time(pattern: str, name: str) -> None:
    rx = compile_pattern(pattern)
    for _ in range(100):
        assert not rx.matches(name)
    assert rx.filter([name] * 100) == []


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ("re:(?=a)b", "look-around"),
        (r"re:(a)\1", "back-references"),
        ("a" * 1025, "at most 1024"),
        ("*." * 33, "more than 32 wildcards"),
        ("re:(a{1000}){1000}", "invalid repetition size"),
        ("re:" + ".{1000}" * 10, "too complex"),
    ],
)
def test_patterns_refused_with_the_reason(bad: str, reason: str) -> None:
    with pytest.raises(PatternError) as info:
        compile_pattern(bad)
    assert reason in str(info.value)


def test_filter_agrees_with_matches() -> None:
    names = ["stats.web1.rpm", "stats.web1.eu.rpm", LABELLED, WITH_DOTS, "x", "", "é.ü"]
    for p in ["stats.*.rpm", "**", "re:^", "re:rpm$", "*", "re:ü", "re:"]:
        rx = compile_pattern(p)
        assert rx.filter(names) == [n for n in names if rx.matches(n)]
        both = PatternSet([p, "x"]).filter(names)
        assert both == [n for n in names if rx.matches(n) or n == "x"]


def test_from_upstream_element_reading_is_capped() -> None:
    # five elements would take 120 orderings: only the substring reading is kept
    p = from_upstream("a.b.c.d.e")
    assert matches(p, "x.a.b.c.d.e") and not matches(p, "e.d.c.b.a")
    assert matches(from_upstream("a.b.c.d"), "d.x.c.b.a")
