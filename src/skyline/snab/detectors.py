"""Named detector configurations for NAB replay: what history each row's analysis sees, the
analysis parameters (the same AnalysisParams the analyzer runs with), and how one row's
ensemble outcome becomes NAB's anomaly_score.

Nothing here reads labels, and no parameter depends on the file: a configuration is judged on
the whole corpus with one threshold per profile, as NAB requires.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from skyline.algorithms import ANOMALOUS, AnalysisParams
from skyline.algorithms.ensemble import INTENSITY_CAP
from skyline.core.errors import InvalidInput
from skyline.core.types import FloatArray


@dataclass(frozen=True)
class RowOpinions:
    """The ensemble's outcome for some analysed rows: verdict codes and severities, one column
    per algorithm (severity: statistic over limit, 1 at the limit; NaN without an opinion)."""

    verdicts: npt.NDArray[np.int8]
    severity: FloatArray
    consensus: int
    score: FloatArray  # the analyzer's score (EnsembleResult.score)

    @property
    def votes(self) -> FloatArray:
        return np.asarray((self.verdicts == ANOMALOUS).sum(axis=1), dtype=np.float64)

    @property
    def opinions(self) -> FloatArray:
        return np.asarray((self.verdicts >= 0).sum(axis=1), dtype=np.float64)


ScoreFn = Callable[[RowOpinions], FloatArray]
PostFn = Callable[[FloatArray, FloatArray], FloatArray]  # (timestamps, scores)
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class ScoreRule:
    """Turns analysed rows' opinions into one anomaly_score per row."""

    name: str
    doc: str
    fn: ScoreFn

    def __call__(self, rows: RowOpinions) -> FloatArray:
        return self.fn(rows)


def _mean_vote(r: RowOpinions) -> FloatArray:
    return r.votes / r.verdicts.shape[1]


def _vote_share(r: RowOpinions) -> FloatArray:
    given = r.opinions
    return np.where(given > 0, r.votes / np.maximum(given, 1), 0.0)


def _verdict(r: RowOpinions) -> FloatArray:
    return np.asarray(r.votes >= r.consensus, dtype=np.float64)


MEAN_VOTE = ScoreRule(
    "mean-vote", "True votes / algorithms in the ensemble: an abstention counts as a False vote "
    "(NAB's port had no abstentions; its algorithms returned False instead)", _mean_vote)
VOTE_SHARE = ScoreRule(
    "vote-share", "True votes / opinions given (abstentions left out): the analyzer's score",
    _vote_share)
VERDICT = ScoreRule(
    "verdict", "1 when at least CONSENSUS algorithms vote True, else 0: what the analyzer "
    "alerts on", _verdict)


ANALYZER_SCORE = ScoreRule(
    "analyzer-score", "the analyzer's own score: for the score detector the anomaly score "
    "range_excess gives, which the analyzer compares with ANOMALY_SCORE_THRESHOLD",
    lambda r: r.score)


def _intensity(r: RowOpinions) -> FloatArray:
    capped = np.clip(np.nan_to_num(r.severity, nan=0.0), 0.0, INTENSITY_CAP)
    given = r.opinions
    return np.where(given > 0, capped.sum(axis=1) / np.maximum(given, 1), 0.0)


INTENSITY = ScoreRule(
    "intensity", "mean over the algorithms with an opinion of their severity (statistic / "
    "limit, 1 at the limit) capped at 10: the ensemble's continuous score", _intensity)


# -- causal post-processing of a file's score sequence ---------------------------------------
def _range_max(x: FloatArray, lo: IntArray, hi: IntArray) -> FloatArray:
    """max(x[lo[i]:hi[i]]) for every i (-inf for an empty range), from a sparse table of
    power-of-two block maxima: log2(n) passes, no loop per row."""
    n = len(x)
    out = np.full(len(lo), -np.inf)
    size = hi - lo
    has = size > 0
    if n == 0 or not has.any():
        return out
    table = [x]
    while 2 ** len(table) <= n:
        prev, half = table[-1], 2 ** (len(table) - 1)
        table.append(np.maximum(prev[:-half], prev[half:]))
    level = np.zeros(len(lo), dtype=np.int64)
    level[has] = np.floor(np.log2(size[has])).astype(np.int64)
    for k in np.unique(level[has]).tolist():
        rows = np.flatnonzero(has & (level == k))
        block = table[k]
        out[rows] = np.maximum(block[lo[rows]], block[hi[rows] - 2 ** k])
    return out


