"""The analyzer's settings: upstream names and defaults, validation, and their conversion to
the algorithms' AnalysisParams and the analyzer's config."""

from __future__ import annotations

from pathlib import Path

import pytest

from skyline.algorithms import DEFAULT_ALGORITHMS, AnalysisParams
from skyline.analysis.config import from_settings
from skyline.analysis.params import analysis_params
from skyline.core.errors import SettingProblem, SettingsError
from skyline.settings import load_settings


@pytest.fixture(autouse=True)
def _clean_env(clean_env: None) -> None:
    """No SKYLINE_* variable of the developer's shell leaks into these tests."""


def _problem(**overrides) -> SettingProblem:
    with pytest.raises(SettingsError) as info:
        load_settings(**overrides)
    assert len(info.value.problems) == 1, info.value.problems
    return info.value.problems[0]


def test_upstream_names_with_earthgecko_defaults():
    s = load_settings()
    assert (s.ANALYZER_ENABLED, s.ANALYZER_PROCESSES, s.ANALYZER_OPTIMUM_RUN_DURATION) == \
        (True, 1, 60.0)
    assert (s.STALE_PERIOD, s.MIN_TOLERABLE_LENGTH, s.MAX_TOLERABLE_BOREDOM,
            s.BOREDOM_SET_SIZE, s.CONSENSUS) == (500, 100, 100, 1, 6)
    assert tuple(s.ALGORITHMS) == DEFAULT_ALGORITHMS  # the settings' copy of the list agrees
    assert s.CUSTOM_ALGORITHMS == {} and s.MONOTONIC_METRIC_NAMESPACES == []


def test_conversion_to_analysis_params():
    s = load_settings(FULL_DURATION=3600, STALE_PERIOD=120, MIN_TOLERABLE_LENGTH=30,
                      MAX_TOLERABLE_BOREDOM=20, BOREDOM_SET_SIZE=2, CONSENSUS=4,
                      ALGORITHMS=["grubbs", "histogram_bins", "ks_test", "least_squares"],
                      analyzer={"resolution": None, "incomplete_fraction": 0.5,
                                "detect_counters": False,
                                "algorithm_params": {"grubbs": {"two_sided": False}}})
    p = analysis_params(s)
    assert isinstance(p, AnalysisParams)
    assert (p.full_duration, p.stale_period, p.min_tolerable_length, p.max_tolerable_boredom,
            p.boredom_set_size, p.consensus) == (3600.0, 120.0, 30, 20, 2, 4)
    assert p.algorithms == ("grubbs", "histogram_bins", "ks_test", "least_squares")
    assert p.resolution is None and p.incomplete_fraction == 0.5 and not p.detect_counters
    assert p.algorithm_params == {"grubbs": {"two_sided": False}}
    assert p.early_stop  # upstream's RUN_OPTIMIZED_WORKFLOW, always on in the analyzer


def test_config_carries_patterns_and_expiration():
    s = load_settings(SKIP_LIST=["tmp.**"], DO_NOT_SKIP_LIST=["tmp.keep"], EXPIRATION_TIME=60,
                      MONOTONIC_METRIC_NAMESPACES=["**.count"],
                      NON_DERIVATIVE_MONOTONIC_METRICS=["odd.count"])
    c = from_settings(s)
    assert c.expiration == 60.0
    assert c.skip_filter(["a", "tmp.x", "tmp.keep"]) == ["a", "tmp.keep"]
    assert c.monotonic_flags(["web.count", "odd.count", "web.rps"]) == [True, False, None]
    assert from_settings(load_settings()).monotonic_flags(["x"]) is None


def test_consensus_larger_than_the_algorithms_is_a_settings_problem():
    p = _problem(ALGORITHMS=["grubbs", "ks_test"], CONSENSUS=3)
    assert p.setting == "CONSENSUS" and "more than the 2 ALGORITHMS" in p.reason


def test_an_algorithm_listed_twice_is_refused():
    p = _problem(ALGORITHMS=["grubbs", "grubbs"], CONSENSUS=1)
    assert p.setting == "ALGORITHMS" and "more than once" in p.reason


