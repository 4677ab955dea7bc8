"""Boundary's judgement: which rule checks which metric, consecutive detections, and the
incident each check opens and closes, vectorised over every check of a run.

A *check* is one (metric, algorithm) pair. For each algorithm the LAST matching rule of
BOUNDARY_METRICS decides its parameters (upstream: a later tuple overrides an earlier
wildcard one for the metrics it names), so a metric has at most one check per algorithm.

Per check, in order, for each new last point (a point is judged once: a run that finds no
new point leaves the check as it was):
- TooShort (detect_drop_off_cliff only), Stale (all) and Boring (detect_drop_off_cliff and
  less_than) points are not judged, as upstream; neither a detection nor a pass;
- a detection adds one to the consecutive count, a pass resets it; the check fires when the
  count reaches ALERT_THRESHOLD (0 and 1: at once);
- firing opens an incident through the shared incident rules (skyline.analysis.incidents): one
  `anomalous` event, another every EXPIRATION_TIME while still broken, and `recovered` once
  the rule has passed ALERT_THRESHOLD times in a row with the value back inside the rule
  (for a drop-off cliff: back to at least half the level before the cliff; a cliff rule stops
  firing one or two points after the drop, and that is not a recovery).

The state of every check that is counting or open lives in memory and, for restarts, in one
Redis hash (what `snapshot` and `restore` read and write).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from skyline.algorithms import boundary as alg
from skyline.analysis.incidents import INCIDENT_DTYPE, Emit, IncidentRules, fresh, step
from skyline.analysis.pipeline import PointEvent
from skyline.core.events import AlgorithmResult
from skyline.core.patterns import PatternSet, compile_pattern
from skyline.core.types import FloatArray
from skyline.settings.boundary import BoundaryRule

IntArray = npt.NDArray[np.int64]

STATE_DTYPE = np.dtype([
    ("count", "<i4"),  # consecutive detections
    ("passes", "<i4"),  # consecutive passes while an incident is open
    ("cursor", "<f8"),  # timestamp of the last point judged
    ("inc", INCIDENT_DTYPE),
])
STATE_VERSION = b"\x01"
# algorithms as small integers, so per-check comparisons are numeric
ALGORITHM_CODES = {"less_than": 1, "greater_than": 2, "detect_drop_off_cliff": 3}
LESS, GREATER, CLIFF = 1, 2, 3
WINDOW_POINTS = 120  # points of the snapshot an event carries (the graph of the alert)
# points every check may look at: upstream's 20-point cliff window plus the last one
_CLIFF_POINTS = 21


def check_key(algorithm: str, metric: str) -> str:
    return f"{algorithm}\x00{metric}"


@dataclass
class Checks:
    """The checks of a set of metrics: check k runs rule[k] on metric metrics[row[k]]."""

    metrics: list[str]
    row: IntArray
    rule: IntArray
    keys: list[str]  # check_key of each check: where its state is kept

    def __len__(self) -> int:
        return len(self.row)

    def subset(self, keep: npt.NDArray[np.bool_]) -> Checks:
        idx = np.flatnonzero(keep)
        return Checks(self.metrics, self.row[idx], self.rule[idx],
                      [self.keys[i] for i in idx.tolist()])


class BoundaryRules:
    def __init__(self, rules: Sequence[BoundaryRule]):
        self.rules = list(rules)
        self._patterns = [compile_pattern(r.pattern) for r in self.rules]
        self._excludes = [PatternSet(r.excludes) for r in self.rules]
        # per-rule parameters, indexed by a check's rule number
        rs = self.rules
        self.algorithm = np.array([ALGORITHM_CODES[r.algorithm] for r in rs] or [0],
                                  dtype=np.int8)
        self.trigger = np.array([r.trigger_value for r in rs] or [0.0], dtype=np.float64)
        self.min_average = np.array([r.min_average for r in rs] or [0.0], dtype=np.float64)
        self.min_average_seconds = np.array(
            [r.min_average_seconds if r.min_average > 0 else 0 for r in rs] or [0],
            dtype=np.float64)
        self.threshold = np.array([max(r.alert_threshold, 1) for r in rs] or [1],
                                  dtype=np.int64)
        self.smoothing = sorted({(r.smooth, r.smooth_points) for r in rs})

    def __bool__(self) -> bool:
        return bool(self.rules)

    def for_metric(self, metric: str) -> dict[str, int]:
        """algorithm -> index of the rule that decides it for this metric."""
        out: dict[str, int] = {}
        for i, r in enumerate(self.rules):
            if self._patterns[i].matches(metric) and not self._excludes[i].any(metric):
                out[r.algorithm] = i
        return out

    def match(self, names: Sequence[str]) -> Checks:
        """Every check of these metrics: one pass over the names per rule."""
        chosen: dict[tuple[int, str], int] = {}
        pos = {n: i for i, n in enumerate(names)}
        for i, r in enumerate(self.rules):
            hit = self._patterns[i].filter(names)
            ex = self._excludes[i]
            for n in hit:
                if ex and ex.any(n):
                    continue
                chosen[(pos[n], r.algorithm)] = i
        order = sorted(chosen)
        row = np.fromiter((k[0] for k in order), dtype=np.int64, count=len(order))
        rule = np.fromiter((chosen[k] for k in order), dtype=np.int64, count=len(order))
        return Checks(list(names), row, rule,
                      [check_key(a, names[i]) for i, a in order])


@dataclass(frozen=True)
class BoundaryParams:
    """The upstream settings Boundary honours besides its rules."""

    min_tolerable_length: int = 100
    stale_period: float = 500.0
    max_tolerable_boredom: int = 100
    boredom_set_size: int = 1


@dataclass
class PassStats:
    checks: int = 0
    judged: int = 0
    unchanged: int = 0  # no new point since the last run
    too_short: int = 0
    stale: int = 0
    boring: int = 0
    detections: int = 0
    events: dict[str, int] = field(default_factory=dict)


@dataclass
class PassResult:
    events: list[PointEvent]
    stats: PassStats


def _fmt(x: float) -> str:
    return f"{x:.6g}" if math.isfinite(x) else str(x)


class Checker:
    """Runs every check of a run and keeps their state."""

    def __init__(self, rules: BoundaryRules, params: BoundaryParams):
        self.rules = rules
        self.params = params
        self._index: dict[str, int] = {}
        self._keys: list[str] = []
        self.state = np.zeros(0, dtype=STATE_DTYPE)
        # rows to write to (or delete from) the Redis hash at the next snapshot
        self._dirty = np.zeros(0, dtype=bool)
        self._cached: tuple[list[str], IntArray] | None = None  # the last run's rows

    # -- state --------------------------------------------------------------------------
    def _blank(self, n: int) -> npt.NDArray[np.void]:
        s = np.zeros(n, dtype=STATE_DTYPE)
        s["cursor"] = -np.inf
        s["inc"] = fresh(n)
        return s

    def rows(self, keys: Sequence[str]) -> IntArray:
        """State rows of these check keys, created blank when new."""
        if self._cached is not None and self._cached[0] is keys:
            return self._cached[1]
        new = [k for k in dict.fromkeys(keys) if k not in self._index]
        if new:
            base = len(self._keys)
            for j, k in enumerate(new):
                self._index[k] = base + j
            self._keys.extend(new)
            self.state = np.concatenate([self.state, self._blank(len(new))])
            self._dirty = np.concatenate([self._dirty, np.zeros(len(new), dtype=bool)])
        rows = np.fromiter((self._index[k] for k in keys), dtype=np.int64, count=len(keys))
        if isinstance(keys, list):
            self._cached = (keys, rows)
        return rows

    def restore(self, saved: dict[str, bytes]) -> int:
        """Load states written by `snapshot` (a hash's fields and values); entries of another
        version or size are dropped. How many were loaded."""
        good = {k: v[1:] for k, v in saved.items()
                if v[:1] == STATE_VERSION and len(v) == 1 + STATE_DTYPE.itemsize}
        if not good:
            return 0
        rows = self.rows(list(good))
        self.state[rows] = np.frombuffer(b"".join(good.values()), dtype=STATE_DTYPE)
        self._cached = None
        return len(good)

    def snapshot(self) -> tuple[dict[str, bytes], list[str]]:
        """States changed since the last snapshot: (to write, to delete). A check that is
        neither counting nor open is deleted: it starts blank after a restart."""
        put: dict[str, bytes] = {}
        gone: list[str] = []
        for i in np.flatnonzero(self._dirty).tolist():
            s = self.state[i]
            if s["count"] > 0 or s["inc"]["open"]:
                put[self._keys[i]] = STATE_VERSION + s.tobytes()
            else:
                gone.append(self._keys[i])
        self._dirty[:] = False
        return put, gone

    def forget(self, keep: Iterable[str]) -> None:
        """Drop the state of checks not in `keep` (metrics gone or no longer matched)."""
        wanted = set(keep)
        stay = [i for i, k in enumerate(self._keys) if k in wanted]
        if len(stay) == len(self._keys):
            return
        self._keys = [self._keys[i] for i in stay]
        self._index = {k: i for i, k in enumerate(self._keys)}
        self.state = self.state[np.asarray(stay, dtype=np.int64)]
        self._dirty = self._dirty[np.asarray(stay, dtype=np.int64)]
        self._cached = None

    # -- a run ----------------------------------------------------------------------------
    def run(self, checks: Checks, t: FloatArray, v: FloatArray, counts: IntArray,
            now: float, stale_periods: FloatArray | None = None) -> PassResult:
        """Judge every check on the series of checks.metrics (flat layout: series i is the
        counts[i] points after the first sum(counts[:i]) of t and v; a metric with no points
        has count 0 and is not judged). `stale_periods`, one per metric of checks.metrics,
        overrides params.stale_period (upstream's CUSTOM_STALE_PERIOD)."""
        p = self.params
        stats = PassStats(checks=len(checks))
        events: list[PointEvent] = []
        if not len(checks):
            return PassResult(events, stats)
        R = self.rules
        rules = R.rules
        counts = np.asarray(counts, dtype=np.int64)
        present = counts[checks.row] > 0
        if not present.all():
            checks = checks.subset(present)
        algo = R.algorithm[checks.rule]
        # only metrics with checks are gathered, each once
        metric_rows, inverse = np.unique(checks.row, return_inverse=True)
        points = max(_CLIFF_POINTS, p.max_tolerable_boredom,
                     *(rules[i].smooth_points for i in np.unique(checks.rule).tolist()))
        seconds = np.zeros(len(metric_rows))
        np.maximum.at(seconds, inverse, R.min_average_seconds[checks.rule])
        tl = alg.tails_covering(t, v, counts, points, seconds, res_points=20, rows=metric_rows)

        last_t = tl.last_t[inverse]
        srow = self.rows(checks.keys)
        st = self.state[srow]
        new = last_t > st["cursor"]
        stats.unchanged = int((~new).sum())

        period: FloatArray | float = p.stale_period
        if stale_periods is not None:
            period = np.asarray(stale_periods, dtype=np.float64)[metric_rows]
        stale = alg.stale(tl, now, period)[inverse]
        is_cliff = algo == CLIFF
        short = is_cliff & (alg.too_short(tl, p.min_tolerable_length)[inverse])
        bored_m = alg.boring(tl, p.max_tolerable_boredom, p.boredom_set_size)
        bored = (is_cliff | (algo == LESS)) & bored_m[inverse]
        judged = new & ~stale & ~short & ~bored
        stats.stale = int((new & stale).sum())
        stats.too_short = int((new & ~stale & short).sum())
        stats.boring = int((new & ~stale & ~short & bored).sum())
        stats.judged = int(judged.sum())

        n = len(checks)
        detected = np.zeros(n, dtype=bool)
        value = tl.last_v[inverse].copy()
        limit = np.full(n, np.nan)
        statistic = np.full(n, np.nan)
        low = np.full(n, -np.inf)
        high = np.full(n, np.inf)
        trig = R.trigger[checks.rule]
        for kind, pts in R.smoothing:
            if not kind:
                continue
            of = np.array([r.smooth == kind and r.smooth_points == pts for r in rules])
            kk = np.flatnonzero(of[checks.rule] & judged)
            if len(kk):
                sub = alg.Tails(tl.t[inverse[kk]], tl.v[inverse[kk]], tl.counts[inverse[kk]])
                value[kk] = alg.smoothed_last(sub, kind, pts)
        for a in (LESS, GREATER):
            ks = np.flatnonzero((algo == a) & judged)
            if not len(ks):
                continue
            fn = alg.less_than if a == LESS else alg.greater_than
            detected[ks] = fn(value[ks], trig[ks])
            statistic[ks] = value[ks]
            limit[ks] = trig[ks]
            if a == LESS:
                low[ks] = trig[ks]
            else:
                high[ks] = trig[ks]
        ks = np.flatnonzero(is_cliff & judged)
        if len(ks):
            sub = alg.Tails(tl.t[inverse[ks]], tl.v[inverse[ks]], tl.counts[inverse[ks]])
            c = alg.detect_drop_off_cliff(sub, R.min_average[checks.rule[ks]],
                                          R.min_average_seconds[checks.rule[ks]])
            detected[ks] = c.anomalous
            statistic[ks] = c.ratio
            limit[ks] = c.trigger
            # the level before the cliff, kept by the incident as its band
            low[ks] = np.where(np.isfinite(c.average), c.average / 2, np.inf)
        stats.detections = int(detected.sum())

        # consecutive detections and passes, per newly judged point
        threshold = R.threshold[checks.rule]
        count_before = st["count"].copy()
        count = np.where(judged, np.where(detected, st["count"] + 1, 0), st["count"])
        was_open = st["inc"]["open"].astype(bool)
        passes = np.where(judged & was_open, np.where(detected, 0, st["passes"] + 1),
                          np.where(was_open, st["passes"], 0))
        # an open incident stays "firing" until the rule has passed threshold times in a row
        fires = np.where(was_open, passes < threshold, count >= threshold)
        st["count"] = count
        st["passes"] = passes
        st["cursor"] = np.where(new, last_t, st["cursor"])

        emit = np.zeros(n, dtype=np.int8)
        since = np.full(n, np.nan)
        band_low = np.full(n, np.nan)
        band_high = np.full(n, np.nan)
        inc = st["inc"]
        for ri in np.unique(checks.rule[judged]).tolist():
            ks = np.flatnonzero(judged & (checks.rule == ri))
            rec = inc[ks]
            tr = step(rec, last_t[ks], value[ks], np.ones(len(ks), dtype=bool), fires[ks],
                      low[ks], high[ks],
                      IncidentRules(expiration=float(rules[ri].expiration), recovery=0.0,
                                    new_level_after=0.0),
                      score=np.where(detected[ks], 1.0, 0.0))
            inc[ks] = rec
            emit[ks] = tr.emit
            since[ks] = tr.since
            band_low[ks] = np.where(tr.emit == Emit.RECOVERED, rec["band_low"], tr.band_low)
            band_high[ks] = np.where(tr.emit == Emit.RECOVERED, rec["band_high"], tr.band_high)
        closed = (emit == Emit.RECOVERED)
        st["passes"] = np.where(closed, 0, st["passes"])
        st["count"] = np.where(closed, 0, st["count"])
        st["inc"] = inc
        changed = judged & ((st["count"] != count_before) | was_open | st["inc"]["open"].astype(bool))
        self.state[srow] = st
        self._dirty[srow[changed]] = True

        for k in np.flatnonzero(emit).tolist():
            status = Emit(int(emit[k])).status
            stats.events[status] = stats.events.get(status, 0) + 1
            events.append(self._event(checks, k, int(inverse[k]), tl, status, value[k],
                                      statistic[k], limit[k], int(count[k]),
                                      int(threshold[k]), since[k], band_low[k], band_high[k]))
        return PassResult(events, stats)

    def _event(self, checks: Checks, k: int, m: int, tl: alg.Tails, status: str,
               value: float, statistic: float, limit: float, count: int, threshold: int,
               since: float, band_low: float, band_high: float) -> PointEvent:
        r = self.rules.rules[int(checks.rule[k])]
        text = explain(r, status, value, statistic, limit, count, threshold)
        verdict = status == "anomalous"
        w = min(WINDOW_POINTS, tl.width)
        wt, wv = tl.t[m, -w:], tl.v[m, -w:]
        keep = np.isfinite(wt)
        return PointEvent(
            metric=checks.metrics[int(checks.row[k])], row=int(checks.row[k]), point=-1,
            timestamp=float(tl.last_t[m]), value=float(value), score=1.0 if verdict else 0.0,
            status=status, since=float(since), band_low=float(band_low),
            band_high=float(band_high), triggered=(r.algorithm,) if verdict else (),
            results=(AlgorithmResult(
                r.algorithm, verdict,
                statistic=float(statistic) if math.isfinite(statistic) else None,
                limit=float(limit) if math.isfinite(limit) else None, text=text),),
            window_timestamps=wt[keep].copy(), window_values=wv[keep].copy())


def explain(rule: BoundaryRule, status: str, value: float, statistic: float, limit: float,
            count: int, threshold: int) -> str:
    """The one line that says which rule fired and why ("value 42 < 100 for 3 consecutive
    checks"), or that it passes again."""
    times = f"{threshold} consecutive check{'s' if threshold != 1 else ''}"
    subject = f"moving {rule.smooth} of {rule.smooth_points} points" if rule.smooth else "value"
    if rule.algorithm in ("less_than", "greater_than"):
        bad, good = ("<", ">=") if rule.algorithm == "less_than" else (">", "<=")
        trigger = _fmt(rule.trigger_value)
        if status == "anomalous":
            return (f"{subject} {_fmt(value)} {bad} {trigger} for {max(count, threshold)} "
                    f"consecutive check{'s' if max(count, threshold) != 1 else ''} "
                    f"(rule {rule.label})")
        return f"{subject} {_fmt(value)} {good} {trigger} again for {times} (rule {rule.label})"
    if status == "anomalous":
        return (f"drop-off cliff: the last 10 points' mean is {_fmt(statistic)} times the value "
                f"{_fmt(value)} (more than {_fmt(limit)}) for {max(count, threshold)} "
                f"consecutive check{'s' if max(count, threshold) != 1 else ''} "
                f"(rule {rule.label})")
    return (f"back from the drop-off cliff: value {_fmt(value)} is at least half the level "
            f"before it, for {times} (rule {rule.label})")
