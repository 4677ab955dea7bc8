"""The learning detector: a compact memory of each metric, judged and updated one point at a
time, vectorised over metrics (one point per metric per call). Pure: no I/O, no settings, no
wall clock; time comes in as the points' own timestamps. It implements the pipeline's Learner
protocol (skyline.analysis.pipeline): `new`, `judge`, `learn`, `rebase`, `explain`.

What it remembers of a metric (one fixed-size record, STATE_DTYPE, 2,044 bytes):

- the long-run range: the minimum and maximum of each of the last RANGE_SLOTS periods of
  range_memory / RANGE_SLOTS (30 days: one slot a day); a slot older than range_memory is
  forgotten, so the range ages by whole days. A point joins it lag / 2 to lag after it
  arrived (a ring of RECENT_SLOTS periods of lag / 2), so a fall that steps down by less than
  the widening at each point is judged against the range from before it, not one it dragged
  along;
- a level: an exponentially weighted mean and variance with a time constant of
  level_memory (24 h);
- a transition memory: values quantised into BUCKETS buckets (the resolution is fixed half
  way through the warm-up, from the range seen so far), one 64-bit mask per bucket of the
  buckets seen to follow it; two generations, the older dropped every novelty_epoch, so what
  was seen is forgotten after one to two epochs;
- for two raw scores (novelty: how far the value is from every value seen to follow the
  previous value's bucket; deviation: how far it is from the 24 h level in standard
  deviations) the last SHORT raw scores and an exponentially weighted normal distribution
  (time constant likelihood_memory) of their short means;
- the extremes of the points seen inside an open incident (never learnt as such): they join
  the range `settle` after the incident closed (the same anomaly again within that time is
  still a breakout; a peak that keeps coming back is learnt);
- the alert bookkeeping: whether the previous point was in the red zone, the last alert.

Its judgement of a point, once warm (warm_up seconds and min_points points learnt):

- breakout: the value is beyond the long-run range widened by `widen` of its width (each
  side). Fires on every such point; the score is 1 - red_zone scaled down by how far out it is;
- likelihood (Ahmad et al. 2017, Numenta's anomaly likelihood): the mean of the last SHORT
  raw scores against the normal distribution of such means (mean at least 0.03, variance at
  least 0.0003, as Numenta); the tail probability Q(z) gives the score 1 - Q(z). Fires on the
  first point of a run in the red zone (Q(z) <= red_zone), at most once per `hold` seconds.

The score is the larger of the breakout score and the two likelihoods, in [0, 1].

It never learns a point the pipeline says not to (one inside an open incident), a non-finite
value, or one beyond +-HUGE (which it reports as anomalous once warm). A point not after the
last learnt one (a duplicate timestamp, a clock that went back) teaches nothing time-based
(its weight is that of a zero-length step). A metric silent for longer than range_memory is
learnt afresh. `rebase` (the incident closed as a new level: the metric changed for good)
restarts the metric's memory seeded with the range seen during the incident, keeping the
alert bookkeeping; it judges again once warm.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from skyline.core.types import FloatArray

BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]

VERSION = 3
RANGE_SLOTS = 30
RECENT_SLOTS = 3  # the ring of recent extremes, each lag / 2 wide, that join the range late
HOURS = 24  # the daily profile: one bucket per hour of the (UTC) day
PROFILE_DAYS = 7  # the daily profile keeps each hour's mean of the last 7 days
DAY = 86400.0
MEAN_ABS_TO_SIGMA = 1.2533  # sqrt(pi / 2): a normal residual's mean |r| times this is sigma
BUCKETS = 64
SHORT = 10
KINDS = ("novelty", "deviation")
HUGE = 1e150  # |value| at or beyond this is never learnt (its square would overflow)
NOVELTY_REACH = 8  # buckets: a value this far from all seen successors has raw novelty 1
DEVIATION_CAP = 8.0  # standard deviations: raw deviation score 1
USE = (1, 1)
MIN_MEAN = 0.03  # Numenta's lower bounds on the distribution of short means
MIN_VARIANCE = 0.0003

STATE_DTYPE = np.dtype([
    ("first", "<f8"),  # time of the first point learnt (NaN: nothing learnt)
    ("last", "<f8"),  # time of the last point learnt
    ("n", "<u4"),  # points learnt
    ("slot_id", "<i8", (RANGE_SLOTS,)),  # which period each range slot holds
    ("slot_min", "<f8", (RANGE_SLOTS,)),
    ("slot_max", "<f8", (RANGE_SLOTS,)),
    ("rec_id", "<i8", (RECENT_SLOTS,)),  # which lag / 2 period each recent slot holds
    ("rec_min", "<f8", (RECENT_SLOTS,)),
    ("rec_max", "<f8", (RECENT_SLOTS,)),
    ("mean", "<f8"),  # the level: EW mean and variance
    ("var", "<f8"),
    ("raw", "<f4", (len(KINDS), SHORT)),  # the last SHORT raw scores (ring)
    ("pos", "u1"),  # the ring's next slot
    ("lmean", "<f8", (len(KINDS),)),  # EW distribution of the short means
    ("lvar", "<f8", (len(KINDS),)),
    ("ln", "<u4"),  # short means learnt
    ("qlo", "<f8"),  # quantiser: bucket 0 starts at qlo; NaN: not fixed yet
    ("qstep", "<f8"),
    ("prev", "<i2"),  # bucket of the last point learnt (-1: none)
    ("trans", "<u8", (2, BUCKETS)),  # per bucket, the buckets seen to follow it (2 generations)
    ("epoch", "<f8"),  # when the current generation started
    ("inc_low", "<f8"),  # extremes of the points not learnt (inside an incident) so far
    ("inc_high", "<f8"),
    ("pend_low", "<f8"),  # an incident's extremes, joining the range `settle` after it closed
    ("pend_high", "<f8"),
    ("pend_t", "<f8"),
    ("red", "u1"),  # the last judged point was in the likelihood's red zone
    ("last_fire", "<f8"),  # time of the last likelihood alert (NaN: none)
    # the daily profile: per hour of the day, the mean of each of the last PROFILE_DAYS days
    ("day_id", "<i8"),  # the day being accumulated (NO_SLOT: none)
    ("day_sum", "<f8", (HOURS,)),
    ("day_cnt", "<u2", (HOURS,)),
    ("prof", "<f4", (HOURS, PROFILE_DAYS)),  # NaN: no point in that hour of that day
    ("prof_day", "<i8", (PROFILE_DAYS,)),  # which day each column holds (NO_SLOT: none)
    ("res_abs", "<f8"),  # EW mean |value - the hour's usual value|
    ("res_n", "<u4"),
    ("d_run", "<f8"),  # since when the value has been far from its hour's usual (NaN: not)
    ("d_fire", "<f8"),  # time of the last daily-profile alert (NaN: none)
])
NO_SLOT = np.iinfo(np.int64).min


@dataclass(frozen=True)
class LearningParams:
    """Every length is in seconds of the metric's own time, not in points."""

    warm_up: float = 86400.0  # no opinion before this much time (and min_points) is learnt
    min_points: int = 50
    range_memory: float = 30 * 86400.0
    widen: float = 0.05  # the range is widened by this fraction of its width on each side
    level_memory: float = 86400.0
    likelihood_memory: float = 7 * 86400.0
    novelty_epoch: float = 14 * 86400.0
    red_zone: float = 1e-7  # tail probability at or below which the likelihood fires
    hold: float = 3 * 3600.0  # a likelihood alert is not repeated within this
    breakout_z: float = 0.0  # a breakout must also be this many deviations from the level
    settle: float = 3600.0  # an incident's extremes join the range this long after it closed
    lag: float = 1800.0  # a point joins the range lag / 2 to lag after it arrived; 0: at once
    daily_z: float = 10.0  # daily profile: residual deviations that are far (0: no check)
    daily_for: float = 3600.0  # ... held this long before it alerts (once per `hold`)
    daily_min_days: int = 3  # earlier days the hour needs before it is judged
    daily_memory: float = 7 * 86400.0  # time constant of the residuals' typical size

    def __post_init__(self) -> None:
        for name in ("warm_up", "range_memory", "level_memory", "likelihood_memory",
                     "novelty_epoch", "hold", "settle", "lag", "daily_z", "daily_for"):
            x = getattr(self, name)
            if not (math.isfinite(x) and x >= 0):
                raise ValueError(f"{name} must be a finite number of seconds >= 0, not {x!r}")
        if self.range_memory <= 0 or self.level_memory <= 0 or self.likelihood_memory <= 0 \
                or self.novelty_epoch <= 0:
            raise ValueError("memories must be longer than 0 s")
        if not 0 < self.red_zone < 0.5:
            raise ValueError(f"red_zone must be in (0, 0.5), not {self.red_zone!r}")
        if not 0 <= self.widen <= 10:
            raise ValueError(f"widen must be in [0, 10], not {self.widen!r}")
        if not 1 <= self.daily_min_days <= PROFILE_DAYS:
            raise ValueError(f"daily_min_days must be in [1, {PROFILE_DAYS}]")
        if not (math.isfinite(self.daily_memory) and self.daily_memory > 0):
            raise ValueError("daily_memory must be longer than 0 s")
        if self.min_points < 2:
            raise ValueError("min_points must be at least 2")
        if self.lag > self.range_memory / RANGE_SLOTS:
            raise ValueError("lag must not exceed one range slot (range_memory / 30)")


