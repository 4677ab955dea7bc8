"""Consensus, scores, early stopping, chunking, error isolation, explanations, the registry and
the custom-algorithm adapters."""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass

import numpy as np
import pytest

from skyline.algorithms import (
    ABSTAIN,
    ANOMALOUS,
    DEFAULT_ALGORITHMS,
    NORMAL,
    NOT_RUN,
    AnalysisParams,
    Batch,
    Ensemble,
    Opinions,
    SeriesAlgorithm,
    UpstreamAlgorithm,
    analyse,
    build,
    discover,
)
from skyline.algorithms.base import BaseAlgorithm
from skyline.core.errors import DuplicateAlgorithm, InvalidInput, UnknownAlgorithm
from skyline.core.events import AnomalyEvent
from tests.algorithm_data import grid


@dataclass(frozen=True)
class Fixed(BaseAlgorithm):
    """Says the same thing about every row: a test double for consensus arithmetic."""

    code: int = ANOMALOUS
    name: str = "fixed"

    def run(self, batch: Batch) -> Opinions:
        n = batch.size
        return Opinions(np.full(n, self.code, dtype=np.int8), np.full(n, 2.0), np.full(n, 1.0),
                        np.full(n, 2.0))


@dataclass(frozen=True)
class Broken(BaseAlgorithm):
    name: str = "broken"

    def run(self, batch: Batch) -> Opinions:
        raise RuntimeError("boom")


def _batch(n_series: int = 5, n: int = 200) -> Batch:
    rng = np.random.default_rng(0)
    return Batch.from_series([(grid(n), rng.normal(0, 1, n)) for _ in range(n_series)])


def _fixed(codes: list[int]) -> tuple[BaseAlgorithm, ...]:
    return tuple(Fixed(code=c, name=f"a{i}") for i, c in enumerate(codes))


def test_consensus_counts_true_votes_and_ignores_abstentions():
    algs = _fixed([ANOMALOUS] * 2 + [ABSTAIN] * 5)
    res = Ensemble(algs, consensus=2).run(_batch())
    assert res.anomalous.all() and (res.votes == 2).all()
    assert (res.opinion_counts == 2).all() and (res.score == 1.0).all()
    res = Ensemble(_fixed([ANOMALOUS, NORMAL, ABSTAIN]), consensus=2).run(_batch())
    assert not res.anomalous.any()
    assert (res.score == 0.5).all()


def test_all_abstaining_is_not_anomalous_and_scores_zero():
    res = Ensemble(_fixed([ABSTAIN] * 3), consensus=1).run(_batch())
    assert not res.anomalous.any() and (res.score == 0).all() and (res.intensity == 0).all()


def test_consensus_must_be_reachable():
    with pytest.raises(InvalidInput):
        Ensemble(_fixed([ANOMALOUS] * 3), consensus=4)
    with pytest.raises(InvalidInput):
        Ensemble(_fixed([ANOMALOUS]), consensus=0)


def test_early_stop_skips_hopeless_rows_without_changing_decisions():
    rng = np.random.default_rng(4)
    series = []
    for i in range(300):
        v = rng.normal(50, 5, 1440)
        if i % 7 == 0:
            v[-3:] += 80
        series.append((grid(1440), v))
    batch = Batch.from_series(series)
    algs = build(DEFAULT_ALGORITHMS)
    full = Ensemble(algs, early_stop=False).run(batch)
    fast = Ensemble(algs, early_stop=True).run(batch)
    np.testing.assert_array_equal(full.anomalous, fast.anomalous)
    assert full.anomalous.sum() >= 40
    assert (fast.verdicts == NOT_RUN).any() and not (full.verdicts == NOT_RUN).any()
    run = fast.verdicts != NOT_RUN
    np.testing.assert_array_equal(full.verdicts[run], fast.verdicts[run])


