"""The pipeline: every new analysis point of every metric, in time order, through the
detector, the incident machine, the stages and (for a detector that learns) the detector's
memory. The live analyzer runs it on each chunk of metrics it fetches; replay runs it on a
series one row at a time; crucible's verdict is one analyzer run on a metric seen for the first
time. So the same series gives the same events everywhere.

Per metric, its analysis state (state.py) holds a cursor: the time of the last analysis point
processed. An analysis point (a prepared window's point: a counter's rate, a dense series' step
mean) after the cursor is new; every new point is processed once, oldest first:

1. the detector's opinion: score, fired, and the band it expected a normal value in. Window
   detectors ("score": range_excess; "consensus": ALGORITHMS with CONSENSUS) judge the window
   before the point; the score detector judges each new point (at most `catch_up` per run),
   the consensus ensemble and custom algorithms only the newest one. A detector with state
   ("learning") judges the point against what it has learnt of the metric once it is warm;
   until then the score detector judges the point (so a new metric is watched from its
   first MIN_TOLERABLE_LENGTH points, not after a day of learning);
2. the incident machine (incidents.py): opens an incident (`anomalous`), re-alerts an open one
   every EXPIRATION_TIME, closes it as `recovered` or `new_level`;
3. each anomalous event is a candidate: the stages (stages.py) confirm or veto it. A veto
   closes the incident the candidate opened (it was not one) and the event is `vetoed`;
4. a detector with state learns the point, unless an incident is open after it.

A metric met for the first time (no state: cursor NaN) is bootstrapped: a window detector
judges only its newest point; a detector with state steps through the newest BOOTSTRAP_POINTS
of the window to learn them, following incidents as usual but emitting nothing before the newest point (an incident
still open then is reported at the newest point).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from skyline.algorithms import AnalysisParams, Status
from skyline.algorithms.learning import LearningDetector
from skyline.algorithms.range_excess import RangeExcess
from skyline.analysis import incidents
from skyline.analysis.customs import CustomSpec
from skyline.analysis.incidents import Emit, IncidentRules
from skyline.analysis.isolation import Isolation
from skyline.analysis.judge import Judge, Verdicts
from skyline.analysis.stages import Candidate, History, Stages
from skyline.analysis.state import Layout, States
from skyline.core.events import AlgorithmResult, StageVerdict
from skyline.core.types import FloatArray

BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]

#: the detector that wrote a state record's detector part (state.py)
DETECTOR_IDS = {"score": 1, "consensus": 2, "learning": 3}
WINDOW_STATE_VERSION = 1
CATCH_UP = 60  # new points a window detector judges per metric per run, newest first
#: points of its window a detector with state learns from a metric met for the first time (the
#: newest): bounds the first run after a start or a change of detector (every metric at once)
#: to what a run can do within MAX_ANALYZER_PROCESS_RUNTIME; the rest is learnt live
BOOTSTRAP_POINTS = 60

log = logging.getLogger(__name__)


class Learner(Protocol):
    """A detector with per-metric state (skyline.algorithms.learning)."""

    name: str
    version: int
    state_dtype: np.dtype

    def new(self, n: int) -> npt.NDArray[np.void]: ...

    def judge(self, state: Any, rows: IntArray, t: FloatArray, v: FloatArray) -> Any: ...

    def learn(self, state: Any, rows: IntArray, t: FloatArray, v: FloatArray, judged: Any,
              mask: BoolArray) -> None: ...

    def rebase(self, state: Any, rows: IntArray, t: FloatArray, low: FloatArray,
               high: FloatArray) -> None: ...

    def explain(self, judged: Any, i: int) -> str: ...


@dataclass
class Points:
    """New analysis points, flat: point p belongs to metric `metric[p]` (an index into the
    caller's names / state rows). A metric's points are consecutive and oldest first."""

    metric: IntArray
    t: FloatArray
    v: FloatArray
    bootstrap: BoolArray  # learnt and followed, never emitted (a first run's history)
    newest: BoolArray  # its metric's newest point this run
    batch: IntArray  # where the point lies in the prepared batches (-1: not batched)
    column: IntArray
    judged: BoolArray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    fired: BoolArray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    score: FloatArray = field(default_factory=lambda: np.zeros(0))
    low: FloatArray = field(default_factory=lambda: np.zeros(0))
    high: FloatArray = field(default_factory=lambda: np.zeros(0))
    emit: npt.NDArray[np.int8] = field(default_factory=lambda: np.zeros(0, dtype=np.int8))
    vetoed: BoolArray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    custom: npt.NDArray[np.int8] = field(default_factory=lambda: np.zeros(0, dtype=np.int8))
    """With a learning detector: +1 a custom algorithm that alerts alone fired on the point,
    -1 a run_only_if_consensus one cleared it, 0 neither (window detectors fold custom
    algorithms into their verdict)."""
    learnt: BoolArray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    """The learning detector judged the point (it was warm); else the window detector's
    opinion stands."""

    def __post_init__(self) -> None:
        n = len(self.t)
        if len(self.judged) != n:
            self.judged = np.zeros(n, dtype=bool)
            self.fired = np.zeros(n, dtype=bool)
            self.score = np.zeros(n)
            self.low = np.full(n, np.nan)
            self.high = np.full(n, np.nan)
            self.emit = np.zeros(n, dtype=np.int8)
            self.vetoed = np.zeros(n, dtype=bool)
            self.custom = np.zeros(n, dtype=np.int8)
            self.learnt = np.zeros(n, dtype=bool)

    def __len__(self) -> int:
        return len(self.t)

    def ordinal(self, key: IntArray | None = None) -> IntArray:
        """Each point's position among its metric's points (0 = oldest); `key`: group by
        another per-point key (replay: the state row every window's points belong to)."""
        key = self.metric if key is None else key
        n = len(key)
        if not n:
            return np.zeros(0, dtype=np.int64)
        starts = np.r_[True, key[1:] != key[:-1]]
        first = np.maximum.accumulate(np.where(starts, np.arange(n), 0))
        return np.arange(n) - first


@dataclass
class PointEvent:
    """An event decided for point `point` of a run (the analyzer makes an AnomalyEvent of
    it, replay a row of its report)."""

    metric: str
    row: int  # the metric's index in the run
    point: int
    timestamp: float
    value: float
    score: float
    status: str  # anomalous | vetoed | recovered | new_level
    since: float
    band_low: float
    band_high: float
    triggered: tuple[str, ...] = ()
    results: tuple[AlgorithmResult, ...] = ()
    stages: tuple[StageVerdict, ...] = ()
    window_timestamps: FloatArray = field(default_factory=lambda: np.empty(0))
    window_values: FloatArray = field(default_factory=lambda: np.empty(0))


@dataclass
class RunResult:
    points: Points
    events: list[PointEvent] = field(default_factory=list)
    verdicts: Verdicts | None = None
    suppressed: int = 0  # bootstrap points that would have emitted
    timings: dict[str, float] = field(default_factory=dict)
    # point -> (triggered, results) of newest points, when asked for (crucible)
    explained: dict[int, tuple[tuple[str, ...], tuple[AlgorithmResult, ...]]] = \
        field(default_factory=dict)


def _until(history: Callable[[str, float, float], tuple[FloatArray, FloatArray]] | None,
           metric: str, end: float) -> History | None:
    """The metric's history, never past `end` (a replayed series must not show a stage its
    future)."""
    if history is None:
        return None
    return lambda start, stop: history(metric, start, min(stop, end))


def _still_broken(value: float, low: float, high: float, since: float) -> str:
    from skyline.core.timeutil import iso

    return (f"still anomalous: {value:.6g} is outside the range [{low:.6g}, {high:.6g}] the "
            f"metric kept before the incident that began at {iso(since)}"
            if math.isfinite(low) or math.isfinite(high) else
            f"still anomalous since {iso(since)}")


def _with_new_points(prepared: Any, cursor: FloatArray) -> Any:
    """`prepared` with only the series whose newest analysis point is after their cursor in
    its batches (a metric that sent nothing since the last run is not judged again)."""
    batches = []
    changed = False
    for batch in prepared.batches:
        cur = cursor[batch.rows]
        with np.errstate(invalid="ignore"):
            new = np.isnan(cur) | (batch.timestamps[:, -1] > cur)
        if new.all():
            batches.append(batch)
        elif new.any():
            batches.append(batch.take(np.flatnonzero(new)))
            changed = True
        else:
            changed = True
    if not changed:
        return prepared
    return dataclasses.replace(prepared, batches=batches)


def _count_new(batch: Any, cur: FloatArray, cap: IntArray) -> IntArray:
    """Per row, how many of its points are after its cursor, at most its cap. Rows are sorted
    in time, so only the newest columns are compared, widening while some row is new all
    along them: one or a few columns in the steady state, not the whole window."""
    w = batch.width
    nan = np.isnan(cur)
    limit = int(min(w, max(int(cap.max()) if len(cap) else 0, 1)))
    n = np.minimum(np.where(nan, batch.counts, 0), cap)
    live = ~nan
    if not live.any():
        return n
    width = min(limit, 4)
    while True:
        with np.errstate(invalid="ignore"):
            seen = (batch.timestamps[live, w - width:] > cur[live, None]).sum(axis=1)
        if width >= limit or not (seen >= width).any():
            break
        width = min(limit, width * 8)
    n[live] = np.minimum(seen, cap[live])
    return n


def _select(prepared: Any, cursor: FloatArray, cap: IntArray) -> Points:
    """The points of every prepared batch after each metric's cursor, at most cap[metric]
    per metric (the newest), oldest first within a metric."""
    metric_l, t_l, v_l, b_l, c_l = [], [], [], [], []
    for b, batch in enumerate(prepared.batches):
        rows = batch.rows
        n = _count_new(batch, cursor[rows], cap[rows])
        k = int(n.max()) if len(n) else 0
        if k == 0:
            continue
        w = batch.width
        cols = np.arange(w - k, w)
        mask = cols[None, :] >= (w - n)[:, None]
        r, j = np.nonzero(mask)  # row-major: each row's columns in order, oldest first
        c = cols[j]
        metric_l.append(rows[r])
        t_l.append(batch.timestamps[r, c])
        v_l.append(batch.values[r, c])
        b_l.append(np.full(len(r), b, dtype=np.int64))
        c_l.append(c.astype(np.int64))
    if not metric_l:
        empty = np.zeros(0, dtype=np.int64)
        return Points(empty, np.zeros(0), np.zeros(0), np.zeros(0, dtype=bool),
                      np.zeros(0, dtype=bool), empty.copy(), empty.copy())
    metric = np.concatenate(metric_l)
    order = np.argsort(metric, kind="stable")
    metric = metric[order]
    last = np.r_[metric[1:] != metric[:-1], True]
    return Points(metric=metric, t=np.concatenate(t_l)[order], v=np.concatenate(v_l)[order],
                  bootstrap=np.isnan(cursor[metric]) & ~last, newest=last,
                  batch=np.concatenate(b_l)[order], column=np.concatenate(c_l)[order])


class Pipeline:
    """The analysis as configured: a detector (window or learning), custom algorithms in
    isolation, the incident rules and the stages."""

    def __init__(self, params: AnalysisParams, rules: IncidentRules, *,
                 customs: Sequence[CustomSpec] = (), isolation: Isolation | None = None,
                 stages: Stages | None = None, learner: Learner | None = None,
                 registry: Mapping[str, Any] | None = None, catch_up: int = CATCH_UP,
                 judge: Judge | None = None,
                 history: Callable[[str, float, float], tuple[FloatArray, FloatArray]]
                 | None = None) -> None:
        """history(metric, start, end): a metric's raw points for the stages (replay sets it
        to the series it replays; live stages read the hot store)."""
        self.params = params
        self.rules = rules
        self.stages = stages or Stages(())
        if learner is None and params.detector == "learning":
            # the detector is the learner: a pipeline built without one would judge with a
            # window detector named "learning" (the Ionosphere bench did, and lost 22 of 53
            # NAB windows to it)
            learner = LearningDetector()
        self.learner = learner
        self.catch_up = catch_up
        self.history = history
        # with a learning detector, the score detector judges a metric until it is warm
        window = dataclasses.replace(params, detector="score") if learner is not None \
            else params
        self.window_detector = window.detector
        self.judge = judge or Judge(window, customs, isolation=isolation, registry=registry)
        self._builtin_names = frozenset(a.name for a in self.judge.ensemble.algorithms) \
            if self.judge.run_builtins else frozenset()
        if learner is not None:
            self.layout = Layout(DETECTOR_IDS["learning"], learner.version, learner.state_dtype)
        else:
            self.layout = Layout(DETECTOR_IDS[params.detector], WINDOW_STATE_VERSION)
        self._older = RangeExcess(threshold=params.score_threshold, tail=1) \
            if self.window_detector == "score" else None

    def with_stages(self, stages: Stages) -> Pipeline:
        """The same judgement (detector and learner, custom algorithms, incident rules) with
        other stages: what a benchmark that appends a stage must replay."""
        return Pipeline(self.params, self.rules, stages=stages, learner=self.learner,
                        catch_up=self.catch_up, judge=self.judge, history=self.history)

    @property
    def stateful(self) -> bool:
        return self.learner is not None

    def fresh(self, n: int) -> States:
        states = self.layout.fresh(n)
        if self.learner is not None:
            states["detector"] = self.learner.new(n)
        return states

    # -- one run over a chunk of metrics --------------------------------------------------

    def run(self, names: Sequence[str], prepared: Any, states: States, *,
            explain_newest: bool = False) -> RunResult:
        """Process every new point of the prepared windows (prepared with analyse_all=True:
        too-short and boring series still advance their cursor and incidents). `states` (one
        record per name) is updated in place."""
        t0 = time.perf_counter()
        cursor = states["header"]["cursor"]
        prepared = _with_new_points(prepared, cursor)
        if self.stateful:
            cap = np.where(np.isnan(cursor), BOOTSTRAP_POINTS,
                           np.iinfo(np.int64).max).astype(np.int64)
        else:
            cap = np.where(np.isnan(cursor), 1, self.catch_up).astype(np.int64)
        points = _select(prepared, cursor, cap)
        self._older_ops: dict[tuple[int, int, int], tuple[Any, int]] = {}
        verdicts = None
        if len(points):
            verdicts = self.judge.judge_prepared(names, prepared, ok_only=True)
            self._window_opinions(prepared, verdicts, points)
            if self.stateful:
                self._custom_opinions(verdicts, points)
        t1 = time.perf_counter()
        result = RunResult(points=points, verdicts=verdicts)
        self.advance(names, points, states, result, prepared=prepared,
                     explain_newest=explain_newest)
        result.timings = {"opinions": t1 - t0, "steps": time.perf_counter() - t1}
        return result

    # -- opinions of window detectors -------------------------------------------------------

    def _window_opinions(self, prepared: Any, verdicts: Verdicts, p: Points) -> None:
        ok = prepared.status == Status.OK
        newest = p.newest
        m = p.metric[newest]
        p.judged[newest] = verdicts.judged[m] & ok[m]
        p.fired[newest] = verdicts.anomalous[m] & p.judged[newest]
        p.score[newest] = np.where(p.judged[newest], verdicts.score[m], 0.0)
        low, high = self._newest_band(prepared, verdicts)
        p.low[newest] = low[m]
        p.high[newest] = high[m]
        # a first run's history (bootstrap) is learnt, never emitted: no opinion needed
        older = ~newest & (p.batch >= 0) & ~p.bootstrap
        if self._older is None or not older.any():
            return
        need = prepared.min_length if prepared.min_length is not None else \
            np.full(len(prepared), self.params.min_tolerable_length)
        for b in np.unique(p.batch[older]).tolist():
            batch = prepared.batches[b]
            sel = np.flatnonzero(older & (p.batch == b))
            # k columns before the newest, the oldest one needs the most
            k = int((batch.width - p.column[sel]).max())
            cols = self._older.run_columns(batch, k)
            pos = np.searchsorted(batch.rows, p.metric[sel])
            for j, op in enumerate(cols):
                col = batch.width - len(cols) + j
                here = p.column[sel] == col
                if not here.any():
                    continue
                idx, r = sel[here], pos[here]
                for ii, rr in zip(idx.tolist(), r.tolist(), strict=True):
                    self._older_ops[(b, col, int(p.metric[ii]))] = (op, rr)
                # an older point is judged as its own window would have been: not before
                # the series held the points it needs (TooShort), as replay judges it
                own = batch.counts[r] - (batch.width - 1 - col)
                long_enough = own >= need[p.metric[idx]]
                judged = (op.verdict[r] >= 0) & ok[p.metric[idx]] & long_enough
                p.judged[idx] = judged
                p.fired[idx] = (op.verdict[r] == 1) & judged
                p.score[idx] = np.where(judged, np.nan_to_num(op.context["score"][r]), 0.0)
                p.low[idx] = op.context["low"][r]
                p.high[idx] = op.context["high"][r]

    def _newest_band(self, prepared: Any, verdicts: Verdicts) -> tuple[FloatArray, FloatArray]:
        """Per metric, the range the window showed before its newest point: range_excess's
        earlier range, or (consensus) the window's own min and max before the newest point."""
        k = len(prepared)
        low, high = np.full(k, np.nan), np.full(k, np.nan)
        an = verdicts.analysis
        if self.window_detector == "score":
            for res in an.results:
                op = res.opinions[0]
                if "low" in op.context:
                    low[res.rows] = op.context["low"]
                    high[res.rows] = op.context["high"]
            return low, high
        for batch in prepared.batches:
            if batch.width < 2:
                continue
            before = batch.values[:, :-1]
            with np.errstate(invalid="ignore"):
                low[batch.rows] = np.fmin.reduce(before, axis=1)
                high[batch.rows] = np.fmax.reduce(before, axis=1)
        return low, high

    @staticmethod
    def _custom_opinions(verdicts: Verdicts, p: Points) -> None:
        """With a learning detector, custom algorithms judge the newest point: one that alerts
        alone (upstream consensus 1) fires by itself, a run_only_if_consensus one that says
        False clears the detector's anomaly; others are only explained."""
        for i in np.flatnonzero(p.newest).tolist():
            for spec, out in verdicts.custom.get(int(p.metric[i]), ()):
                if spec.alone and out.verdict == 1:
                    p.custom[i] = 1
                elif spec.veto and out.verdict == 0 and p.custom[i] == 0:
                    p.custom[i] = -1

    # -- stepping ------------------------------------------------------------------------

    def advance(self, names: Sequence[str], p: Points, states: States, result: RunResult,
                *, prepared: Any = None,
                window_of: Callable[[int], tuple[FloatArray, FloatArray]] | None = None,
                state_rows: IntArray | None = None, explain_newest: bool = False) -> None:
        """Step through the points in order (step s: the s-th point of every metric), updating
        `states` and collecting events into result. window_of(p): the analysis points up to
        and including point p (default: from the prepared batches). state_rows: the state
        record (and name) of each point, when it is not p.metric (replay: every window's
        points belong to one series)."""
        if not len(p):
            return
        if window_of is None:
            window_of = lambda i: self._window(prepared, p, i)  # noqa: E731
        owner = p.metric if state_rows is None else state_rows
        ordinal = p.ordinal(owner)
        inc_all = states["incident"]
        header = states["header"]
        det = states["detector"] if self.stateful else None
        for s in range(int(ordinal.max()) + 1):
            idx = np.flatnonzero(ordinal == s)
            m = owner[idx]
            t, v = p.t[idx], p.v[idx]
            judged_obj = None
            if self.learner is not None:
                judged_obj = self.learner.judge(det, m, t, v)
                # warm: the learner's opinion; still learning: the window detector's stands
                warm = np.asarray(judged_obj.judged, dtype=bool)
                w = idx[warm]
                p.learnt[w] = True
                p.judged[w] = True
                p.fired[w] = np.asarray(judged_obj.fired, dtype=bool)[warm]
                p.score[w] = np.asarray(judged_obj.score)[warm]
                p.low[w] = np.asarray(judged_obj.low)[warm]
                p.high[w] = np.asarray(judged_obj.high)[warm]
                p.fired[w] = (p.fired[w] & (p.custom[w] >= 0)) | (p.custom[w] > 0)
            if explain_newest and judged_obj is not None:
                for j in np.flatnonzero(p.newest[idx]).tolist():
                    i = int(idx[j])
                    result.explained[i] = self._explain(p, i, j, judged_obj, result.verdicts)
            if self._unflagged_stages:
                self._unflagged(names, p, idx, owner, window_of)
            inc = inc_all[m]
            tr = incidents.step(inc, t, v, p.judged[idx], p.fired[idx], p.low[idx],
                                p.high[idx], self.rules, p.score[idx])
            emit = tr.emit
            boot = p.bootstrap[idx]
            if boot.any():
                hidden = boot & (emit != Emit.NONE)
                result.suppressed += int((hidden & (emit == Emit.ANOMALOUS)).sum())
                # an incident opened (or still broken) in the history is reported at the
                # newest point, whatever EXPIRATION_TIME says
                inc["last_event"][hidden & (emit == Emit.ANOMALOUS)] = -math.inf
                emit = np.where(hidden, np.int8(Emit.NONE), emit)
            learn = tr.learn
            anomalous = np.flatnonzero(emit == Emit.ANOMALOUS).tolist()
            evs = [self._event(names, int(m[j]), p, int(idx[j]), "anomalous", tr, j,
                               window_of, judged_obj, result.verdicts) for j in anomalous]
            if self.stages and evs:
                # the learner's daily-profile alerts of this step (judged points only)
                daily = getattr(judged_obj, "daily", None)
                # the step's candidates go through the stages together (one hot-store round
                # trip and one judgement for all in a stage that batches, as Mirage does)
                cands = [Candidate(metric=ev.metric, timestamp=ev.timestamp, value=ev.value,
                                   score=ev.score, band_low=ev.band_low,
                                   band_high=ev.band_high,
                                   window_timestamps=ev.window_timestamps,
                                   window_values=ev.window_values,
                                   realert=not bool(tr.opened[j]),
                                   history=_until(self.history, ev.metric, ev.timestamp),
                                   detector="learning" if p.learnt[int(idx[j])]
                                   else self.window_detector,
                                   time_of_day=daily is not None and bool(daily[j]))
                         for j, ev in zip(anomalous, evs, strict=True)]
                for j, ev, (vetoed, verdicts) in zip(anomalous, evs,
                                                     self.stages.check_many(cands),
                                                     strict=True):
                    ev.stages = verdicts
                    if vetoed:
                        ev.status = "vetoed"
                        p.vetoed[int(idx[j])] = True
                        incidents.veto(inc, np.array([j]))
                        learn = learn.copy()
                        learn[j] = True
            result.events.extend(evs)
            for j in np.flatnonzero((emit == Emit.RECOVERED) | (emit == Emit.NEW_LEVEL)).tolist():
                status = Emit(int(emit[j])).status
                result.events.append(self._event(names, int(m[j]), p, int(idx[j]), status, tr,
                                                 j, window_of, judged_obj, result.verdicts))
            inc_all[m] = inc
            p.emit[idx] = emit
            if self.learner is not None:
                new_level = tr.emit == Emit.NEW_LEVEL
                if new_level.any():
                    self.learner.rebase(det, m[new_level], t[new_level],
                                        tr.seen_low[new_level], tr.seen_high[new_level])
                self.learner.learn(det, m, t, v, judged_obj, learn)
            header["cursor"][m] = t

    @property
    def _unflagged_stages(self) -> list[Any]:
        """Stages that judge some points the detector did not flag (Mirage's periodic
        checks): they have `wants(metrics, timestamps)` and `check_many`."""
        return [st for st in self.stages.stages if getattr(st, "looks_unflagged", False)]

    def _unflagged(self, names: Sequence[str], p: Points, idx: IntArray, owner: IntArray,
                   window_of: Callable[[int], tuple[FloatArray, FloatArray]]) -> None:
        """Newest points a stage asks to judge though the detector did not flag them
        (MIRAGE_PERIODIC_CHECK, MIRAGE_ALWAYS_METRICS): a confirm makes the point a
        candidate (it then goes through the incident rules and every stage as any)."""
        sel = idx[p.newest[idx] & ~p.fired[idx] & p.judged[idx] & ~p.bootstrap[idx]]
        if not sel.size:
            return
        metrics = [names[int(owner[i])] for i in sel.tolist()]
        for stage in self._unflagged_stages:
            wanted = stage.wants(metrics, p.t[sel])
            rows = [int(i) for i, w in zip(sel.tolist(), wanted, strict=True) if w]
            if not rows:
                continue
            cands = []
            for i in rows:
                wt, wv = window_of(i)
                metric = names[int(owner[i])]
                cands.append(Candidate(metric=metric, timestamp=float(p.t[i]),
                                       value=float(p.v[i]), score=float(p.score[i]),
                                       band_low=float(p.low[i]), band_high=float(p.high[i]),
                                       window_timestamps=wt, window_values=wv,
                                       history=_until(self.history, metric, float(p.t[i]))))
            try:
                got = stage.check_many(cands, time.monotonic() + self.stages.budget)
            except Exception as e:  # noqa: BLE001 - a failing check flags nothing
                log.warning("stage %s failed on unflagged points: %s", stage.name, e)
                continue
            for i, verdict in zip(rows, got, strict=True):
                if getattr(verdict, "verdict", None) == "confirm":
                    p.fired[i] = True

    @staticmethod
    def describe_newest(result: RunResult, i: int
                        ) -> tuple[tuple[AlgorithmResult, ...], tuple[str, ...], tuple[()]]:
        """(results, triggered, stages) of a newest point that made no event (run with
        explain_newest)."""
        triggered, results = result.explained.get(i, ((), ()))
        return results, triggered, ()

    def _window(self, prepared: Any, p: Points, i: int) -> tuple[FloatArray, FloatArray]:
        b = int(p.batch[i])
        if prepared is None or b < 0:
            return np.empty(0), np.empty(0)
        batch = prepared.batches[b]
        r = int(np.searchsorted(batch.rows, p.metric[i]))
        w = batch.width
        c = int(p.column[i])
        start = w - int(batch.counts[r])
        return batch.timestamps[r, start:c + 1].copy(), batch.values[r, start:c + 1].copy()

    def _event(self, names: Sequence[str], m: int, p: Points, i: int, status: str,
               tr: incidents.Transition, j: int,
               window_of: Callable[[int], tuple[FloatArray, FloatArray]],
               judged_obj: Any, verdicts: Verdicts | None) -> PointEvent:
        wt, wv = window_of(i)
        # an anomalous event quotes the band of its incident (what was normal before it)
        low = float(tr.band_low[j]) if status == "anomalous" else float(p.low[i])
        high = float(tr.band_high[j]) if status == "anomalous" else float(p.high[i])
        triggered, results = self._explain(p, i, j, judged_obj, verdicts)
        score = float(p.score[i])
        if status == "anomalous" and not tr.opened[j]:
            # a re-alert: the incident is still open; quote its peak score and say why
            score = max(score, float(np.nan_to_num(tr.peak[j], nan=0.0, neginf=0.0)))
            results = (AlgorithmResult(
                algorithm="incident", verdict=True, statistic=None, limit=None,
                text=_still_broken(float(p.v[i]), low, high, float(tr.since[j]))),
                *results)
        return PointEvent(
            metric=names[m], row=m, point=i, timestamp=float(p.t[i]), value=float(p.v[i]),
            score=score, status=status, since=float(tr.since[j]),
            band_low=low, band_high=high, triggered=triggered, results=results,
            window_timestamps=wt, window_values=wv)

    def _explain(self, p: Points, i: int, j: int, judged_obj: Any, verdicts: Verdicts | None
                 ) -> tuple[tuple[str, ...], tuple[AlgorithmResult, ...]]:
        """What fired on point i (step row j), and every opinion's line of text."""
        triggered: list[str] = []
        results: list[AlgorithmResult] = []
        if self.learner is not None and p.learnt[i]:
            results.append(AlgorithmResult(
                algorithm=self.learner.name, verdict=bool(p.fired[i] and p.custom[i] >= 0),
                statistic=float(p.score[i]), limit=None,
                text=self.learner.explain(judged_obj, j)))
            if results[-1].verdict:
                triggered.append(self.learner.name)
            if p.newest[i] and verdicts is not None:
                # the custom algorithms' opinions; the window detector did not judge this point
                judgement = verdicts.judgement(int(p.metric[i]))
                results += [r for r in judgement.results
                            if r.algorithm not in self._builtin_names]
                triggered += [a for a in judgement.triggered
                              if a not in triggered and a not in self._builtin_names]
            return tuple(triggered), tuple(results)
        if self.learner is not None and judged_obj is not None:
            # still learning: say so, beside the window detector's opinion that stands
            learning = AlgorithmResult(algorithm=self.learner.name, verdict=None,
                                       statistic=None, limit=None,
                                       text=self.learner.explain(judged_obj, j))
            window_triggered, window_results = self._window_explain(p, i, verdicts)
            # the window detector's lines first (they decided), then this, then the customs'
            builtin = tuple(r for r in window_results if r.algorithm in self._builtin_names
                            or r.algorithm == (self._older.name if self._older else ""))
            rest = tuple(r for r in window_results if r not in builtin)
            return window_triggered, (*builtin, learning, *rest)
        return self._window_explain(p, i, verdicts)

    def _window_explain(self, p: Points, i: int, verdicts: Verdicts | None
                        ) -> tuple[tuple[str, ...], tuple[AlgorithmResult, ...]]:
        """The window detector's opinion of point i (the newest: the judgement; an older
        one: range_excess on its own window)."""
        if p.newest[i] and verdicts is not None:
            judgement = verdicts.judgement(int(p.metric[i]))
            return judgement.triggered, judgement.results
        op, r = self._older_ops.get((int(p.batch[i]), int(p.column[i]), int(p.metric[i])),
                                    (None, -1))
        if op is None or self._older is None:
            return (), ()
        res = AlgorithmResult(algorithm=self._older.name, verdict=bool(p.fired[i]),
                              statistic=float(op.statistic[r]) if np.isfinite(op.statistic[r])
                              else None,
                              limit=float(op.limit[r]) if np.isfinite(op.limit[r]) else None,
                              text=self._older.describe(op, r))
        return ((self._older.name,) if p.fired[i] else ()), (res,)