def hold_back(seconds: float) -> PostFn:
    """Keep a row's score only when it beats every score of the rows in the `seconds` before
    it, else 0. At any threshold, a run of equal or falling scores is then detected once, on
    its first row, and again only after `seconds` of quiet: upstream Skyline's alert expiry
    (an alert for a metric is not repeated within EXPIRATION_TIME). Without it the analyzer
    alerts on every row while an anomaly lasts, and NAB counts each repeat outside a window as
    another false positive."""

    def post(timestamps: FloatArray, scores: FloatArray) -> FloatArray:
        newest = np.maximum.accumulate(timestamps) if len(timestamps) else timestamps
        idx = np.arange(len(scores), dtype=np.int64)
        lo = np.searchsorted(newest, newest - seconds, side="right").astype(np.int64)
        prior = _range_max(scores, np.minimum(lo, idx), idx)
        return np.where(scores > prior, scores, 0.0)

    post.__name__ = f"hold_back({seconds:g} s)"  # how describe() and --json name it
    return post


def _rolling_mean(x: FloatArray, rows: int) -> FloatArray:
    """Mean of x[max(0, i - rows + 1) .. i] for every i, by cumulative sums."""
    c = np.concatenate([[0.0], np.cumsum(x)])
    hi = np.arange(1, len(x) + 1)
    lo = np.maximum(hi - rows, 0)
    return np.asarray((c[hi] - c[lo]) / (hi - lo), dtype=np.float64)


def likelihood(short: int, long: int, floor: float = 1e-3) -> PostFn:
    """Anomaly likelihood in the manner of Numenta's (windows in rows, as theirs): how far
    the mean score of the last `short` rows lies above the mean of the last `long` rows, in their standard deviations
    (floored, so a file that never scored does not divide by zero). Mapped to (0, 1) by
    0.5 + atan(z) / pi, which never saturates, so the threshold sweep can still rank rows."""

    def post(timestamps: FloatArray, scores: FloatArray) -> FloatArray:
        if len(scores) == 0:
            return scores
        recent = _rolling_mean(scores, short)
        mean = _rolling_mean(scores, long)
        var = np.maximum(_rolling_mean(scores * scores, long) - mean * mean, 0.0)
        z = (recent - mean) / np.maximum(np.sqrt(var), floor)
        return np.asarray(0.5 + np.arctan(z) / np.pi, dtype=np.float64)

    post.__name__ = f"likelihood({short}, {long})"
    return post


@dataclass(frozen=True)
class Detector:
    """One replay configuration.

    history: params.full_duration seconds before each row (the analyzer's window), or every
    row so far when full_duration is infinite. anchor: the FULL_DURATION the algorithms are
    told, when it differs from the window (first_hour_average's baseline is the hour that
    starts FULL_DURATION before the last point; an expanding history still needs one).
    post: a causal transformation of the file's scores, post(timestamps, scores) (row i's
    output may depend on rows <= i only), applied after the rows are scored.
    """

    name: str
    summary: str
    params: AnalysisParams
    score: ScoreRule
    anchor: float | None = None
    post: PostFn | None = None

    def __post_init__(self) -> None:
        if math.isinf(self.params.full_duration) and self.anchor is None:
            raise InvalidInput(f"detector {self.name}: an expanding history needs an anchor "
                               "for FULL_DURATION-relative algorithms")

    @property
    def history(self) -> float | None:
        """Seconds of history per row; None: every row so far."""
        fd = self.params.full_duration
        return None if math.isinf(fd) else fd

    def describe(self) -> dict[str, object]:
        p = self.params
        return {"name": self.name, "summary": self.summary,
                "history": "all rows so far" if self.history is None else self.history,
                "algorithms": list(p.algorithms), "consensus": p.consensus,
                "score": self.score.name,
                "post": None if self.post is None else getattr(self.post, "__name__", "post"),
                "resolution": p.resolution,
                "min_tolerable_length": p.min_tolerable_length,
                "detect_counters": p.detect_counters, "early_stop": p.early_stop,
                "detector": p.detector,
                "score_threshold": p.score_threshold if p.detector == "score" else None,
                "score_tail": p.score_tail, "short_fraction": p.short_fraction}


