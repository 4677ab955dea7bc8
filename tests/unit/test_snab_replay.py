"""Replay (skyline.analysis.replay, through skyline.snab.variants): row by row it must judge
every row with a new point exactly as the analyzer judges that row's history on its own
(analyse() on the prefix, now = the row's timestamp); a row without a new point (a repeated
timestamp, a clock that stepped back) is not judged again, as the analyzer's cursor skips it."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from skyline.algorithms import (
    ABSTAIN,
    BUILTINS,
    AnalysisParams,
    Batch,
    Status,
    analyse,
    make_ensemble,
    prepare,
)
from skyline.analysis.config import from_settings
from skyline.analysis.params import analysis_params
from skyline.analysis.replay import window_starts
from skyline.settings import Settings
from skyline.snab.variants import (
    ANALYZER_SCORE,
    CLASSIC_7,
    CLASSIC_9,
    DEFAULT,
    INTENSITY,
    MEAN_VOTE,
    VARIANTS,
    VERDICT,
    VOTE_SHARE,
    Variant,
    _range_max,
    get,
    hold_back,
    likelihood,
    pipeline_for,
    replay_variant,
)

CONFIG = from_settings(Settings())


def _series(n: int = 260, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """A minute-step series with noise, a flat stretch (Boring), spikes, a repeated timestamp
    and a step back in time, like NAB's files."""
    rng = np.random.default_rng(seed)
    t = 1_600_000_000.0 + 60.0 * np.arange(n)
    v = 10 + np.sin(np.arange(n) / 9) + rng.normal(0, 0.3, n)
    v[60:75] = 7.0
    v[[120, 121, 200]] += [9.0, 8.0, -12.0]
    t[150] = t[149]  # repeated timestamp
    t[230:] -= 600  # the clock steps back ten minutes
    return t, v


def _run(variant: Variant, t, v, **kw):
    return replay_variant(variant, pipeline_for(variant, CONFIG), "m", t, v, **kw)


def _new_rows(t: np.ndarray) -> np.ndarray:
    """Rows that bring a point after every earlier one (the others are skipped)."""
    return t > np.r_[-np.inf, np.maximum.accumulate(t)[:-1]]


SMALL = AnalysisParams(full_duration=3 * 3600, min_tolerable_length=30,
                       max_tolerable_boredom=12, detector="consensus")


@pytest.mark.parametrize("score", [VOTE_SHARE, VERDICT, MEAN_VOTE], ids=lambda s: s.name)
def test_replay_equals_the_analyzer_row_by_row(score):
    t, v = _series()
    scores, got = _run(Variant("t", "test", SMALL, score), t, v, chunk_points=2000)
    assert len(got) == len(t)
    ensemble = make_ensemble(SMALL)
    new = _new_rows(t)
    for i in range(len(t)):
        ref = analyse([(t[:i + 1], v[:i + 1])], SMALL, now=float(t[i]), ensemble=ensemble)
        assert got.status[i] == ref.status[0], i
        if not new[i] or ref.status[0] != Status.OK:
            assert scores[i] == 0.0 and not got.judged[i], i
            continue
        votes = int((got.verdicts[i] == 1).sum())
        assert votes == ref.votes[0], i
        assert int((got.verdicts[i] >= 0).sum()) == ref.opinions[0], i
        if score is VOTE_SHARE:
            assert scores[i] == ref.score[0], i
        elif score is VERDICT:
            assert scores[i] == float(ref.anomalous[0]), i
        else:
            assert scores[i] == ref.votes[0] / len(SMALL.algorithms), i
    # the test data exercises the interesting paths
    assert {Status.OK, Status.TOO_SHORT, Status.BORING} <= set(got.status.tolist())
    assert (got.verdicts == 1).sum(axis=1).max() >= SMALL.consensus
    assert (~new).sum() == 1 + 10  # the repeat, and ten rows behind the clock


def test_score_detector_replay_equals_the_analyzer_row_by_row():
    t, v = _series()
    params = dataclasses.replace(SMALL, detector="score")
    scores, got = _run(Variant("t", "test", params, ANALYZER_SCORE), t, v, chunk_points=2000)
    ensemble = make_ensemble(params)
    new = _new_rows(t)
    flagged = 0
    for i in range(len(t)):
        ref = analyse([(t[:i + 1], v[:i + 1])], params, now=float(t[i]), ensemble=ensemble)
        assert got.status[i] == ref.status[0], i
        expected = ref.score[0] if ref.status[0] == Status.OK and new[i] else 0.0
        assert scores[i] == pytest.approx(expected, abs=1e-12), i
        assert bool(got.fired[i]) == (new[i] and bool(ref.anomalous[0])), i
        flagged += bool(got.fired[i])
    assert flagged >= 2  # the planted spikes


