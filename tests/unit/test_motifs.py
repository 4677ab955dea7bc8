"""Ionosphere's motif matcher (analysis.motifs): MASS over profiles, with the shape, range and
area checks; the outage-to-zero case upstream's feature-sum rule silences must not match."""

from __future__ import annotations

import numpy as np
import pytest

from skyline.analysis.motifs import MotifRules, ProfileBank
from skyline.core.errors import InvalidInput
from skyline.core.ionosphere import Profile, features, pack_values, regularise, unpack_values

STEP = 60.0
DAY = 1440
T0 = 1_700_000_000.0


def day(level: float, seed: int, job_at: int | None = None, job: float = 0.0,
        noise: float = 0.02) -> np.ndarray:
    """A day of a metric around `level` with a daily wave, and a job (a bump of +job x
    level lasting 30 minutes) at minute job_at."""
    rng = np.random.default_rng(seed)
    x = np.arange(DAY)
    v = level * (1 + 0.2 * np.sin(2 * np.pi * x / DAY) + noise * rng.normal(size=DAY))
    if job_at is not None:
        v[job_at:job_at + 30] += job * level
    return v


def profile(values: np.ndarray, pid: int = 1, label: str = "not_anomalous",
            start: float = T0) -> Profile:
    return Profile(id=pid, metric="m", label=label, start=start, resolution=STEP,  # type: ignore[arg-type]
                   values=values, anchor=start + STEP * (len(values) - 1))


def candidate(values: np.ndarray, start: float) -> tuple[np.ndarray, np.ndarray, float]:
    t = start + STEP * np.arange(len(values))
    return t, values, float(t[-1])


def test_mass_correlation_equals_direct_computation():
    rng = np.random.default_rng(1)
    prof = rng.normal(size=600).cumsum()
    bank = ProfileBank([profile(prof)], MotifRules(windows_hours=(1.0,), min_correlation=0.01,
                                                   area_tolerance=1e9, range_padding=1e9))
    # a window copied from the profile, with noise: the best position is where it came from
    q = prof[200:260] + rng.normal(0, 0.01, 60)
    t, v, at = candidate(q, T0 + 1e6)
    got = bank.match(t, v, at)["not_anomalous"]
    assert got.offset == 200 * STEP
    seg = prof[200:260]
    direct = np.corrcoef(q, seg)[0, 1]
    assert got.correlation == pytest.approx(direct, abs=1e-9)
    assert got.distance == pytest.approx(np.sqrt(2 * 60 * (1 - direct)), abs=1e-6)


def test_a_repeat_of_a_taught_job_matches_at_another_time_of_day():
    taught = day(100.0, seed=1, job_at=DAY - 30, job=0.6)  # the job ends the day: the alert
    bank = ProfileBank([profile(taught)])
    # a week later, a different noise draw, the same job
    again = day(100.0, seed=2, job_at=DAY - 30, job=0.6)
    t, v, at = candidate(again, T0 + 7 * 86400)
    best = bank.match(t, v, at)
    assert "not_anomalous" in best
    m = best["not_anomalous"]
    assert m.correlation >= 0.8 and m.area_diff <= 0.2


def test_outage_to_zero_never_matches_even_at_a_small_level():
    """Upstream's 1 % feature-sum rule silences this (abs_energy dominates the sum); the range
    check refuses it whatever the shape."""
    for level in (0.5, 100.0, 1e5):
        taught = day(level, seed=3)
        bank = ProfileBank([profile(taught)])
        outage = day(level, seed=4)
        outage[-60:] = 0.0
        t, v, at = candidate(outage, T0 + 86400)
        assert bank.match(t, v, at) == {}, level


def test_a_bigger_spike_than_the_profile_had_is_not_matched():
    taught = day(100.0, seed=5, job_at=DAY - 30, job=0.3)
    bank = ProfileBank([profile(taught)])
    bigger = day(100.0, seed=6, job_at=DAY - 30, job=1.5)
    t, v, at = candidate(bigger, T0 + 86400)
    assert "not_anomalous" not in bank.match(t, v, at)


def test_area_check_refuses_a_level_shift_with_the_same_shape():
    taught = day(100.0, seed=7, job_at=DAY - 30, job=0.5)
    rules = MotifRules(range_padding=10.0)  # only the area check can refuse it
    bank = ProfileBank([profile(taught)], rules)
    shifted = day(100.0, seed=8, job_at=DAY - 30, job=0.5) * 1.5
    t, v, at = candidate(shifted, T0 + 86400)
    assert bank.match(t, v, at) == {}


def test_best_match_per_label_and_disabled_profiles_ignored():
    job = day(100.0, seed=9, job_at=DAY - 30, job=0.6)
    other = day(100.0, seed=10, job_at=DAY - 30, job=0.6)
    bank = ProfileBank([
        profile(job, pid=1),
        profile(other, pid=2, label="anomalous"),
        Profile(id=3, metric="m", label="not_anomalous", start=T0, resolution=STEP,
                values=job, anchor=T0, enabled=False),
    ])
    assert len(bank) == 2
    t, v, at = candidate(day(100.0, seed=11, job_at=DAY - 30, job=0.6), T0 + 86400)
    best = bank.match(t, v, at)
    assert set(best) == {"not_anomalous", "anomalous"}
    assert best["not_anomalous"].profile_id == 1
    assert best["anomalous"].profile_id == 2