def test_unknown_algorithm_is_a_settings_problem_naming_it():
    s = load_settings(ALGORITHMS=["grubbs", "no_such_thing"], CONSENSUS=1)
    with pytest.raises(SettingsError) as info:
        from_settings(s)
    (p,) = info.value.problems
    assert p.setting == "ALGORITHMS" and "no_such_thing" in p.reason
    assert p.line().startswith("ALGORITHMS: ['grubbs', 'no_such_thing']: unknown algorithm")


def test_parameters_for_an_algorithm_not_listed_are_refused():
    p = _problem(analyzer={"algorithm_params": {"ks_test": {}}}, ALGORITHMS=["grubbs"],
                 CONSENSUS=1)
    assert p.setting == "analyzer.algorithm_params"


def test_bad_parameters_name_the_table():
    s = load_settings(analyzer={"algorithm_params": {"grubbs": {"nope": 1}}})
    with pytest.raises(SettingsError) as info:
        from_settings(s)
    assert info.value.problems[0].setting == "analyzer.algorithm_params"


def test_custom_algorithms_upstream_fields(tmp_path: Path):
    src = tmp_path / "my_algo.py"
    src.write_text("def my_algo(app, pid, ts, params):\n    return False, 0.0\n")
    s = load_settings(CUSTOM_ALGORITHMS={"my_algo": {
        "algorithm_source": str(src), "algorithm_parameters": {"k": 3},
        "namespaces": ["app.**"], "consensus": 1, "max_execution_time": 0.5,
        "algorithms_allowed_in_consensus": [], "run_3sigma_algorithms": True,
        "run_before_3sigma": True, "use_with": ["analyzer", "mirage"], "debug_logging": False,
    }})
    (spec,) = from_settings(s).customs
    assert (spec.name, spec.source, spec.alone, spec.max_time, spec.veto) == \
        ("my_algo", str(src), True, 0.5, False)
    assert dict(spec.params) == {"k": 3} and spec.namespaces == ("app.**",)


@pytest.mark.parametrize(("entry", "words"), [
    ({"namespaces": ["a.**"], "algorithm_source": "/no/such/file.py"}, "not a .py file"),
    ({"namespaces": []}, "at least one pattern"),
    ({"namespaces": ["re:("]}, "invalid regular expression"),
    ({"namespaces": ["a"], "max_execution_time": 0}, "greater than 0"),
    ({"namespaces": ["a"], "typo_field": 1}, "unknown setting"),
])
def test_bad_custom_algorithm_entries(entry, words):
    p = _problem(CUSTOM_ALGORITHMS={"algo": entry})
    assert p.setting.startswith("CUSTOM_ALGORITHMS") and words in p.reason, p


def test_custom_algorithm_clashing_with_a_built_in_is_refused():
    p = _problem(CUSTOM_ALGORITHMS={"grubbs": {"namespaces": ["a"]}})
    assert p.setting == "CUSTOM_ALGORITHMS" and "also in ALGORITHMS" in p.reason


def test_custom_algorithm_without_source_needs_an_entry_point():
    s = load_settings(CUSTOM_ALGORITHMS={"not_installed": {"namespaces": ["a"]}})
    with pytest.raises(SettingsError) as info:
        from_settings(s)
    assert "entry point" in info.value.problems[0].reason


def test_environment_sets_the_analyzer_settings(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("SKYLINE_ANALYZER_PROCESSES", "2")
    monkeypatch.setenv("SKYLINE_ALGORITHMS", '["grubbs", "ks_test"]')
    monkeypatch.setenv("SKYLINE_CONSENSUS", "2")
    monkeypatch.setenv("SKYLINE_ANALYZER__RESOLUTION", "10")
    s = load_settings()
    assert s.ANALYZER_PROCESSES == 2 and s.ALGORITHMS == ["grubbs", "ks_test"]
    assert s.analyzer.resolution == 10.0