# -- numeric helpers ---------------------------------------------------------------------

def upper_tail(z: FloatArray) -> FloatArray:
    """Q(z) = P(N(0,1) > z), vectorised (Numerical Recipes' erfc, relative error < 1.2e-7),
    with the asymptotic form beyond z = 8 so far tails stay positive and ordered."""
    z = np.asarray(z, dtype=np.float64)
    x = np.abs(z) / math.sqrt(2.0)
    t = 1.0 / (1.0 + 0.5 * x)
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        poly = -x * x - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (
            0.09678418 + t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (
                1.48851587 + t * (-0.82215223 + t * 0.17087277))))))))
        erfc = t * np.exp(poly)
    q = np.where(z >= 0, 0.5 * erfc, 1.0 - 0.5 * erfc)
    return np.asarray(np.where(np.isnan(z), 0.5, q), dtype=np.float64)


def _nearest_bit(masks: npt.NDArray[np.uint64], bucket: IntArray, reach: int) -> IntArray:
    """Per row, the distance from `bucket` to the nearest set bit of masks (capped: reach;
    an empty mask: reach)."""
    out = np.full(len(bucket), reach, dtype=np.int64)
    one = np.uint64(1)
    for d in range(reach - 1, -1, -1):
        hit = np.zeros(len(bucket), dtype=bool)
        for b in (bucket - d, bucket + d):
            inside = (b >= 0) & (b < BUCKETS)
            bits = (masks >> np.clip(b, 0, BUCKETS - 1).astype(np.uint64)) & one
            hit |= inside & (bits == one)
        out[hit] = d
    return out