def test_profiles_of_other_resolutions_and_lengths_are_searched_together():
    coarse = day(100.0, seed=12, job_at=DAY - 30, job=0.6)[::5]  # 5-minute profile
    p5 = Profile(id=5, metric="m", label="not_anomalous", start=T0, resolution=300.0,
                 values=coarse, anchor=T0)
    short = profile(day(100.0, seed=13)[:400], pid=6)  # too short for 12 h windows
    bank = ProfileBank([p5, short])
    t, v, at = candidate(day(100.0, seed=14, job_at=DAY - 30, job=0.6), T0 + 86400)
    assert bank.match(t, v, at)["not_anomalous"].profile_id == 5


def test_flat_and_short_candidates_do_not_match():
    bank = ProfileBank([profile(day(100.0, seed=15))])
    t, v, at = candidate(np.full(DAY, 100.0), T0)
    assert bank.match(t, v, at) == {}
    t, v, at = candidate(day(100.0, seed=16)[:100], T0)  # under 3 h of points
    assert bank.match(t, v, at) == {}
    # a window with a hole of more than a quarter of it
    t, v, at = candidate(day(100.0, seed=17), T0)
    keep = np.ones(DAY, dtype=bool)
    keep[-170:-20] = False
    assert bank.match(t[keep], v[keep], at) == {} or all(
        m.window_hours > 3 for m in bank.match(t[keep], v[keep], at).values())


def test_rules_are_checked():
    with pytest.raises(InvalidInput):
        MotifRules(windows_hours=())
    with pytest.raises(InvalidInput):
        MotifRules(min_correlation=1.5)


def test_series_helpers_round_trip():
    t = T0 + STEP * np.array([0, 1, 2, 4, 5], dtype=float)  # a missing point
    start, res, v = regularise(t, np.array([1.0, 2, 3, 5, 6]))
    assert (start, res) == (T0, STEP)
    assert v.tolist() == [1, 2, 3, 4, 5, 6]
    assert unpack_values(pack_values(v)).tolist() == v.tolist()
    f = features(v)
    assert f["min"] == 1 and f["max"] == 6 and f["points"] == 6
    with pytest.raises(InvalidInput):
        regularise(np.array([1.0]), np.array([1.0]))


def test_anchor_and_time_of_day_restrict_where_a_match_may_end():
    """A profile whose day holds a job at 06:00 and was taught from an alert at its end:
    a candidate ending in the same job at 06:00 matches anywhere-search; not when the match
    must end near the taught point; with a time-of-day rule only at the same time of day."""
    prof = day(100.0, seed=20, job_at=360, job=0.6)  # the job at minute 360 of the day
    cand_v = day(100.0, seed=21, job_at=360, job=0.6)[:390]  # ends 30 minutes into the job
    t, v, at = candidate(cand_v, T0 + 7 * 86400)  # same time of day as the profile's day
    assert "not_anomalous" in ProfileBank([profile(prof)]).match(t, v, at)
    assert ProfileBank([profile(prof)], MotifRules(anchor=1.0)).match(t, v, at) == {}
    assert "not_anomalous" in ProfileBank([profile(prof)],
                                          MotifRules(time_of_day=1.0)).match(t, v, at)
    t2, v2, at2 = candidate(cand_v, T0 + 7 * 86400 + 8 * 3600)  # 8 hours later in the day
    assert "not_anomalous" in ProfileBank([profile(prof)]).match(t2, v2, at2)
    assert ProfileBank([profile(prof)], MotifRules(time_of_day=2.0)).match(t2, v2, at2) == {}


def test_min_points_and_tail_and_smoothing():
    taught = day(100.0, seed=22, job_at=DAY - 30, job=0.6)
    again = day(100.0, seed=23, job_at=DAY - 30, job=0.6)
    t, v, at = candidate(again, T0 + 86400)
    assert ProfileBank([profile(taught)], MotifRules(min_points=1000)).match(t, v, at) == {}
    assert "not_anomalous" in ProfileBank([profile(taught)],
                                          MotifRules(tail=0.1, smooth=5)).match(t, v, at)
    # the last point far above what the profile's last stretch held: refused by the tail rule
    high = again.copy()
    high[-1] = taught[-30:].max() * 1.08
    t, v, at = candidate(high, T0 + 86400)
    loose = MotifRules(windows_hours=(12.0,), area_tolerance=1.0)
    assert "not_anomalous" in ProfileBank([profile(taught)], loose).match(t, v, at)
    strict = MotifRules(windows_hours=(12.0,), area_tolerance=1.0, tail=0.02,
                        range_padding=0.01)
    assert ProfileBank([profile(taught)], strict).match(t, v, at) == {}


def test_anchored_search_on_cropped_profiles_equals_the_direct_computation():
    """With the anchor rule only the stretch near the taught point is transformed; the best
    match and its correlation are those a direct computation over the allowed ends finds."""
    rng = np.random.default_rng(30)
    profs = [profile(100 + rng.normal(0, 1, 900).cumsum(), pid=i + 1) for i in range(4)]
    rules = MotifRules(windows_hours=(2.0,), min_correlation=0.01, area_tolerance=1e9,
                       range_padding=1e9, anchor=0.5)
    bank = ProfileBank(profs, rules)
    src = profs[2].values
    q = src[900 - 120 - 10:900 - 10] + rng.normal(0, 0.05, 120)  # ends 10 min before anchor
    t, v, at = candidate(q, T0 + 5e6)
    got = bank.match(t, v, at)["not_anomalous"]
    best = (-2.0, -1, -1)
    for p in profs:
        for end in range(900 - 1 - 30, 900):  # ends within 30 minutes of the anchor
            seg = p.values[end - 119:end + 1]
            r = float(np.corrcoef(q, seg)[0, 1])
            best = max(best, (r, p.id, end - 119))
    assert (got.profile_id, got.offset) == (best[1], best[2] * STEP)
    assert got.correlation == pytest.approx(best[0], abs=1e-9)
