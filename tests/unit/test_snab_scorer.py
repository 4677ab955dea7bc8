"""The NAB scorer on a small synthetic corpus whose scores are computed by hand, against a
plain per-row reference of the rules, and on the parsing and layout details NAB relies on."""

from __future__ import annotations

import math
from pathlib import PurePosixPath

import numpy as np
import pytest

from skyline.core.errors import InvalidInput
from skyline.snab.corpus import (
    format_results,
    parse_rows,
    parse_windows,
    result_key,
    result_path,
)
from skyline.snab.scorer import (
    NO_DETECTIONS,
    PROFILES,
    Profile,
    ScoredFile,
    locate_windows,
    normalise,
    probationary_rows,
    scaled_sigmoid,
    score_corpus,
)

STANDARD, LOW_FP, LOW_FN = PROFILES


def _stamps(n: int, start: str = "2020-01-01T00:00:00") -> list[str]:
    base = np.datetime64(start, "s")
    return [str(base + np.timedelta64(60 * i, "s")).replace("T", " ") for i in range(n)]


def _csv(stamps: list[str], values: list[float], scores: list[float] | None = None) -> str:
    head = "timestamp,value" + (",anomaly_score" if scores is not None else "")
    lines = [head]
    for i, (t, v) in enumerate(zip(stamps, values, strict=True)):
        lines.append(f"{t},{v}" + (f",{scores[i]}" if scores is not None else ""))
    return "\n".join(lines) + "\n"


# --- the hand-computed corpus -----------------------------------------------------------------
# a.csv: 20 rows, P = floor(3.0) = 3; one window, rows 10..14 (w = 5).
#   row 1 scores 1.0 but is probationary (no detection, not a candidate threshold);
#   row 5 (0.6) lies before the first window: a full false positive, -A_FP;
#   row 11 (0.9): y = -(14 - 11 + 1) / 5 = -0.8, credit S(-0.8) / S(-1) = tanh(2) / tanh(2.5)
#     = 0.964028 / 0.986614 = 0.977107;
#   row 13 (0.95): y = -0.4, credit tanh(1) / tanh(2.5) = 0.761594 / 0.986614 = 0.771927;
#   row 16 (0.8): past the window, y = (16 - 14) / (5 - 1) = 0.5, cost A_FP * S(0.5)
#     = -0.848284 A_FP.
# b.csv: 10 rows, P = 1, no window; row 4 (0.7): -A_FP.
# c.csv: 30 rows, P = floor(4.5) = 4; window rows 20..23 (w = 4); its only detection is on
#   its last row, 23 (0.5): y = -1/4, credit tanh(0.625) / tanh(2.5) = 0.562124; ten rows
#   5..14 score 0.5 too, before the window: -A_FP each. Row 2 (0.99) is probationary.
#
# Raw score by threshold (W = 2, null = -2 A_FN):
#   standard      inf -2 | .95 -0.228073 | .9 -0.022893 | .8 -0.116204 | .7 -0.226204
#                 .6 -0.336204 | .5 -0.336204 + 0.562124 + 1 - 10 x 0.11 = 0.125920  <- best
#   low FP rate   .9 -0.022893 <- best (at .5 the ten FPs cost 2.2 > the window's 1.562)
#   low FN rate   .5 -1.336204 + 0.562124 + 2 - 1.1 = 0.125920 <- best
# normalised: standard 100 (0.125920 + 2) / 4 = 53.148; low FP 100 (2 - 0.022893) / 4 = 49.428;
# low FN 100 (0.125920 + 4) / 6 = 68.765.
EXPECTED = {
    "standard": (0.5, 0.125920, 53.148, 2, 0, 13),
    "reward_low_FP_rate": (0.9, -0.022893, 49.428, 1, 1, 0),
    "reward_low_FN_rate": (0.5, 0.125920, 68.765, 2, 0, 13),
}


def _corpus() -> list[ScoredFile]:
    a = np.zeros(20)
    a[[1, 5, 11, 13, 16]] = [1.0, 0.6, 0.9, 0.95, 0.8]
    b = np.zeros(10)
    b[4] = 0.7
    c = np.zeros(30)
    c[2] = 0.99
    c[5:15] = 0.5
    c[23] = 0.5
    return [ScoredFile("cat/a.csv", a, np.array([[10, 14]])),
            ScoredFile("cat/b.csv", b, np.zeros((0, 2), dtype=np.int64)),
            ScoredFile("cat/c.csv", c, np.array([[20, 23]]))]


def test_hand_computed_corpus():
    result = score_corpus(_corpus())
    assert result.n_windows == 2
    for name, (thr, raw, score, tp, fn, fp) in EXPECTED.items():
        p = result.profiles[name]
        assert p.threshold == thr, name
        assert p.raw == pytest.approx(raw, abs=1e-6), name
        assert p.score == pytest.approx(score, abs=1e-3), name
        assert (p.tp, p.fn, p.fp) == (tp, fn, fp), name