# NAB's port (nab/detectors/skyline): seven of Etsy's algorithms in this order, grubbs and
# ks_test left out
NAB_SEVEN: tuple[str, ...] = (
    "median_absolute_deviation", "first_hour_average", "stddev_from_average",
    "stddev_from_moving_average", "mean_subtraction_cumulation", "least_squares",
    "histogram_bins")

# Etsy's nine, pinned here so the classic configurations do not follow later changes of the
# project's default ALGORITHMS (the `default` detector does follow them)
ETSY_NINE: tuple[str, ...] = (
    "histogram_bins", "first_hour_average", "stddev_from_average", "grubbs", "ks_test",
    "mean_subtraction_cumulation", "median_absolute_deviation", "stddev_from_moving_average",
    "least_squares")

NO_CAP = 1 << 40  # max_points: keep every point of the window

CLASSIC_7 = Detector(
    name="classic-7",
    summary="NAB's port of Etsy Skyline: seven algorithms on every row so far, score = mean "
            "of the votes",
    params=AnalysisParams(
        full_duration=math.inf, algorithms=NAB_SEVEN, consensus=1,
        # NAB's port had no exception checks: the boredom test is switched off by asking for
        # 2 distinct values among the last 1, which can never happen
        max_tolerable_boredom=1, boredom_set_size=2, stale_period=math.inf,
        resolution=None, max_points=NO_CAP, detect_counters=False, min_tolerable_length=1,
        early_stop=False, detector="consensus"),
    # NAB's first_hour_average baseline is [t - 24 h, t - 23 h) before the last point t; ours
    # is the open interval (t - FULL_DURATION, t - FULL_DURATION + 1 h), which on NAB's
    # whole-second timestamps is the same set of points when FULL_DURATION is 24 h + 0.5 s
    # (without the half second, 30-minute data keeps 1 baseline point instead of 2, and the
    # algorithm abstains where NAB's fired)
    anchor=86400.5,
    score=MEAN_VOTE)

CLASSIC_9 = Detector(
    name="classic-9",
    summary="Etsy Skyline's analyzer: all nine algorithms on a FULL_DURATION (24 h) window, "
            "Etsy's exception checks, score = votes / opinions",
    # Etsy's settings.py: FULL_DURATION 86400, CONSENSUS 6, MIN_TOLERABLE_LENGTH 1,
    # STALE_PERIOD 500, MAX_TOLERABLE_BOREDOM 100, BOREDOM_SET_SIZE 1 (the last three are
    # also ours); Etsy neither resampled nor detected counters
    params=AnalysisParams(full_duration=86400.0, algorithms=ETSY_NINE, consensus=6,
                          resolution=None, max_points=NO_CAP, detect_counters=False,
                          min_tolerable_length=1, early_stop=False, detector="consensus"),
    score=VOTE_SHARE)

CLASSIC_9_VERDICT = Detector(
    name="classic-9-verdict",
    summary="classic-9 scored by its CONSENSUS (6 of 9) verdict: 1 or 0",
    params=CLASSIC_9.params, score=VERDICT)

# the analyzer's default: the anomaly score (range_excess on FULL_DURATION), one alert per
# EXPIRATION_TIME (3600 s) while it lasts, as the analyzer's incidents emit events
ALERT_EXPIRY = 3600.0  # upstream's EXPIRATION_TIME