class _Rows:
    """Some rows of the state, field by field: a field is gathered when first read (8 bytes a
    metric for a scalar, not the whole record), and flush() writes back the fields read or
    set. The transition masks (1 KB a metric) are read and written in place instead."""

    def __init__(self, state: npt.NDArray[np.void], rows: IntArray) -> None:
        self.state = state
        self.rows = rows
        self.cache: dict[str, npt.NDArray[Any]] = {}

    def __getitem__(self, name: str) -> npt.NDArray[Any]:
        x = self.cache.get(name)
        if x is None:
            x = self.cache[name] = self.state[name][self.rows]
        return x

    def __setitem__(self, name: str, value: npt.ArrayLike) -> None:
        dtype = self.state.dtype.fields[name][0]  # type: ignore[index]
        shape = (len(self.rows), *dtype.shape)
        self.cache[name] = np.broadcast_to(np.asarray(value, dtype=dtype.base), shape).copy()

    def flush(self) -> None:
        for name, x in self.cache.items():
            self.state[name][self.rows] = x


@dataclass
class Judged:
    """One step's judgement, per row (metric) of the step."""

    judged: BoolArray
    fired: BoolArray
    score: FloatArray
    low: FloatArray  # the band a normal value was expected in (the widened range)
    high: FloatArray
    # for the explanation and the learning step
    value: FloatArray
    range_low: FloatArray  # the long-run range before widening
    range_high: FloatArray
    breakout: BoolArray
    tail: FloatArray  # (rows, kinds) likelihood tail probabilities
    short: FloatArray  # (rows, kinds) the short means including this point
    raw: FloatArray  # (rows, kinds) this point's raw scores
    bucket: IntArray  # this point's bucket (-1: quantiser not fixed)
    level: FloatArray
    spread: FloatArray
    learnt: FloatArray  # seconds learnt so far
    points: IntArray
    red: BoolArray
    huge: BoolArray
    ok: BoolArray  # a finite value
    usual: FloatArray  # the hour's usual value (median of its earlier days' means; NaN: none)
    dz: FloatArray  # |value - usual| in typical residuals (0: not judged)
    d_run: FloatArray  # the far run's start after this point (NaN: not far)
    daily: BoolArray  # a daily-profile alert
    memory_days: float = 30.0
    warm_up: float = 86400.0


