"""Stages: confirm / veto / abstain in order, the first veto ends the chain, and a stage that
errs, answers garbage or runs past the budget abstains (fail open); a veto in the pipeline
closes the incident it opened and lets the point teach."""

from __future__ import annotations

import time

import numpy as np
import pytest

from skyline.algorithms import AnalysisParams, prepare
from skyline.analysis.incidents import IncidentRules
from skyline.analysis.pipeline import Pipeline
from skyline.analysis.stages import STAGES, Candidate, MarginStage, Stages, build
from skyline.core.errors import InvalidInput, UnknownAlgorithm
from skyline.core.events import StageVerdict


def _candidate(value: float = 150.0, low: float = 90.0, high: float = 110.0) -> Candidate:
    return Candidate(metric="app.x", timestamp=1.0, value=value, score=0.9, band_low=low,
                     band_high=high, window_timestamps=np.arange(3.0),
                     window_values=np.ones(3))


class Fixed:
    def __init__(self, name: str, verdict: str, calls: list[str] | None = None) -> None:
        self.name, self.verdict, self.calls = name, verdict, calls

    def check(self, c: Candidate, deadline: float) -> StageVerdict:
        if self.calls is not None:
            self.calls.append(self.name)
        return StageVerdict(self.name, self.verdict, f"{self.name} says {self.verdict}",
                            {"x": 1.0})


class Boom:
    name = "boom"

    def check(self, c: Candidate, deadline: float) -> StageVerdict:
        raise RuntimeError("remote history down")


class Slow:
    name = "slow"

    def __init__(self, clock: list[float]) -> None:
        self.clock = clock

    def check(self, c: Candidate, deadline: float) -> StageVerdict:
        self.clock[0] += 5.0  # takes five (fake) seconds
        return StageVerdict(self.name, "veto", "too late to count")


def test_the_first_veto_ends_the_chain():
    calls: list[str] = []
    stages = Stages([Fixed("a", "confirm", calls), Fixed("b", "veto", calls),
                     Fixed("c", "confirm", calls)])
    vetoed, verdicts = stages.check(_candidate())
    assert vetoed and calls == ["a", "b"]
    assert [v.verdict for v in verdicts] == ["confirm", "veto"]
    assert verdicts[1].reason == "b says veto" and verdicts[1].figures == {"x": 1.0}
    assert stages.stats.vetoed == 1 and stages.stats.checked == 1


def test_confirm_and_abstain_let_the_candidate_through():
    stages = Stages([Fixed("a", "abstain"), Fixed("b", "confirm")])
    vetoed, verdicts = stages.check(_candidate())
    assert not vetoed and len(verdicts) == 2


def test_a_failing_stage_abstains_and_the_chain_goes_on(caplog):
    stages = Stages([Boom(), Fixed("b", "confirm")])
    for _ in range(3):
        vetoed, verdicts = stages.check(_candidate())
        assert not vetoed
        assert verdicts[0].verdict == "abstain" and "remote history down" in verdicts[0].reason
    assert stages.stats.errors == 3
    assert sum("boom" in r.message for r in caplog.records) == 1  # logged once


def test_a_stage_past_the_budget_abstains_even_if_it_vetoed():
    now = [0.0]
    stages = Stages([Slow(now)], budget=1.0, clock=lambda: now[0])
    vetoed, verdicts = stages.check(_candidate())
    assert not vetoed and verdicts[0].verdict == "abstain"
    assert "budget" in verdicts[0].reason and stages.stats.overruns == 1


def test_a_garbage_answer_abstains():
    stages = Stages([Fixed("odd", "perhaps")])
    vetoed, verdicts = stages.check(_candidate())
    assert not vetoed and verdicts[0].verdict == "abstain" and "perhaps" in verdicts[0].reason


class Batching:
    """A stage that judges a step's candidates together; vetoes those above 140."""

    name = "batching"

    def __init__(self, clock: list[float] | None = None, fail: bool = False) -> None:
        self.calls: list[int] = []
        self.clock, self.fail = clock, fail

    def check(self, c: Candidate, deadline: float) -> StageVerdict:
        raise AssertionError("a batching stage is called through check_many")

    def check_many(self, cands, deadline):
        self.calls.append(len(cands))
        if self.fail:
            raise RuntimeError("history store down")
        if self.clock is not None:
            self.clock[0] += 5.0 * len(cands)
        return [StageVerdict(self.name, "veto" if c.value > 140 else "confirm", "batch")
                for c in cands]


