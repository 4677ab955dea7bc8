"""Named variants for `skyline bench nab`: what is replayed and how a row becomes NAB's
anomaly_score.

- `default`: the product. The analysis settings in force (the CLI's Settings: detector,
  incident rules, stages) replayed through the pipeline, row by row (skyline.analysis.replay);
  a row's anomaly_score is the score of the confirmed anomalous event emitted there, 0
  elsewhere: exactly what would have alerted.
- `default-raw`: the same pipeline, every row's detector score (no incidents, no stages).
- the classic and explored variants: other AnalysisParams (upstream's algorithms, windows and
  checks) through the same replay engine, a row's score computed from its window's ensemble
  opinions by a score rule, optionally post-processed causally.

Nothing here reads labels, and no parameter depends on the file: a variant is judged on the
whole corpus with one threshold per profile, as NAB requires.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from skyline.algorithms import ANOMALOUS, AnalysisParams
from skyline.algorithms.ensemble import INTENSITY_CAP
from skyline.analysis.config import AnalyzerConfig
from skyline.analysis.pipeline import Pipeline
from skyline.analysis.replay import Replayed
from skyline.core.errors import InvalidInput
from skyline.core.types import FloatArray


@dataclass(frozen=True)
class RowOpinions:
    """The ensemble's outcome for some analysed rows: verdict codes and severities, one column
    per algorithm (severity: statistic over limit, 1 at the limit; NaN without an opinion)."""

    verdicts: npt.NDArray[np.int8]
    severity: FloatArray
    consensus: int
    score: FloatArray  # the detector's score of the row's new point

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
    "detector-score", "the detector's own score of the row's new point (for the score "
    "detector the anomaly score range_excess gives, compared with ANOMALY_SCORE_THRESHOLD)",
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
class Variant:
    """One replay configuration.

    params: the analysis parameters replayed (None: the product's, from the Settings in
    force). score: how a row's window opinions become its anomaly_score (None: the product's
    detections, Replayed.alert_scores). history: params.full_duration seconds before each row
    (the analyzer's window), or every row so far when full_duration is infinite. anchor: the
    FULL_DURATION the algorithms are told, when it differs from the window (first_hour_average's
    baseline is the hour that starts FULL_DURATION before the last point; an expanding
    history still needs one). post: a causal transformation of the file's scores,
    post(timestamps, scores) (row i's output may depend on rows <= i only).
    """

    name: str
    summary: str
    params: AnalysisParams | None = None
    score: ScoreRule | None = None
    anchor: float | None = None
    post: PostFn | None = None
    detector: str | None = None  # the product with this analyzer.detector (params None)

    def __post_init__(self) -> None:
        if self.params is not None and math.isinf(self.params.full_duration) \
                and self.anchor is None:
            raise InvalidInput(f"variant {self.name}: an expanding history needs an anchor "
                               "for FULL_DURATION-relative algorithms")

    @property
    def history(self) -> float | None:
        """Seconds of history per row; None: every row so far."""
        fd = self.params.full_duration if self.params is not None else 86400.0
        return None if math.isinf(fd) else fd

    def describe(self, params: AnalysisParams | None = None) -> dict[str, object]:
        p = self.params or params
        out: dict[str, object] = {"name": self.name, "summary": self.summary,
                                  "score": self.score.name if self.score else "alerts",
                                  "post": None if self.post is None
                                  else getattr(self.post, "__name__", "post")}
        if p is not None:
            out.update({
                "history": "all rows so far" if math.isinf(p.full_duration)
                else p.full_duration,
                "detector": p.detector, "algorithms": list(p.algorithms),
                "consensus": p.consensus, "resolution": p.resolution,
                "min_tolerable_length": p.min_tolerable_length,
                "detect_counters": p.detect_counters, "early_stop": p.early_stop,
                "score_threshold": p.score_threshold if p.detector == "score" else None,
                "short_fraction": p.short_fraction})
        return out


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

CLASSIC_7 = Variant(
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

CLASSIC_9 = Variant(
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

CLASSIC_9_VERDICT = Variant(
    name="classic-9-verdict",
    summary="classic-9 scored by its CONSENSUS (6 of 9) verdict: 1 or 0",
    params=CLASSIC_9.params, score=VERDICT)

DEFAULT = Variant(
    name="default",
    summary="the product: the analysis settings in force (detector, EXPIRATION_TIME, "
            "recovery and new-level rules, stages) replayed through the pipeline; a row scores "
            "the score of the confirmed anomalous event it emitted (what would have alerted), "
            "0 elsewhere")

LEARNING = Variant(
    name="learning",
    summary="the product with analyzer.detector \"learning\" (the other settings in force): "
            "the learning detector's state carried row by row as live; a row scores the "
            "score of the confirmed anomalous event it emitted, 0 elsewhere",
    detector="learning")

DEFAULT_RAW = Variant(
    name="default-raw",
    summary="the product's detector score on every row (no incidents, no stages)",
    score=ANALYZER_SCORE)

# upstream's EXPIRATION_TIME, for the hold-back of the explored variants
ALERT_EXPIRY = 3600.0

CONSENSUS_PARAMS = AnalysisParams(detector="consensus")

CONSENSUS = Variant(
    name="consensus",
    summary="the analyzer with detector \"consensus\" (the default before the score "
            "detector: nine algorithms, CONSENSUS 6 with early stop, MIN_TOLERABLE_LENGTH 100 "
            "for series the window can hold that many of), score = the anomalous verdict",
    params=CONSENSUS_PARAMS, score=VERDICT)

CONSENSUS_VOTE_SHARE = Variant(
    name="consensus-vote-share",
    summary="consensus, scored by the analyzer's votes / opinions (early stop leaves normal "
            "rows with fewer opinions)",
    params=CONSENSUS_PARAMS, score=VOTE_SHARE)

# -- explored (docs/benchmarks.md has every configuration tried) ----------------------------
CONSENSUS_HOLD = Variant(
    name="consensus-hold",
    summary="consensus, each alert held back for an hour after the last one (at most one "
            "detection per anomaly run and hour)",
    params=CONSENSUS_PARAMS, score=VERDICT, post=hold_back(ALERT_EXPIRY))

CLASSIC_9_HOLD = Variant(
    name="classic-9-hold",
    summary="classic-9's CONSENSUS verdict, each alert held back for an hour",
    params=CLASSIC_9.params, score=VERDICT, post=hold_back(ALERT_EXPIRY))

CLASSIC_9_INTENSITY = Variant(
    name="classic-9-intensity",
    summary="classic-9 scored by the continuous intensity (mean capped severity) instead of "
            "votes",
    params=CLASSIC_9.params, score=INTENSITY)

def _params(v: Variant) -> AnalysisParams:
    assert v.params is not None
    return v.params


FULL_HISTORY_9_HOLD = Variant(
    name="full-history-9-hold",
    summary="the nine on every row so far (classic-7's settings), CONSENSUS 6 verdict, each "
            "alert held back for an hour",
    params=replace(_params(CLASSIC_7), algorithms=ETSY_NINE, consensus=6),
    anchor=CLASSIC_7.anchor, score=VERDICT, post=hold_back(ALERT_EXPIRY))

VARIANTS: Mapping[str, Variant] = {d.name: d for d in (
    DEFAULT, LEARNING, DEFAULT_RAW, CLASSIC_7, CLASSIC_9, CLASSIC_9_VERDICT, CONSENSUS,
    CONSENSUS_VOTE_SHARE, CONSENSUS_HOLD, CLASSIC_9_HOLD, CLASSIC_9_INTENSITY,
    FULL_HISTORY_9_HOLD)}


def get(name: str) -> Variant:
    try:
        return VARIANTS[name]
    except KeyError:
        raise InvalidInput(f"unknown variant {name!r}; known: "
                           f"{', '.join(VARIANTS)}") from None


def pipeline_for(variant: Variant, config: AnalyzerConfig) -> Pipeline:
    """The pipeline a variant replays: the product's (config: the settings in force), or
    the variant's own analysis parameters with the same incident rules and no stages."""
    if variant.params is None:
        if variant.detector is not None and variant.detector != config.params.detector:
            config = replace(config, params=replace(config.params, detector=variant.detector))
        return config.pipeline()
    return Pipeline(variant.params, config.rules, catch_up=config.catch_up)


def score_rows(variant: Variant, timestamps: FloatArray, r: Replayed,
               consensus: int) -> FloatArray:
    """A replay's rows as NAB anomaly_scores: the product's detections, or the variant's
    score rule on the rows with a judged point (others 0), then its post-processing."""
    if variant.score is None:
        score = r.alert_scores()
    else:
        score = np.zeros(len(r))
        ok = r.judged
        if ok.any():
            severity = np.where(r.verdicts >= 0, r.severity, np.nan)
            score[ok] = variant.score(RowOpinions(r.verdicts[ok], severity[ok], consensus,
                                                  r.score[ok]))
    if variant.post is not None:
        score = np.asarray(variant.post(timestamps, score), dtype=np.float64)
    return score


def replay_variant(variant: Variant, pipeline: Pipeline, metric: str, t: FloatArray,
                   v: FloatArray, **kw: Any) -> tuple[FloatArray, Replayed]:
    """One file replayed as the variant says: (NAB anomaly_scores, the replay)."""
    return replay_variant_many(variant, pipeline, [(metric, t, v)], **kw)[0]


def replay_variant_many(variant: Variant, pipeline: Pipeline,
                        files: Sequence[tuple[str, FloatArray, FloatArray]], **kw: Any
                        ) -> list[tuple[FloatArray, Replayed]]:
    """Files replayed side by side (skyline.analysis.replay.replay_many: row k of every file
    stepped together), each scored as the variant says."""
    from skyline.analysis.replay import replay_many

    history = variant.history if variant.params is not None else -1.0
    done = replay_many(files, pipeline, history=history, anchor=variant.anchor, **kw)
    return [(score_rows(variant, t, r, pipeline.judge.consensus), r)
            for (_, t, _), r in zip(files, done, strict=True)]