def test_given_thresholds_are_applied_not_optimised():
    # out-of-sample use: the low-FP profile told to use 0.5 gets that threshold's raw score
    given = {"standard": 0.9, "reward_low_FP_rate": 0.5, "reward_low_FN_rate": NO_DETECTIONS}
    result = score_corpus(_corpus(), thresholds=given)
    assert result.profiles["standard"].raw == pytest.approx(-0.022893, abs=1e-6)
    assert result.profiles["reward_low_FP_rate"].raw == pytest.approx(-1.287391, abs=1e-6)
    low_fn = result.profiles["reward_low_FN_rate"]
    assert (low_fn.raw, low_fn.score, low_fn.detections) == (-4.0, 0.0, 0)
    with pytest.raises(InvalidInput, match="no threshold given"):
        score_corpus(_corpus(), thresholds={"standard": 0.5})


def test_per_file_raw_scores_add_up():
    p = score_corpus(_corpus()).profiles["standard"]
    a, b, c = p.per_file_raw
    assert b == pytest.approx(-0.11)  # row 4: a full false positive
    assert a == pytest.approx(0.977107 - 0.11 - 0.11 * 0.848284, abs=1e-6)
    assert a + b + c == pytest.approx(p.raw)


# --- against a plain reference of the rules ----------------------------------------------------
def _reference_raw(files: list[ScoredFile], profile: Profile, threshold: float) -> float:
    """The rules row by row, as nab-scoring.md states them."""
    total = 0.0
    for f in files:
        n = len(f.scores)
        wins = [(int(a), int(b)) for a, b in f.windows]
        best: dict[int, float] = {}
        for i in range(probationary_rows(n), n):
            if f.scores[i] < threshold:
                continue
            inside = [k for k, (a, b) in enumerate(wins) if a <= i <= b]
            if inside:
                a, b = wins[inside[0]]
                credit = profile.tp * float(scaled_sigmoid(-(b - i + 1) / (b - a + 1)))
                credit /= float(scaled_sigmoid(-1.0))
                best[inside[0]] = max(best.get(inside[0], -math.inf), credit)
                continue
            before = [(a, b) for a, b in wins if b < i]
            if not before:
                total -= profile.fp
            else:
                a, b = before[-1]
                total += profile.fp * float(scaled_sigmoid((i - b) / (b - a)))
        for k in range(len(wins)):
            total += best.get(k, -profile.fn)
    return total


def _random_corpus(rng: np.random.Generator) -> list[ScoredFile]:
    files = []
    for f in range(4):
        n = int(rng.integers(30, 120))
        # few distinct values, so that ties between rows (detected together) are common
        scores = rng.choice([0.0, 0.25, 0.5, 0.75, 1.0], size=n, p=[0.6, 0.15, 0.1, 0.1, 0.05])
        k = int(rng.integers(0, 4))
        cuts = np.sort(rng.choice(np.arange(5, n - 1), size=2 * k, replace=False))
        files.append(ScoredFile(f"c/f{f}.csv", scores, cuts.reshape(-1, 2)))
    return files


@pytest.mark.parametrize("seed", range(12))
def test_sweep_matches_the_reference_at_every_threshold(seed):
    files = _random_corpus(np.random.default_rng(seed))
    if sum(len(f.windows) for f in files) == 0:
        files.append(ScoredFile("c/w.csv", np.linspace(0, 1, 40), np.array([[20, 30]])))
    candidates = sorted({float(s) for f in files
                         for s in f.scores[probationary_rows(len(f.scores)):]}) + [math.inf]
    result = score_corpus(files)
    for profile in PROFILES:
        by_threshold = {t: _reference_raw(files, profile, t) for t in candidates}
        best = max(by_threshold.values())
        got = result.profiles[profile.name]
        assert got.raw == pytest.approx(best, abs=1e-9)
        assert by_threshold[got.threshold] == pytest.approx(best, abs=1e-9)
        # every candidate evaluated directly agrees with the reference
        for t in candidates[::3]:
            direct = score_corpus(files, profiles=[profile], thresholds={profile.name: t})
            assert direct.profiles[profile.name].raw == pytest.approx(by_threshold[t], abs=1e-9)


def test_tied_scores_are_detected_together():
    # the FP at row 10 ties with the window's first row: no threshold separates them
    scores = np.zeros(40)
    scores[[10, 20]] = 0.8
    f = ScoredFile("c/t.csv", scores, np.array([[20, 29]]))
    p = score_corpus([f]).profiles["standard"]
    assert p.threshold == 0.8
    assert p.raw == pytest.approx(1.0 - 0.11)
    assert (p.tp, p.fp) == (1, 1)