def test_check_many_calls_a_batching_stage_once_with_the_candidates_not_yet_vetoed():
    cands = [_candidate(150.0), _candidate(130.0), _candidate(145.0), _candidate(120.0)]
    batching = Batching()
    calls: list[str] = []
    stages = Stages([batching, Fixed("after", "veto", calls)])
    got = stages.check_many(cands)
    assert batching.calls == [4]  # one call for the step
    assert calls == ["after", "after"]  # the others, one by one, after the batch's vetoes
    assert [v for v, _ in got] == [True, True, True, True]
    assert [len(vs) for _, vs in got] == [1, 2, 1, 2]
    assert stages.stats.checked == 4 and stages.stats.vetoed == 4
    def plain(x):
        return [(v, [(s.stage, s.verdict, s.reason) for s in vs]) for v, vs in x]

    assert plain(got) == plain([stages.check(c) for c in cands])


def test_a_batch_that_fails_or_overruns_abstains_for_each_candidate():
    cands = [_candidate(150.0), _candidate(130.0)]
    stages = Stages([Batching(fail=True)])
    got = stages.check_many(cands)
    assert all(not v and vs[0].verdict == "abstain" and "history store down" in vs[0].reason
               for v, vs in got)
    assert stages.stats.errors == 2
    now = [0.0]
    stages = Stages([Batching(now)], budget=1.0, clock=lambda: now[0])  # 10 s for 2 x 1 s
    got = stages.check_many(cands)
    assert all(not v and "budget" in vs[0].reason for v, vs in got)
    assert stages.stats.overruns == 2


@pytest.mark.parametrize(("value", "verdict"), [(150.0, "confirm"), (111.0, "veto"),
                                                (89.5, "veto"), (10.0, "confirm")])
def test_margin_stage(value, verdict):
    got = MarginStage(min_excess=0.1).check(_candidate(value), time.monotonic() + 1)
    assert got.verdict == verdict


def test_margin_stage_scope_and_missing_band():
    scoped = MarginStage(min_excess=0.1, namespaces=("db.**",))
    assert scoped.check(_candidate(111.0), 1e18).verdict == "abstain"
    unbounded = MarginStage(min_excess=0.1)
    assert unbounded.check(_candidate(111.0, high=np.inf), 1e18).verdict == "abstain"


def test_build_refuses_unknown_twice_and_bad_options():
    assert [s.name for s in build(["margin"], {})] == ["margin"]
    with pytest.raises(UnknownAlgorithm, match="unknown stage"):
        build(["nope"], {})
    with pytest.raises(InvalidInput):
        build(["margin", "margin"], {})
    with pytest.raises(InvalidInput):
        build(["margin"], {"margin": {"min_excess": "lots"}})
    assert "margin" in STAGES


def _spike_pipeline(stages: Stages) -> tuple[Pipeline, list[str]]:
    params = AnalysisParams(detector="score", min_tolerable_length=10)
    return Pipeline(params, IncidentRules(), stages=stages), ["m"]


def test_a_vetoed_candidate_is_recorded_and_closes_its_incident():
    t = 1.7e9 + 60.0 * np.arange(200)
    v = np.random.default_rng(1).normal(100, 1, 200)
    v[-1] = 300.0
    pipe, names = _spike_pipeline(Stages([Fixed("nope", "veto")]))
    states = pipe.fresh(1)
    prepared = prepare([(t, v)], pipe.params, analyse_all=True)
    result = pipe.run(names, prepared, states)
    (ev,) = result.events
    assert ev.status == "vetoed" and ev.stages[0].stage == "nope"
    assert states["incident"]["open"][0] == 0  # not an incident after all
    # a confirmed one stays open
    pipe2, _ = _spike_pipeline(Stages([Fixed("yes", "confirm")]))
    states2 = pipe2.fresh(1)
    result2 = pipe2.run(names, prepared, states2)
    assert [e.status for e in result2.events] == ["anomalous"]
    assert states2["incident"]["open"][0] == 1


class Peek:
    """Records the history a stage is offered."""

    name = "peek"

    def __init__(self) -> None:
        self.seen: list[tuple[float, float]] = []

    def check(self, c: Candidate, deadline: float) -> StageVerdict:
        assert c.history is not None
        t, _ = c.history(0.0, 1e18)
        self.seen.append((c.timestamp, float(t.max())))
        return StageVerdict(self.name, "confirm", "looked")


def test_in_replay_a_stage_sees_the_series_up_to_the_candidate_never_after():
    from skyline.analysis.replay import replay

    t = 1.7e9 + 60.0 * np.arange(400)
    v = np.random.default_rng(2).normal(100, 1, 400)
    v[[200, 300]] = [300.0, 600.0]
    peek = Peek()
    pipe, _ = _spike_pipeline(Stages([peek]))
    r = replay("m", t, v, pipe)
    assert [e.status for e in r.events if e.status != "recovered"] == ["anomalous"] * 2
    assert peek.seen == [(t[200], t[200]), (t[300], t[300])]
    assert pipe.history is None  # restored after the replay