def test_chunking_does_not_change_results():
    rng = np.random.default_rng(8)
    series = [(grid(n), rng.normal(0, 1, n)) for n in rng.integers(90, 400, 50)]
    batch = Batch.from_series(series)
    algs = build(DEFAULT_ALGORITHMS)
    whole = Ensemble(algs, consensus=3, chunk_rows=1000).run(batch)
    small = Ensemble(algs, consensus=3, chunk_rows=7).run(batch)
    np.testing.assert_array_equal(whole.verdicts, small.verdicts)
    np.testing.assert_allclose(whole.intensity, small.intensity)


def test_a_failing_algorithm_abstains_and_is_reported():
    algs = (*_fixed([ANOMALOUS, ANOMALOUS]), Broken())
    res = Ensemble(algs, consensus=2).run(_batch())
    assert res.anomalous.all()
    assert (res.verdicts[:, 2] == ABSTAIN).all()
    assert res.errors == {"broken": "RuntimeError: boom"}
    assert res.explain(0)[2].text == "abstained: the algorithm failed (RuntimeError: boom)"


def test_a_failing_builtin_still_explains_the_other_rows():
    @dataclass(frozen=True)
    class FailsOnShort(BaseAlgorithm):
        name: str = "fragile"

        def run(self, batch: Batch) -> Opinions:
            if batch.width < 100:
                raise ValueError("too narrow")
            return Fixed(code=NORMAL).run(batch)

    rng = np.random.default_rng(0)
    series = [(grid(n), rng.normal(0, 1, n)) for n in (50, 50, 300, 300)]
    # chunks of two rows: the short rows' chunk fails, the long rows' chunk does not
    res = Ensemble((FailsOnShort(),), consensus=1, chunk_rows=2).run(Batch.from_series(series))
    assert res.failed is not None and list(res.failed[:, 0]) == [True, True, False, False]
    assert list(res.verdicts[:, 0]) == [ABSTAIN, ABSTAIN, NORMAL, NORMAL]
    assert res.errors == {"fragile": "ValueError: too narrow"}
    assert res.explain(0)[0].text.startswith("abstained: the algorithm failed")
    assert res.explain(3)[0].verdict is False


def test_explanations_are_complete_and_serialisable():
    rng = np.random.default_rng(2)
    v = rng.normal(100, 5, 1440)
    v[-3:] += 400
    res = Ensemble(build(DEFAULT_ALGORITHMS), early_stop=False).run(
        Batch.from_series([(grid(1440), v)]))
    assert res.anomalous[0]
    results = res.explain(0)
    assert [r.algorithm for r in results] == list(DEFAULT_ALGORITHMS)
    assert set(res.triggered(0)) == {r.algorithm for r in results if r.verdict}
    sfa = next(r for r in results if r.algorithm == "stddev_from_average")
    assert sfa.verdict is True and sfa.limit == 3.0 and sfa.statistic > 3
    assert sfa.text.startswith("tail ") and "sigma from mean" in sfa.text
    event = AnomalyEvent.build(metric="m", timestamp=1.0, value=float(v[-1]),
                               score=float(res.score[0]), source="analyzer",
                               triggered=res.triggered(0), results=results)
    assert json.loads(event.to_json())["results"][0]["algorithm"] == DEFAULT_ALGORITHMS[0]


def test_intensity_is_the_mean_capped_severity_of_the_opinions():
    @dataclass(frozen=True)
    class Sev(BaseAlgorithm):
        severity: float = 1.0
        name: str = "sev"

        def run(self, batch: Batch) -> Opinions:
            n = batch.size
            return Opinions(np.full(n, NORMAL, dtype=np.int8), np.zeros(n), np.ones(n),
                            np.full(n, self.severity))

    algs = (Sev(severity=0.5, name="a"), Sev(severity=100.0, name="b"),
            Fixed(code=ABSTAIN, name="c"))
    res = Ensemble(algs, consensus=1).run(_batch(1))
    assert res.intensity[0] == pytest.approx((0.5 + 10.0) / 2)


# -- registry --------------------------------------------------------------------------------


class _EP:
    def __init__(self, name, target):
        self.name, self.target = name, target

    def load(self):
        return self.target


def native_last_above(timestamps, values, limit=10.0):
    return bool(values[-1] > limit), float(values[-1])