def test_chunking_does_not_change_the_outcome():
    t, v = _series()
    a_scores, whole = _run(CLASSIC_9, t, v)
    b_scores, tiny = _run(CLASSIC_9, t, v, chunk_points=50)
    assert np.array_equal(a_scores, b_scores)
    for field in ("score", "status", "verdicts", "emit", "judged"):
        assert np.array_equal(getattr(whole, field), getattr(tiny, field)), field


def test_expanding_history_sees_every_row_so_far_with_the_anchor():
    t, v = _series()
    scores, got = _run(CLASSIC_7, t, v, chunk_points=3000)
    params = CLASSIC_7.params
    assert params is not None
    ensemble = make_ensemble(params)
    assert CLASSIC_7.history is None and CLASSIC_7.anchor is not None
    new = _new_rows(t)
    for i in range(0, len(t), 7):
        if not new[i]:
            continue
        batch = Batch.from_series([(t[:i + 1], v[:i + 1])], full_duration=CLASSIC_7.anchor)
        ref = ensemble.run(batch)
        assert np.array_equal(got.verdicts[i], ref.verdicts[0]), i
        assert scores[i] == ref.votes[0] / 7
    assert not got.abstained()  # NAB's port had no TooShort/Boring/Stale


def test_first_hour_baseline_includes_the_point_exactly_a_day_back():
    # 30-minute data: NAB's [t - 24 h, t - 23 h) holds two points; an anchor of exactly 24 h
    # (an open interval) would hold one and abstain
    n = 60
    t = 1_600_000_000.0 + 1800.0 * np.arange(n)
    v = np.full(n, 5.0)
    v[::2] = 6.0
    v[-1] = 40.0
    _, got = _run(CLASSIC_7, t, v)
    assert CLASSIC_7.params is not None
    fha = CLASSIC_7.params.algorithms.index("first_hour_average")
    assert got.verdicts[-1, fha] == 1
    assert got.verdicts[47, fha] == ABSTAIN  # less than a day of history


def test_abstentions_are_counted_and_score_zero():
    t, v = _series()
    scores, got = _run(Variant("t", "test", SMALL, VOTE_SHARE), t, v)
    counts = got.abstained()
    assert counts["TooShort"] == SMALL.min_tolerable_length - 1
    assert counts["Boring"] == int(np.sum(got.status == Status.BORING)) > 0
    assert np.all(scores[got.status != Status.OK] == 0.0)


def test_window_starts_follow_the_history():
    t = np.array([0.0, 60, 120, 180, 240, 200, 300])
    assert window_starts(t, None).tolist() == [0] * 7
    # 130 s of history: rows newer than (running newest - 130)
    assert window_starts(t, 130.0).tolist() == [0, 0, 0, 1, 2, 2, 3]


def test_the_default_variant_is_the_product():
    # the settings in force, their pipeline, its detections
    pipeline = pipeline_for(DEFAULT, CONFIG)
    assert pipeline.params == analysis_params(Settings())
    assert DEFAULT.params is None and DEFAULT.score is None
    assert CLASSIC_9.history == 86400.0
    assert CLASSIC_9.params is not None and CLASSIC_7.params is not None
    assert set(CLASSIC_9.params.algorithms) == set(BUILTINS)  # Etsy's nine
    assert math.isinf(CLASSIC_7.params.full_duration)
    assert set(CLASSIC_7.params.algorithms) == set(BUILTINS) - {
        "grubbs", "ks_test"}
    assert set(VARIANTS) >= {"default", "classic-7", "classic-9"}
    with pytest.raises(Exception, match="unknown variant"):
        get("nope")


def test_the_default_variant_scores_what_alerted():
    t, v = _series()
    scores, got = _run(DEFAULT, t, v)
    alerted = np.flatnonzero(scores > 0)
    assert len(alerted) >= 1
    assert np.array_equal(alerted, np.flatnonzero(got.alerted))
    assert all(e.status in ("anomalous", "recovered", "new_level") for e in got.events)