# Replay judges every point as it arrives, so each point is the newest once: score_tail 1.
# The analyzer's tail of 3 only adds re-judgements of the two points before the newest, which
# its EXPIRATION_TIME suppresses; replayed, they come back with scores a hair higher (the
# window has lost its oldest points since) and slip through hold_back as repeats
# (docs/benchmarks.md: default-tail-3).
REPLAY_PARAMS = AnalysisParams(detector="score", score_tail=1)

DEFAULT = Detector(
    name="default",
    summary="the analyzer's default analysis (AnalysisParams defaults: 24 h at 60 s analysis "
            "resolution, detector \"score\", each point judged as it arrives): "
            "range_excess's anomaly score, held back for an hour after each alert (the "
            "analyzer's EXPIRATION_TIME)",
    params=REPLAY_PARAMS, score=ANALYZER_SCORE, post=hold_back(ALERT_EXPIRY))

DEFAULT_UNHELD = Detector(
    name="default-unheld",
    summary="default without the hour's hold-back: every row's anomaly score",
    params=REPLAY_PARAMS, score=ANALYZER_SCORE)

DEFAULT_TAIL_3 = Detector(
    name="default-tail-3",
    summary="default with the analyzer's score_tail of 3 (each row scores the most anomalous "
            "of its last three points)",
    params=AnalysisParams(detector="score"), score=ANALYZER_SCORE, post=hold_back(ALERT_EXPIRY))

CONSENSUS_PARAMS = AnalysisParams(detector="consensus")

CONSENSUS = Detector(
    name="consensus",
    summary="the analyzer with detector \"consensus\" (the default before the score "
            "detector: nine algorithms, CONSENSUS 6 with early stop, MIN_TOLERABLE_LENGTH 100 "
            "for series the window can hold that many of), score = the anomalous verdict",
    params=CONSENSUS_PARAMS, score=VERDICT)

CONSENSUS_VOTE_SHARE = Detector(
    name="consensus-vote-share",
    summary="consensus, scored by the analyzer's votes / opinions (early stop leaves normal "
            "rows with fewer opinions)",
    params=CONSENSUS_PARAMS, score=VOTE_SHARE)

# -- explored (docs/benchmarks.md has every configuration tried) ----------------------------
CONSENSUS_HOLD = Detector(
    name="consensus-hold",
    summary="consensus, each alert held back for an hour after the last one (at most one "
            "detection per anomaly run and hour)",
    params=CONSENSUS_PARAMS, score=VERDICT, post=hold_back(ALERT_EXPIRY))

CLASSIC_9_HOLD = Detector(
    name="classic-9-hold",
    summary="classic-9's CONSENSUS verdict, each alert held back for an hour",
    params=CLASSIC_9.params, score=VERDICT, post=hold_back(ALERT_EXPIRY))

CLASSIC_9_INTENSITY = Detector(
    name="classic-9-intensity",
    summary="classic-9 scored by the continuous intensity (mean capped severity) instead of "
            "votes",
    params=CLASSIC_9.params, score=INTENSITY)

FULL_HISTORY_9_HOLD = Detector(
    name="full-history-9-hold",
    summary="the nine on every row so far (classic-7's settings), CONSENSUS 6 verdict, each "
            "alert held back for an hour",
    params=replace(CLASSIC_7.params, algorithms=ETSY_NINE, consensus=6),
    anchor=CLASSIC_7.anchor, score=VERDICT, post=hold_back(ALERT_EXPIRY))

DETECTORS: Mapping[str, Detector] = {d.name: d for d in (
    DEFAULT, DEFAULT_UNHELD, DEFAULT_TAIL_3, CLASSIC_7, CLASSIC_9, CLASSIC_9_VERDICT, CONSENSUS,
    CONSENSUS_VOTE_SHARE, CONSENSUS_HOLD, CLASSIC_9_HOLD, CLASSIC_9_INTENSITY,
    FULL_HISTORY_9_HOLD)}


def get(name: str) -> Detector:
    try:
        return DETECTORS[name]
    except KeyError:
        raise InvalidInput(f"unknown detector {name!r}; known: "
                           f"{', '.join(DETECTORS)}") from None