def test_registry_lists_the_nine_and_accepts_plugins_of_every_form():
    assert len(discover([])) == 9
    found = discover([_EP("inst", Fixed(name="inst")), _EP("fn", native_last_above)])
    assert {"inst", "fn"} <= set(found)
    algs = build(["fn", "grubbs"], registry=found, params={"fn": {"limit": 0.5}})
    assert isinstance(algs[0], SeriesAlgorithm) and algs[0].params == {"limit": 0.5}


def test_registry_refuses_duplicates_and_unknown_names():
    with pytest.raises(DuplicateAlgorithm):
        discover([_EP("grubbs", native_last_above)])
    with pytest.raises(DuplicateAlgorithm):
        discover([_EP("x", native_last_above), _EP("x", native_last_above)])
    with pytest.raises(DuplicateAlgorithm):
        build(["grubbs", "grubbs"])
    with pytest.raises(UnknownAlgorithm):
        build(["nope"])
    with pytest.raises(InvalidInput):
        build(["grubbs"], params={"grubbs": {"no_such_parameter": 1}})
    with pytest.raises(InvalidInput):
        build(["grubbs"], params={"ks_test": {}})


def test_build_keeps_the_callers_order():
    names = ["least_squares", "grubbs", "histogram_bins"]
    assert [a.name for a in build(names)] == names


# -- custom adapters ---------------------------------------------------------------------------


def _returns(value):
    def fn(timestamps, values):
        if isinstance(value, Exception):
            raise value
        return value
    return fn


@pytest.mark.parametrize("value,code,score", [
    (True, ANOMALOUS, np.nan), (False, NORMAL, np.nan), (None, ABSTAIN, np.nan),
    ((True, 0.9), ANOMALOUS, 0.9), ((None, 0.1), ABSTAIN, np.nan),
    (ValueError("bad"), ABSTAIN, np.nan), ("yes", ABSTAIN, np.nan),
])
def test_native_adapter_accepts_every_documented_return(value, code, score):
    op = SeriesAlgorithm(name="c", fn=_returns(value)).run(_batch(2))
    assert (op.verdict == code).all()
    np.testing.assert_allclose(op.statistic, score, equal_nan=True)


def test_native_adapter_sees_each_series_without_padding():
    seen = []

    def spy(timestamps, values):
        seen.append(len(values))
        assert np.isfinite(values).all() and np.all(np.diff(timestamps) > 0)
        return False

    Ensemble((SeriesAlgorithm(name="spy", fn=spy),), consensus=1).run(
        Batch.from_series([(grid(n), np.ones(n)) for n in (3, 10, 7)]))
    assert seen == [3, 10, 7]


def upstream_style(current_skyline_app, parent_pid, timeseries, algorithm_parameters):
    last = timeseries[-1][1]
    anomalous = last > algorithm_parameters["threshold"]
    return anomalous, 1.0 if anomalous else 0.0, {"anomalies": {}}


def test_upstream_adapter_calls_the_upstream_signature():
    rng = np.random.default_rng(1)
    series = [(grid(50), rng.normal(0, 1, 50)) for _ in range(3)]
    series[1][1][-1] = 99.0
    alg = UpstreamAlgorithm(name="up", fn=upstream_style, params={"threshold": 50})
    op = alg.run(Batch.from_series(series))
    assert list(op.verdict) == [NORMAL, ANOMALOUS, NORMAL]
    assert op.statistic[1] == 1.0
    assert pickle.loads(pickle.dumps(alg)).run(Batch.from_series(series)).verdict[1] == ANOMALOUS


def test_custom_algorithms_join_the_vote_through_analyse():
    rng = np.random.default_rng(3)
    series = [(grid(300), rng.normal(0, 1, 300)) for _ in range(4)]
    series[2][1][-1] = 99.0
    registry = {**discover([]), "last_above": lambda **kw: SeriesAlgorithm(
        name="last_above", fn=native_last_above, params=kw)}
    params = AnalysisParams(algorithms=("last_above",), consensus=1, min_tolerable_length=10, detector="consensus")
    res = analyse(series, params, registry=registry)
    assert list(res.anomalous) == [False, False, True, False]
    assert res.triggered(2) == ("last_above",)