class LearningDetector:
    """The Learner for the pipeline (skyline.analysis.pipeline.Learner)."""

    name = "learning"
    version = VERSION
    state_dtype = STATE_DTYPE

    def __init__(self, params: LearningParams | None = None) -> None:
        self.params = params or LearningParams()
        self.slot_width = self.params.range_memory / RANGE_SLOTS
        # recent extremes are kept in periods of lag / 2 and join the range two periods on
        self.rec_width = self.params.lag / 2 if self.params.lag > 0 else self.slot_width
        self.rec_delay = 2 if self.params.lag > 0 else 0

    # -- state ---------------------------------------------------------------------------

    def new(self, n: int) -> npt.NDArray[np.void]:
        s = np.zeros(n, dtype=STATE_DTYPE)
        for f in ("first", "last", "mean", "var", "qlo", "qstep", "epoch", "last_fire",
                  "inc_low", "inc_high", "pend_low", "pend_high", "pend_t"):
            s[f] = np.nan
        s["slot_id"] = NO_SLOT
        s["slot_min"] = np.nan
        s["slot_max"] = np.nan
        s["rec_id"] = NO_SLOT
        s["rec_min"] = np.nan
        s["rec_max"] = np.nan
        s["prev"] = -1
        for f in ("res_abs", "d_run", "d_fire"):
            s[f] = np.nan
        s["day_id"] = NO_SLOT
        s["prof"] = np.nan
        s["prof_day"] = NO_SLOT
        return s

    def _usual(self, s: _Rows, t: FloatArray) -> FloatArray:
        """Per row, the median of its hour's means over the last PROFILE_DAYS days before
        today (NaN with fewer than daily_min_days of them)."""
        k = len(t)
        day = np.floor(t / DAY).astype(np.int64)
        hour = np.clip(np.floor((t - day * DAY) / 3600.0).astype(np.int64), 0, HOURS - 1)
        pd = s["prof_day"]
        # the day being accumulated (not yet folded) is not "earlier" either
        recent = (pd != NO_SLOT) & (pd >= (day - PROFILE_DAYS)[:, None]) & (pd < day[:, None])
        means = s["prof"][np.arange(k), hour, :].astype(np.float64)
        means = np.where(recent, means, np.nan)
        n = np.isfinite(means).sum(axis=1)
        enough = n >= self.params.daily_min_days
        out = np.full(k, np.nan)
        if enough.any():
            # the median of the finite ones: np.sort puts NaN last (nanmedian is 10x slower)
            srt = np.sort(means[enough], axis=1)
            m = n[enough]
            ar = np.arange(len(m))
            out[enough] = 0.5 * (srt[ar, (m - 1) // 2] + srt[ar, m // 2])
        return out

    def _range(self, s: _Rows, t: FloatArray) -> tuple[FloatArray, FloatArray]:
        cur = np.floor(t / self.slot_width).astype(np.int64)
        valid = (s["slot_id"] > (cur - RANGE_SLOTS)[:, None]) & (s["slot_id"] != NO_SLOT)
        with np.errstate(invalid="ignore"):
            lo = np.where(valid, s["slot_min"], np.inf).min(axis=1)
            hi = np.where(valid, s["slot_max"], -np.inf).max(axis=1)
        # recent extremes old enough to count (lag / 2 to lag after they arrived)
        rec_cur = np.floor(t / self.rec_width).astype(np.int64)
        rec = (s["rec_id"] != NO_SLOT) & (s["rec_id"] <= (rec_cur - self.rec_delay)[:, None])
        with np.errstate(invalid="ignore"):
            lo = np.fmin(lo, np.where(rec, s["rec_min"], np.inf).min(axis=1))
            hi = np.fmax(hi, np.where(rec, s["rec_max"], -np.inf).max(axis=1))
        none = ~(valid.any(axis=1) | rec.any(axis=1))
        lo[none] = np.nan
        hi[none] = np.nan
        settled = np.isfinite(s["pend_t"]) & (t - s["pend_t"] >= self.params.settle)
        lo = np.where(settled, np.fmin(lo, s["pend_low"]), lo)
        hi = np.where(settled, np.fmax(hi, s["pend_high"]), hi)
        return lo, hi

    @staticmethod
    def _into_slots(s: _Rows, i: IntArray, cur: IntArray, lo: FloatArray,
                    hi: FloatArray) -> None:
        """Widen rows i's daily range slot of period `cur` by [lo, hi] (a slot holding an
        older period is reset; one holding a newer period is left alone)."""
        slot = cur % RANGE_SLOTS
        sid = s["slot_id"][i, slot]
        same = sid == cur
        take = same | (sid < cur) | (sid == NO_SLOT)
        j, slot, cur = i[take], slot[take], cur[take]
        same, lo, hi = same[take], lo[take], hi[take]
        s["slot_min"][j, slot] = np.where(same, np.fmin(s["slot_min"][j, slot], lo), lo)
        s["slot_max"][j, slot] = np.where(same, np.fmax(s["slot_max"][j, slot], hi), hi)
        s["slot_id"][j, slot] = cur

    def _bucket(self, s: _Rows, v: FloatArray) -> IntArray:
        fixed = np.isfinite(s["qlo"]) & (s["qstep"] > 0)
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            x = np.where(fixed, (v - s["qlo"]) / np.where(fixed, s["qstep"], 1.0), 0.0)
        x = np.nan_to_num(x, nan=0.0, posinf=BUCKETS - 1, neginf=0.0)
        b = np.clip(np.floor(x), 0, BUCKETS - 1).astype(np.int64)
        return np.where(fixed, b, -1)

    # -- the judgement --------------------------------------------------------------------

    def judge(self, state: npt.NDArray[np.void], rows: IntArray, t: FloatArray,
              v: FloatArray) -> Judged:
        p = self.params
        s = _Rows(state, rows)
        k = len(rows)
        t = np.asarray(t, dtype=np.float64)
        v = np.asarray(v, dtype=np.float64)
        ok = np.isfinite(v)
        huge = ok & (np.abs(v) >= HUGE)
        sane = ok & ~huge
        learnt = np.where(np.isnan(s["first"]), 0.0, t - s["first"])
        warm = (s["n"] >= p.min_points) & (learnt >= p.warm_up)
        lo, hi = self._range(s, t)
        width = hi - lo
        with np.errstate(invalid="ignore", over="ignore"):
            eps = 1e-12 * np.maximum(np.abs(lo), np.abs(hi))
            margin = np.maximum(p.widen * width, eps)
            low, high = lo - p.widen * width, hi + p.widen * width
            beyond = np.maximum(v - high, low - v)
        has_range = np.isfinite(lo) & np.isfinite(hi)
        breakout = has_range & sane & (beyond > eps)
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            b_tail = p.red_zone * margin / (margin + np.maximum(beyond, 0.0))
        b_tail = np.where(huge, 0.0, np.nan_to_num(b_tail, nan=p.red_zone))
        b_score = np.where(breakout, 1.0 - b_tail, 0.0)

        # raw scores of this point
        raw = np.zeros((k, len(KINDS)))
        bucket = self._bucket(s, v)
        fixed = bucket >= 0
        if fixed.any():
            prev = s["prev"].astype(np.int64)
            has_prev = fixed & (prev >= 0)
            masks = np.zeros(k, dtype=np.uint64)
            idx = np.flatnonzero(has_prev)
            trans = state["trans"]
            pair = trans[rows[idx], :, prev[idx]]  # (idx, 2 generations)
            masks[idx] = pair[:, 0] | pair[:, 1]
            # a bucket never seen as a predecessor: compare with every value seen at all
            empty = has_prev & (masks == 0)
            if empty.any():
                e = np.flatnonzero(empty)
                seen = trans[rows[e]]
                masks[e] = np.bitwise_or.reduce(seen[:, 0, :] | seen[:, 1, :], axis=1)
            d = _nearest_bit(masks, np.where(fixed, bucket, 0), NOVELTY_REACH)
            raw[:, 0] = np.where(has_prev & (masks != 0), d / NOVELTY_REACH, 0.0)
        level, spread = s["mean"], np.sqrt(np.maximum(s["var"], 0.0))
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            floor = np.maximum(1e-9 * np.abs(level), 1e-12)
            z = np.abs(v - level) / np.maximum(spread, floor)
        raw[:, 1] = np.where(sane & (s["n"] >= 2), np.clip(np.nan_to_num(z, nan=0.0,
                                                                          posinf=1e9),
                                                             0, DEVIATION_CAP) / DEVIATION_CAP,
                             0.0)
        raw[~sane] = 0.0
        # a breakout must also stand out from the level (a range learnt over a day of noise
        # is still narrow); a value beyond anything learnable always does
        breakout = (breakout & (raw[:, 1] * DEVIATION_CAP >= p.breakout_z)) | huge
        b_score = np.where(breakout, b_score, 0.0)

        # short means and their likelihood
        ring = s["raw"].astype(np.float64)  # (k, kinds, SHORT)
        pos = s["pos"].astype(np.int64)
        oldest = ring[np.arange(k), :, pos]  # replaced by this point
        filled = np.minimum(s["n"].astype(np.int64), SHORT)
        total = ring.sum(axis=2) - np.where((filled >= SHORT)[:, None], oldest, 0.0) + raw
        short = total / np.maximum(np.minimum(filled + 1, SHORT), 1)[:, None]
        mu = np.maximum(np.nan_to_num(s["lmean"], nan=MIN_MEAN), MIN_MEAN)
        sd = np.sqrt(np.maximum(np.nan_to_num(s["lvar"], nan=MIN_VARIANCE), MIN_VARIANCE))
        tail = upper_tail((short - mu) / sd)
        can = warm & (s["ln"] >= p.min_points)
        tail = np.where(can[:, None] & sane[:, None], tail, 0.5)
        tail = np.where(np.asarray(USE, dtype=bool)[None, :], tail, 0.5)
        min_tail = tail.min(axis=1)
        red = min_tail <= p.red_zone
        held = np.isfinite(s["last_fire"]) & (t - s["last_fire"] < p.hold)
        l_fire = red & ~s["red"].astype(bool) & ~held
        l_score = 1.0 - min_tail

        # the daily profile: far from what this hour of the day usually holds, for a while
        usual = self._usual(s, t) if p.daily_z > 0 else np.full(k, np.nan)
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            typical = MEAN_ABS_TO_SIGMA * s["res_abs"]
            floor = np.maximum(1e-9 * np.abs(usual), 1e-12)
            dz = np.abs(v - usual) / np.maximum(typical, floor)
        has_profile = warm & sane & np.isfinite(usual) & np.isfinite(typical) & \
            (s["res_n"] >= 200)
        dz = np.where(has_profile, np.nan_to_num(dz, nan=0.0, posinf=1e9), 0.0)
        far = has_profile & (dz > p.daily_z)
        d_run = np.where(far, np.where(np.isfinite(s["d_run"]), s["d_run"], t), np.nan)
        d_held = np.isfinite(s["d_fire"]) & (t - s["d_fire"] < p.hold)
        daily = far & (t - d_run >= p.daily_for) & ~d_held
        d_score = np.where(daily, 1.0 - p.red_zone, 0.0)

        judged = warm & ok
        fired = judged & (breakout | l_fire | daily)
        score = np.where(judged, np.maximum(np.maximum(b_score, l_score), d_score), 0.0)
        return Judged(
            judged=judged, fired=fired, score=score, low=np.where(judged, low, np.nan),
            high=np.where(judged, high, np.nan), value=v, range_low=lo, range_high=hi,
            breakout=breakout & judged, tail=tail, short=short, raw=raw, bucket=bucket,
            level=level, spread=spread, learnt=learnt, points=s["n"].astype(np.int64),
            red=red & judged, huge=huge, ok=ok, usual=usual, dz=dz,
            d_run=np.where(judged, d_run, s["d_run"]), daily=daily & judged,
            memory_days=p.range_memory / 86400.0, warm_up=p.warm_up)

    # -- learning ---------------------------------------------------------------------------

    def learn(self, state: npt.NDArray[np.void], rows: IntArray, t: FloatArray, v: FloatArray,
              judged: Judged, mask: BoolArray) -> None:
        """Teach the points of `mask` (no incident open after them); every judged point
        updates the alert bookkeeping (red zone, last alert)."""
        p = self.params
        t = np.asarray(t, dtype=np.float64)
        v = np.asarray(v, dtype=np.float64)
        # alert bookkeeping, whatever the mask
        state["red"][rows] = judged.red
        l_fire = judged.fired & ~judged.breakout & ~judged.daily
        if l_fire.any():
            state["last_fire"][rows[l_fire]] = t[l_fire]
        state["d_run"][rows] = judged.d_run
        if judged.daily.any():
            state["d_fire"][rows[judged.daily]] = t[judged.daily]
        mask = np.asarray(mask, dtype=bool)
        sane = judged.ok & ~judged.huge
        # inside an incident: remember its extremes only
        inside = ~mask & sane
        if inside.any():
            ri = rows[inside]
            state["inc_low"][ri] = np.fmin(state["inc_low"][ri], v[inside])
            state["inc_high"][ri] = np.fmax(state["inc_high"][ri], v[inside])
        sel = np.flatnonzero(mask & sane)
        if not len(sel):
            return
        r = rows[sel]
        t, v = t[sel], v[sel]
        raw, short, bucket = judged.raw[sel], judged.short[sel], judged.bucket[sel]
        usual = judged.usual[sel]
        # a metric never seen, or silent longer than the range memory: learnt afresh
        first_t, last_t = state["first"][r], state["last"][r]
        stale = np.isnan(first_t) | (t - last_t > p.range_memory)
        if stale.any():
            rs = r[stale]
            fresh = self.new(len(rs))
            fresh["last_fire"] = state["last_fire"][rs]
            fresh["d_fire"] = state["d_fire"][rs]
            fresh["first"] = t[stale]
            fresh["last"] = t[stale]
            state[rs] = fresh
            raw[stale] = 0.0
            short[stale] = 0.0
            bucket[stale] = -1
            usual[stale] = np.nan
        s = _Rows(state, r)
        dt = np.maximum(t - s["last"], 0.0)
        n = s["n"].astype(np.float64)

        # an incident just closed: its extremes join the range after `settle`
        closed = np.isfinite(s["inc_low"])
        if closed.any():
            s["pend_low"] = np.where(closed, np.fmin(s["pend_low"], s["inc_low"]),
                                     s["pend_low"])
            s["pend_high"] = np.where(closed, np.fmax(s["pend_high"], s["inc_high"]),
                                      s["pend_high"])
            s["pend_t"] = np.where(closed, t, s["pend_t"])
            s["inc_low"] = np.where(closed, np.nan, s["inc_low"])
            s["inc_high"] = np.where(closed, np.nan, s["inc_high"])
        settled = np.isfinite(s["pend_t"]) & (t - s["pend_t"] >= p.settle)
        lo_v = np.where(settled, np.fmin(v, s["pend_low"]), v)
        hi_v = np.where(settled, np.fmax(v, s["pend_high"]), v)
        for f in ("pend_low", "pend_high", "pend_t"):
            s[f] = np.where(settled, np.nan, s[f])

        # the long-run range: the point goes to the ring of recent extremes; the period it
        # replaces there (two or more periods old) moves into the range's daily slots
        ar = np.arange(len(sel))
        rcur = np.floor(t / self.rec_width).astype(np.int64)
        rslot = rcur % RECENT_SLOTS
        rid = s["rec_id"][ar, rslot]
        fold = (rid != rcur) & (rid != NO_SLOT)
        if fold.any():
            fo = np.flatnonzero(fold)
            self._into_slots(s, fo, np.floor(rid[fo] * self.rec_width / self.slot_width)
                             .astype(np.int64), s["rec_min"][fo, rslot[fo]],
                             s["rec_max"][fo, rslot[fo]])
        same = rid == rcur
        s["rec_min"][ar, rslot] = np.where(same, np.fmin(s["rec_min"][ar, rslot], lo_v), lo_v)
        s["rec_max"][ar, rslot] = np.where(same, np.fmax(s["rec_max"][ar, rslot], hi_v), hi_v)
        s["rec_id"][ar, rslot] = rcur

        # the level
        a = np.maximum(1.0 / (n + 1.0), -np.expm1(-dt / p.level_memory))
        first = n == 0
        d = np.where(first, 0.0, v - s["mean"])
        s["mean"] = np.where(first, v, s["mean"] + a * d)
        s["var"] = np.where(first, 0.0, (1.0 - a) * (s["var"] + a * d * d))

        # raw score ring and the distribution of short means (from half the warm-up on)
        pos = s["pos"].astype(np.int64)
        ring = s["raw"]
        ring[ar, :, pos] = raw.astype(np.float32)
        s["raw"] = ring
        s["pos"] = (pos + 1) % SHORT
        half = (t - s["first"] >= p.warm_up / 2) & (n + 1 >= SHORT)
        if half.any():
            ln = s["ln"].astype(np.float64)
            al = np.maximum(1.0 / (ln + 1.0), -np.expm1(-dt / p.likelihood_memory))[:, None]
            lm = np.nan_to_num(s["lmean"], nan=0.0)
            dl = short - lm
            new_lm = np.where((ln == 0)[:, None], short, lm + al * dl)
            new_lv = np.where((ln == 0)[:, None], 0.0,
                              (1.0 - al) * (np.nan_to_num(s["lvar"], nan=0.0) + al * dl * dl))
            s["lmean"] = np.where(half[:, None], new_lm, s["lmean"])
            s["lvar"] = np.where(half[:, None], new_lv, s["lvar"])
            s["ln"] = np.where(half, s["ln"] + 1, s["ln"])

        # the quantiser, fixed half way through the warm-up from the range so far
        unfixed = np.isnan(s["qlo"]) & half
        if unfixed.any():
            lo, hi = self._range(s, t)
            lo, hi = lo[unfixed], hi[unfixed]
            w = hi - lo
            w = np.where(w > 0, w, np.maximum(np.abs(hi) * 1e-3, 1e-9))
            s["qlo"][unfixed] = lo - 0.1 * w
            s["qstep"][unfixed] = 1.2 * w / BUCKETS
            s["epoch"][unfixed] = t[unfixed]
            bucket = np.where(unfixed, self._bucket(s, v), bucket)
        # the transition memory: a new generation every novelty_epoch
        trans = state["trans"]
        rotate = np.isfinite(s["epoch"]) & (t - s["epoch"] >= p.novelty_epoch)
        if rotate.any():
            rr = r[rotate]
            trans[rr, 1, :] = trans[rr, 0, :]
            trans[rr, 0, :] = 0
            s["epoch"][rotate] = t[rotate]
        prev = s["prev"].astype(np.int64)
        rec = (bucket >= 0) & (prev >= 0)
        if rec.any():
            i = np.flatnonzero(rec)
            ri, pi = r[i], prev[i]
            trans[ri, 0, pi] = trans[ri, 0, pi] | np.left_shift(np.uint64(1),
                                                                 bucket[i].astype(np.uint64))
        s["prev"] = np.where(bucket >= 0, bucket, s["prev"]).astype(np.int16)
        self._learn_profile(s, t, v, usual, dt)
        s["n"] = s["n"] + 1
        s["last"] = t
        s.flush()

    def _learn_profile(self, s: _Rows, t: FloatArray, v: FloatArray, usual: FloatArray,
                       dt: FloatArray) -> None:
        """The daily profile: a new day folds the last one's hourly means into the ring; the
        point joins its hour's sum; its residual from the hour's usual value updates their
        typical size."""
        ar = np.arange(len(t))
        day = np.floor(t / DAY).astype(np.int64)
        hour = np.clip(np.floor((t - day * DAY) / 3600.0).astype(np.int64), 0, HOURS - 1)
        did = s["day_id"]
        fold = (did != NO_SLOT) & (did != day)
        if fold.any():
            f = np.flatnonzero(fold)
            col = did[f] % PROFILE_DAYS
            cnt = s["day_cnt"][f].astype(np.float64)
            with np.errstate(invalid="ignore", divide="ignore"):
                means = np.where(cnt > 0, s["day_sum"][f] / cnt, np.nan)
            prof = s["prof"]
            prof[f, :, col] = means.astype(np.float32)
            s["prof"] = prof
            pd = s["prof_day"]
            pd[f, col] = did[f]
            s["prof_day"] = pd
            ds, dc = s["day_sum"], s["day_cnt"]
            ds[f] = 0.0
            dc[f] = 0
            s["day_sum"], s["day_cnt"] = ds, dc
        s["day_id"] = day
        ds, dc = s["day_sum"], s["day_cnt"]
        ds[ar, hour] += v
        dc[ar, hour] = np.minimum(dc[ar, hour].astype(np.int64) + 1, 65535)
        s["day_sum"], s["day_cnt"] = ds, dc
        has = np.isfinite(usual)
        if has.any():
            r = np.abs(v - usual)
            n = s["res_n"].astype(np.float64)
            a = np.maximum(1.0 / (n + 1.0), -np.expm1(-dt / self.params.daily_memory))
            old = np.nan_to_num(s["res_abs"], nan=0.0)
            s["res_abs"] = np.where(has, np.where(n == 0, r, old + a * (r - old)),
                                    s["res_abs"])
            s["res_n"] = np.where(has, s["res_n"] + 1, s["res_n"])

    def rebase(self, state: npt.NDArray[np.void], rows: IntArray, t: FloatArray,
               low: FloatArray, high: FloatArray) -> None:
        """The metric changed for good (an incident closed as a new level): forget it and
        learn it again, from the range it kept during the incident."""
        s = state[rows]
        keep, keep_d = s["last_fire"].copy(), s["d_fire"].copy()
        s[:] = self.new(len(rows))
        s["last_fire"] = keep
        s["d_fire"] = keep_d
        t = np.asarray(t, dtype=np.float64)
        ok = np.isfinite(low) & np.isfinite(high) & (np.abs(low) < HUGE) & \
            (np.abs(high) < HUGE)
        cur = np.floor(t / self.slot_width).astype(np.int64)
        i = np.flatnonzero(ok)
        s["slot_id"][i, cur[i] % RANGE_SLOTS] = cur[i]
        s["slot_min"][i, cur[i] % RANGE_SLOTS] = low[i]
        s["slot_max"][i, cur[i] % RANGE_SLOTS] = high[i]
        state[rows] = s

    # -- words ------------------------------------------------------------------------------

    def explain(self, judged: Judged, i: int) -> str:
        j = judged
        v = float(j.value[i])
        if not j.ok[i]:
            return f"value {v} is not a number: ignored"
        if not j.judged[i]:
            hours = max(float(j.learnt[i]), 0.0) / 3600.0
            return (f"still learning this metric ({hours:.3g} h and {int(j.points[i])} "
                    f"points learnt; it judges after {j.warm_up / 3600:.3g} h)")
        lo, hi = float(j.range_low[i]), float(j.range_high[i])
        days = f"{j.memory_days:g}-day"
        if j.huge[i]:
            return f"{v:.6g} is beyond any value this detector can learn"
        if j.breakout[i]:
            side = "above" if v > hi else "below"
            return f"{v:.6g} is {side} the {days} range {lo:.6g} to {hi:.6g}"
        if j.daily[i]:
            return (f"{v:.6g} has been far from what this hour of the day usually holds "
                    f"({float(j.usual[i]):.6g}, the median of its earlier days) for "
                    f"{self.params.daily_for / 3600:.3g} h: {float(j.dz[i]):.3g} typical "
                    f"deviations")
        tails = j.tail[i]
        kind = int(np.argmin(tails))
        tail = float(tails[kind])
        odds = _odds(tail)
        if kind == 0:
            why = "its recent values are unlike what usually follows such values"
        else:
            why = (f"its recent values are far from its 24 h level {float(j.level[i]):.6g} "
                   f"(typical deviation {float(j.spread[i]):.3g})")
        if j.red[i]:
            return f"this pattern has a {odds} likelihood for this metric: {why}"
        rare = f"; its recent pattern has a {odds} likelihood" if tail < 0.01 else ""
        return (f"{v:.6g} is within what this metric usually does ({days} range {lo:.6g} to "
                f"{hi:.6g}{rare})")


def _odds(tail: float) -> str:
    if not tail > 0:
        return "less than 1-in-10^300"
    n = 1.0 / tail
    if n >= 1e12:
        return f"1-in-10^{math.log10(n):.0f}"
    if n >= 1e6:
        return f"1-in-{n / 1e6:,.3g}-million"
    return f"1-in-{n:,.0f}"