def test_the_earliest_detection_in_a_window_counts_and_later_ones_add_nothing():
    scores = np.zeros(100)
    scores[[60, 62, 65]] = 1.0
    f = ScoredFile("c/e.csv", scores, np.array([[55, 69]]))
    p = score_corpus([f]).profiles["standard"]
    w = 15
    assert p.raw == pytest.approx(float(scaled_sigmoid(-(69 - 60 + 1) / w)
                                        / scaled_sigmoid(-1.0)))
    assert (p.tp, p.fp, p.detections) == (1, 0, 3)


def test_detecting_nothing_wins_when_every_detection_costs():
    scores = np.zeros(50)
    scores[[10, 30]] = 0.9  # both before the only window
    f = ScoredFile("c/n.csv", scores, np.array([[40, 45]]))
    p = score_corpus([f]).profiles["standard"]
    assert math.isinf(p.threshold)
    assert (p.raw, p.score, p.detections) == (-1.0, 0.0, 0)
    assert p.as_dict()["threshold"] is None  # JSON has no infinity


# --- rules in isolation --------------------------------------------------------------------------
def test_scaled_sigmoid_sample_values():
    got = scaled_sigmoid([-1.0, -0.5, 0.0, 1.0, 3.0, 3.0001, 50.0])
    assert got[:4] == pytest.approx([0.98661, 0.84828, 0.0, -0.98661], abs=1e-5)
    assert got[4] == pytest.approx(2 / (1 + math.exp(15)) - 1)
    assert list(got[5:]) == [-1.0, -1.0]


def test_probationary_period_is_15_percent_capped_at_750_rows():
    assert probationary_rows(4032) == 604
    assert probationary_rows(5000) == 750
    assert probationary_rows(22695) == 750
    assert probationary_rows(10) == 1


def test_normalisation_uses_the_corpus_window_count():
    assert normalise(-116.0, STANDARD, 116) == 0.0
    assert normalise(116.0, STANDARD, 116) == 100.0
    assert normalise(0.0, STANDARD, 116) == pytest.approx(100 * 116 / 232)
    assert normalise(0.0, LOW_FN, 116) == pytest.approx(100 * 232 / 348)
    assert math.isnan(normalise(-1.0, STANDARD, 0))


def test_windows_are_located_by_the_first_exact_timestamp_match():
    text = _csv(["2020-01-01 00:00:00", "2020-01-01 00:01:00", "2020-01-01 00:01:00",
                 "2020-01-01 00:02:00", "2020-01-01 00:00:30", "2020-01-01 00:03:00"],
                [1, 2, 3, 4, 5, 6])
    rows = parse_rows(text, "x")
    windows = parse_windows('{"c/x.csv": [["2020-01-01 00:01:00.000000", '
                            '"2020-01-01 00:03:00.000000"]]}')
    located = locate_windows("c/x.csv", rows.micros, windows["c/x.csv"])
    assert located.tolist() == [[1, 5]]
    with pytest.raises(InvalidInput, match="not a timestamp of any row"):
        locate_windows("c/x.csv", rows.micros, [(rows.micros[0], rows.micros[0] + 1)])


def test_overlapping_windows_are_refused():
    micros = np.arange(10, dtype=np.int64) * 60_000_000
    with pytest.raises(InvalidInput, match="overlap"):
        locate_windows("k", micros, [(micros[1], micros[5]), (micros[4], micros[8])])


def test_results_echo_the_data_rows_verbatim():
    stamps = ["2020-01-01 00:00:00", "2020-01-01 00:00:00", "2019-12-31 23:59:00"]
    rows = parse_rows(_csv(stamps, [1.50, 2, 3.25]), "d")
    text = format_results(rows, np.array([0.0, 1 / 3, 1.0]))
    back = parse_rows(text, "r", results=True)
    assert back.timestamp_text.tolist() == stamps
    assert back.value_text.tolist() == ["1.5", "2", "3.25"]
    assert back.scores is not None and back.scores.tolist() == [0.0, 1 / 3, 1.0]
    with pytest.raises(InvalidInput, match="2 scores for 3 rows"):
        format_results(rows, np.zeros(2))


def test_a_non_numeric_score_is_refused_with_its_row():
    with pytest.raises(InvalidInput, match="row 3: anomaly_score 'x'"):
        parse_rows(_csv(_stamps(2), [1, 2], [0.5, "x"]), "r", results=True)  # type: ignore[list-item]


def test_nab_result_layout():
    assert result_path("det", "realTraffic/speed_6005.csv") == PurePosixPath(
        "det/realTraffic/det_speed_6005.csv")
    assert result_key("det", PurePosixPath("realTraffic/det_speed_6005.csv")) == (
        "realTraffic/speed_6005.csv")
    assert result_key("det", PurePosixPath("realTraffic/other_speed_6005.csv")) is None
