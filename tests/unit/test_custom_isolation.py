"""Custom algorithms run in a child process that is killed at max_execution_time: a hung one
(in Python, or stuck in C where no signal handler runs) is stopped, marked errored for that
metric and counted; a raising one abstains; the run goes on and the next call works.

Wall time is only asserted as a generous upper bound that proves a hung algorithm (which
would run for 10 minutes) was killed."""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from skyline.algorithms import AnalysisParams
from skyline.analysis.customs import CustomSpec
from skyline.analysis.isolation import Isolation
from skyline.analysis.judge import Judge

HUNG = 600  # seconds a hung algorithm would take; the bound below is far under it
BOUND = 60.0

ALGORITHMS = {
    "spiky": """
        def spiky(current_skyline_app, parent_pid, timeseries, algorithm_parameters):
            values = [v for _, v in timeseries]
            limit = algorithm_parameters.get("limit", 10)
            assert algorithm_parameters["metric"]  # upstream injects metric and base_name
            return (values[-1] > limit, 0.9 if values[-1] > limit else 0.1)
    """,
    "sleepy": f"""
        import time
        def sleepy(current_skyline_app, parent_pid, timeseries, algorithm_parameters):
            time.sleep({HUNG})
            return True, 1.0
    """,
    "c_sleep": f"""
        import ctypes
        def c_sleep(current_skyline_app, parent_pid, timeseries, algorithm_parameters):
            ctypes.CDLL(None).sleep({HUNG})  # blocked in libc: no Python signal handler runs
            return True, 1.0
    """,
    "c_spin": """
        import re
        def c_spin(current_skyline_app, parent_pid, timeseries, algorithm_parameters):
            # catastrophic backtracking: a busy loop inside the C regex engine, holding the GIL
            re.match(r"(a+)+$", "a" * 64 + "b")
            return True, 1.0
    """,
    "boom": """
        def boom(current_skyline_app, parent_pid, timeseries, algorithm_parameters):
            raise ValueError("kaput")
    """,
    "import_error": """
        raise RuntimeError("cannot even load")
        def import_error(current_skyline_app, parent_pid, timeseries, algorithm_parameters):
            return True, 1.0
    """,
}


@pytest.fixture
def specs(tmp_path: Path) -> dict[str, CustomSpec]:
    out = {}
    for name, code in ALGORITHMS.items():
        path = tmp_path / f"{name}.py"
        path.write_text(textwrap.dedent(code))
        out[name] = CustomSpec(name=name, namespaces=("**",), source=str(path),
                               params={"limit": 10} if name == "spiky" else {}, max_time=1.0)
    return out


def _rows(n: int, last: float = 5.0):
    t = 1.7e9 + 60.0 * np.arange(150)
    rows = []
    for i in range(n):
        v = np.full(150, 1.0) + np.arange(150) % 3
        v[-1] = last
        rows.append((f"app.m{i}", t, v))
    return rows


def test_a_working_algorithm_gives_verdicts(specs):
    with Isolation([specs["spiky"]]) as box:
        out = box.run("spiky", _rows(2, last=50.0) + _rows(1, last=1.0))
    assert [o.verdict for o in out] == [1, 1, 0]
    assert out[0].score == pytest.approx(0.9) and not out[0].failure
    assert "custom algorithm" in out[0].text


@pytest.mark.parametrize("name", ["sleepy", "c_sleep", "c_spin"])
def test_a_hung_algorithm_is_killed_at_its_limit_and_skipped_for_the_rest(specs, name):
    with Isolation([specs[name], specs["spiky"]]) as box:
        started = time.monotonic()
        out = box.run(name, _rows(5))
        took = time.monotonic() - started
        assert took < BOUND, f"{name} was not stopped: {took:.1f}s"
        assert out[0].failure == "timeout" and out[0].verdict == -1
        assert "timed out" in out[0].text and "killed" in out[0].text
        assert [o.failure for o in out[1:]] == ["skipped"] * 4
        assert box.restarts == 1
        # the replacement process serves the next call
        assert [o.verdict for o in box.run("spiky", _rows(1, last=50.0))] == [1]


def test_a_raising_algorithm_abstains_per_series_and_the_rest_still_run(specs):
    with Isolation([specs["boom"]]) as box:
        out = box.run("boom", _rows(3))
    assert [o.failure for o in out] == ["error"] * 3
    assert all(o.verdict == -1 for o in out)
    assert "ValueError: kaput" in out[0].error and "kaput" in out[0].text
    assert box.restarts == 0


def test_an_algorithm_that_cannot_load_is_unavailable_and_the_others_work(specs):
    with Isolation([specs["import_error"], specs["spiky"]]) as box:
        out = box.run("import_error", _rows(2))
        assert [o.failure for o in out] == ["unavailable"] * 2
        assert "cannot even load" in out[0].error
        assert [o.verdict for o in box.run("spiky", _rows(1, last=50.0))] == [1]


def _series(n: int):
    t = 1.7e9 + 60.0 * np.arange(200)
    rng = np.random.default_rng(0)
    return [(t, rng.normal(5.0, 1.0, 200)) for _ in range(n)]