# --- causal post-processing and continuous scores (exploration detectors) ----------------------
def test_hold_back_keeps_the_first_row_of_a_run_and_rows_after_quiet():
    t = 60.0 * np.arange(7)
    s = np.array([0.0, 1.0, 1.0, 1.0, 0.0, 0.5, 1.0])
    # 150 s: row 6 sees rows 4-5 only (0 and 0.5) and fires again; row 5 still sees row 3
    assert hold_back(150.0)(t, s).tolist() == [0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0]
    # a rising run is not a repeat at the higher thresholds that separate its rows
    assert hold_back(600.0)(t[:3], np.array([0.2, 0.5, 0.9])).tolist() == [0.2, 0.5, 0.9]


@pytest.mark.parametrize("post", [hold_back(900.0), likelihood(5, 40)], ids=["hold", "lik"])
def test_post_processing_is_causal(post):
    rng = np.random.default_rng(1)
    t = np.cumsum(rng.choice([60.0, 120.0, 300.0], size=300))
    s = rng.choice([0.0, 0.3, 0.6, 1.0], size=300, p=[0.7, 0.1, 0.1, 0.1])
    full = post(t, s)
    for cut in (1, 50, 173, 299):
        changed = s.copy()
        changed[cut:] = rng.random(300 - cut)
        assert np.array_equal(post(t, changed)[:cut], full[:cut]), cut


def test_range_max_matches_slices():
    rng = np.random.default_rng(2)
    x = rng.normal(size=97)
    lo = rng.integers(0, 97, size=500)
    hi = np.minimum(lo + rng.integers(0, 40, size=500), 97)
    want = [x[a:b].max() if b > a else -np.inf for a, b in zip(lo, hi, strict=True)]
    assert _range_max(x, lo, hi).tolist() == want


def test_likelihood_rises_when_recent_scores_rise():
    t = 60.0 * np.arange(200)
    s = np.zeros(200)
    s[::10] = 0.2
    s[190:] = 1.0
    out = likelihood(5, 100)(t, s)
    assert out[195] > 0.9 > out[150]
    assert np.all((out > 0) & (out < 1))


def test_intensity_rule_is_the_ensembles_intensity():
    t, v = _series()
    det = Variant("t", "test", dataclasses.replace(SMALL, early_stop=False), INTENSITY)
    scores, _ = _run(det, t, v)
    assert det.params is not None
    ensemble = make_ensemble(det.params)
    for i in (100, 121, 200, 259):
        prepared = prepare([(t[:i + 1], v[:i + 1])], det.params)
        ref = ensemble.run(prepared.batches[0])
        assert scores[i] == pytest.approx(float(ref.intensity[0]), rel=1e-12)


def test_replay_applies_the_variants_post_processing():
    t, v = _series()
    plain = Variant("t", "test", dataclasses.replace(SMALL, consensus=3), VERDICT)
    held = dataclasses.replace(plain, post=hold_back(3600.0))
    (a, _), (b, _) = _run(plain, t, v), _run(held, t, v)
    assert np.array_equal(b, hold_back(3600.0)(t, a))
    assert 0 < b.sum() < a.sum()  # repeats within the hour are dropped


@pytest.mark.parametrize("detector", ["score", "consensus"])
def test_side_by_side_replay_equals_each_series_alone(detector):
    from skyline.analysis.incidents import IncidentRules
    from skyline.analysis.pipeline import Pipeline
    from skyline.analysis.replay import replay, replay_many

    # early stop decides alike in any company, but which normal rows' later algorithms still
    # ran depends on the other rows of a chunk: without it every opinion must match
    params = dataclasses.replace(SMALL, detector=detector, early_stop=False)
    pipe = Pipeline(params, IncidentRules(expiration=600, recovery=300, new_level_after=1800))
    series = []
    for k, n in enumerate((260, 240, 400)):
        t, v = _series(n, seed=k)
        v[n // 2:n // 2 + 30] += 30 * (k + 1)  # something to open, re-alert and close
        series.append((f"m{k}", t, v))
    together = replay_many(series, pipe, chunk_points=3000)
    for (name, t, v), got in zip(series, together, strict=True):
        alone = replay(name, t, v, pipe)
        for field in ("status", "judged", "fired", "emit", "vetoed", "verdicts"):
            assert np.array_equal(getattr(got, field), getattr(alone, field)), (name, field)
        # batched with other series' windows, sums may group differently in the last bit
        np.testing.assert_allclose(got.score, alone.score, rtol=1e-12, atol=1e-15)
        assert [(e.metric, e.point, e.status) for e in got.events] == \
            [(e.metric, e.point, e.status) for e in alone.events]
    assert sum(len(r.events) for r in together) >= 3