def test_judge_counts_and_explains_a_hung_custom_algorithm(specs):
    params = AnalysisParams(consensus=6, detector="consensus")
    spec = CustomSpec(name="c_sleep", namespaces=("app.**",), source=specs["c_sleep"].source,
                      max_time=0.5)
    names = ["app.a", "app.b", "other.c"]
    with Isolation([spec]) as box:
        started = time.monotonic()
        v = Judge(params, [spec], isolation=box).judge_series(names, _series(3), now=None)
        assert time.monotonic() - started < BOUND
    assert dict(v.failures.counts["c_sleep"]) == {"timeout": 1, "skipped": 1}
    assert "max_execution_time" in v.failures.first["c_sleep"]
    a = v.judgement(0)
    assert a.results[-1].algorithm == "c_sleep" and a.results[-1].verdict is None
    assert "timed out" in a.results[-1].text
    assert [r.algorithm for r in v.judgement(2).results][-1] == "least_squares"  # out of scope
    assert not v.anomalous.any()


def test_consensus_one_fires_alone_and_a_vote_joins_the_ensemble(specs):
    alone = CustomSpec(name="spiky", namespaces=("app.**",), source=specs["spiky"].source,
                       params={"limit": 0}, alone=True)
    series = _series(2)
    with Isolation([alone]) as box:
        v = Judge(AnalysisParams(consensus=6, detector="consensus"), [alone], isolation=box).judge_series(
            ["app.a", "other.b"], series, now=None)
    assert v.anomalous.tolist() == [True, False]  # normal data: only the custom one fired
    assert v.judgement(0).triggered == ("spiky",)
    voter = CustomSpec(name="spiky", namespaces=("app.**",), source=specs["spiky"].source,
                       params={"limit": 0})
    with Isolation([voter]) as box:
        v = Judge(AnalysisParams(consensus=6, detector="consensus"), [voter], isolation=box).judge_series(
            ["app.a"], series[:1], now=None)
    assert not v.anomalous[0]  # one vote of ten is not CONSENSUS 6
    assert v.judgement(0).results[-1].verdict is True


def test_a_veto_clears_an_anomaly_and_no_3sigma_skips_the_ensemble(specs):
    t = 1.7e9 + 60.0 * np.arange(200)
    v = np.random.default_rng(1).normal(5.0, 1.0, 200)
    v[-3:] += 100  # every built-in sees this spike
    veto = CustomSpec(name="spiky", namespaces=("**",), source=specs["spiky"].source,
                      params={"limit": 1e9}, veto=True)  # says "not anomalous"
    with Isolation([veto]) as box:
        out = Judge(AnalysisParams(consensus=6, detector="consensus"), [veto], isolation=box).judge_series(
            ["x"], [(t, v)], now=None)
    assert out.analysis.anomalous[0] and not out.anomalous[0]
    only = CustomSpec(name="spiky", namespaces=("**",), source=specs["spiky"].source,
                      params={"limit": 1e9}, run_3sigma=False)
    with Isolation([only]) as box:
        out = Judge(AnalysisParams(consensus=6, detector="consensus"), [only], isolation=box).judge_series(
            ["x"], [(t, v)], now=None)
    assert not out.anomalous[0]
    assert [r.algorithm for r in out.judgement(0).results] == ["spiky"]


def test_entry_point_forms_load_natively(monkeypatch: pytest.MonkeyPatch):
    """No algorithm_source: the skyline.algorithms entry point of that name (loaded here in
    process, as the isolation child does)."""
    from skyline.algorithms import Batch, SeriesAlgorithm
    from skyline.analysis import customs as customalgos

    def native(timestamps, values, threshold=10.0):
        if values[-1] < 0:
            raise ArithmeticError("negative")
        return bool(values[-1] > threshold), float(values[-1])

    class EP:
        def __init__(self, name, target):
            self.name, self._target = name, target

        def load(self):
            return self._target

    monkeypatch.setattr(customalgos.metadata, "entry_points",
                        lambda group: [EP("native", native)])
    loaded = customalgos.load(CustomSpec(name="native", namespaces=("**",),
                                         params={"threshold": 5.0}))
    assert isinstance(loaded.algorithm, SeriesAlgorithm)
    t = np.arange(3.0)
    op = loaded.for_metric("m").run(Batch(t[None, :], np.array([[1.0, 2.0, 9.0]]),
                                          np.array([3])))
    assert op.verdict[0] == 1 and op.statistic[0] == 9.0
    op = loaded.algorithm.run(Batch(t[None, :], np.array([[1.0, 2.0, -1.0]]), np.array([3])))
    assert op.verdict[0] == -1 and loaded.recorder is not None
    assert loaded.recorder.error == "ArithmeticError: negative"
    with pytest.raises(Exception, match="no skyline.algorithms entry point"):
        customalgos.load(CustomSpec(name="other", namespaces=("**",)))


def test_optional_builtins_are_scoped_to_namespaces_like_custom_algorithms():
    """CUSTOM_ALGORITHMS can opt a namespace into a costly optional built-in by name."""
    from skyline.algorithms.extra.abs_stddev_from_median import AbsStddevFromMedian
    from skyline.analysis import customs as customalgos

    spec = CustomSpec(name="abs_stddev_from_median", namespaces=("db.**",),
                      params={"sigma": 3.0})
    customalgos.check_entry_points((spec,), names={})
    loaded = customalgos.load(spec)
    assert isinstance(loaded.algorithm, AbsStddevFromMedian)
    assert spec.matcher().any("db.queries") and not spec.matcher().any("web.requests")
    with pytest.raises(Exception, match="no algorithm_source"):
        customalgos.check_entry_points((CustomSpec(name="nope", namespaces=("**",)),), names={})
