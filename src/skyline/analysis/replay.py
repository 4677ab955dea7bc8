"""The one replay engine: a stored series run through the pipeline as if its rows arrived one
at a time, each row followed by an analyzer run. `skyline crucible --replay`, the web crucible
page and `skyline bench nab` replay through it, so they measure the product, not a model of it.

At row i the analyzer would see the rows up to and including i, at "now" = row i's timestamp:
the window is the FULL_DURATION before it (or every row so far, for an expanding history).
Rather than a Python loop per row over windows, the windows of many rows are laid end to end
(one gather through an index array) and prepared together (prepare_flat: cleaning, counters,
resampling, the TooShort/Boring checks), and a window detector judges all of them at once.
Then the pipeline steps through the rows in order with the series' one analysis state, exactly
as Pipeline.run does live: the row's new analysis points (those after the state's cursor; a
repeated timestamp or a clock that steps back has none), the incident machine, the stages,
and for a learning detector its judgement and learning point by point.

A row whose window is not analysed (TooShort, Boring...) scores 0 and is counted; Stale cannot
happen (a window ends at its own row).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from skyline.algorithms import ANOMALOUS, NOT_RUN, Batch, Status, prepare_flat
from skyline.algorithms.prepare import chunk_ranges
from skyline.analysis.incidents import Emit
from skyline.analysis.pipeline import Pipeline, PointEvent, Points, RunResult, _select
from skyline.analysis.stages import History
from skyline.core.errors import InvalidInput
from skyline.core.types import FloatArray

IntArray = npt.NDArray[np.int64]
CHUNK_POINTS = 1 << 21  # points of all windows in one chunk: ~32 MB per float64 array


@dataclass
class Replayed:
    """Per input row: the analysis status of its window; its new point's judgement (score 0
    and judged False when it had none); what the pipeline emitted there (incidents.Emit, a
    vetoed candidate still ANOMALOUS with `vetoed` set); and, for window detectors, each
    algorithm's verdict code and severity on the window's newest point (columns in ALGORITHMS
    order; NOT_RUN where not analysed). `events` are the events in order, their `point` the
    row they belong to."""

    status: npt.NDArray[np.int8]
    score: FloatArray
    judged: npt.NDArray[np.bool_]
    fired: npt.NDArray[np.bool_]
    emit: npt.NDArray[np.int8]
    vetoed: npt.NDArray[np.bool_]
    verdicts: npt.NDArray[np.int8]
    severity: FloatArray
    ensemble_score: FloatArray
    events: list[PointEvent] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.score.shape[0])

    @property
    def alerted(self) -> npt.NDArray[np.bool_]:
        """Rows where a confirmed anomalous event was emitted (what alerts)."""
        return (self.emit == Emit.ANOMALOUS) & ~self.vetoed

    def alert_scores(self) -> FloatArray:
        """The score at alerted rows, 0 elsewhere: the product's detections, as NAB scores
        them."""
        return np.where(self.alerted, self.score, 0.0)

    def abstained(self) -> dict[str, int]:
        """Rows not analysed, by upstream's exception name (TooShort, Boring...)."""
        codes, counts = np.unique(self.status, return_counts=True)
        return {Status(int(c)).label: int(n) for c, n in zip(codes, counts, strict=True)
                if c != Status.OK}


def window_starts(timestamps: FloatArray, history: float | None) -> IntArray:
    """First row of each row's history. The file's time may step back (NAB has one such file),
    so the search runs on the running maximum: the window then holds every earlier row newer
    than the newest point minus the history, and prepare's own cut (relative to that newest
    point) is the exact one."""
    n = len(timestamps)
    if history is None:
        return np.zeros(n, dtype=np.int64)
    newest = np.maximum.accumulate(timestamps)
    return np.searchsorted(newest, newest - history, side="right").astype(np.int64)


def _gather(lo: IntArray, counts: IntArray) -> IntArray:
    """Indices of rows lo[k] .. lo[k] + counts[k] - 1 for every k, laid end to end."""
    total = int(counts.sum())
    offsets = np.cumsum(counts) - counts
    return np.arange(total, dtype=np.int64) - np.repeat(offsets - lo, counts)


def _last_analysis_time(prepared: object, k: int) -> FloatArray:
    """Per window, the time of its newest analysis point (NaN: none)."""
    out = np.full(k, np.nan)
    for batch in prepared.batches:  # type: ignore[attr-defined]
        if batch.width:
            out[batch.rows] = batch.timestamps[:, -1]
    return out


def replay(metric: str, timestamps: FloatArray, values: FloatArray, pipeline: Pipeline, *,
           history: float | None = -1.0, anchor: float | None = None,
           chunk_points: int = CHUNK_POINTS,
           progress: Callable[[int], None] | None = None) -> Replayed:
    """Replay one series from a fresh analysis state. history: seconds of window per row
    (default the pipeline's FULL_DURATION; None: every row so far). anchor: the FULL_DURATION
    the algorithms are told, when it differs from the window (first_hour_average's baseline)."""
    t = np.asarray(timestamps, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    if t.shape != v.shape or t.ndim != 1:
        raise InvalidInput("timestamps and values must be 1-D and equally long")
    if not np.isfinite(t).all():
        raise InvalidInput("timestamps must be finite")
    params = pipeline.params
    if history is not None and history < 0:
        history = None if np.isinf(params.full_duration) else float(params.full_duration)
    n = len(t)
    n_alg = len(pipeline.judge.ensemble.algorithms)
    out = Replayed(status=np.zeros(n, dtype=np.int8), score=np.zeros(n),
                   judged=np.zeros(n, dtype=bool), fired=np.zeros(n, dtype=bool),
                   emit=np.zeros(n, dtype=np.int8), vetoed=np.zeros(n, dtype=bool),
                   verdicts=np.full((n, n_alg), NOT_RUN, dtype=np.int8),
                   severity=np.full((n, n_alg), np.nan), ensemble_score=np.zeros(n))
    states = pipeline.fresh(1)
    names = [metric]
    # stages see the replayed series as their history, never past the row being decided
    # (the cursor bounds every stage's end)
    previous, pipeline.history = pipeline.history, _series_history(t, v)
    lo = window_starts(t, history)
    counts = np.arange(n, dtype=np.int64) - lo + 1
    carried = np.nan  # the series' cursor before the chunk
    for a, b in chunk_ranges(counts, chunk_points):
        idx = _gather(lo[a:b], counts[a:b])
        prepared = prepare_flat(t[idx], v[idx], counts[a:b], params, now=t[a:b],
                                analyse_all=True)
        if anchor is not None:
            prepared.batches = [Batch(x.timestamps, x.values, x.counts, rows=x.rows,
                                      full_duration=anchor) for x in prepared.batches]
        out.status[a:b] = prepared.status
        k = b - a
        # window i's cursor: the newest analysis point any earlier row reached
        last = _last_analysis_time(prepared, k)
        reach = np.fmax.accumulate(np.r_[carried, last])
        cursor = reach[:-1]
        carried = reach[-1]
        window_names = [metric] * k
        points = _select(prepared, cursor, _cap(pipeline, cursor))
        result = RunResult(points=points)
        if len(points):
            verdicts = pipeline.judge.judge_prepared(window_names, prepared, ok_only=True)
            result.verdicts = verdicts
            _keep_opinions(verdicts, a, points.metric[points.newest], out)
            if pipeline.stateful:
                pipeline._custom_opinions(verdicts, points)
            else:
                pipeline._older_ops = {}
                pipeline._window_opinions(prepared, verdicts, points)
        # every window's points belong to the series' one state record, in row order
        pipeline.advance(names, points, states, result, prepared=prepared,
                         state_rows=np.zeros(len(points), dtype=np.int64))
        _keep_points(points, a, out)
        for ev in result.events:
            ev.point = a + int(points.metric[ev.point])
            out.events.append(ev)
        if progress is not None:
            progress(k)
    pipeline.history = previous
    return out


def _series_history(t: FloatArray, v: FloatArray) -> History:
    order = np.argsort(t, kind="stable")
    ts, vs = t[order], v[order]

    def history(start: float, end: float) -> tuple[FloatArray, FloatArray]:
        lo, hi = np.searchsorted(ts, start, side="left"), np.searchsorted(ts, end, side="right")
        return ts[lo:hi].copy(), vs[lo:hi].copy()

    return history


def _cap(pipeline: Pipeline, cursor: FloatArray) -> IntArray:
    if pipeline.stateful:
        return np.full(len(cursor), np.iinfo(np.int64).max)
    return np.where(np.isnan(cursor), 1, pipeline.catch_up).astype(np.int64)


def _keep_points(points: Points, offset: int, out: Replayed) -> None:
    """Row results from the points (a row's newest point speaks for the row)."""
    if not len(points):
        return
    rows = offset + points.metric
    newest = points.newest
    out.score[rows[newest]] = points.score[newest]
    out.judged[rows[newest]] = points.judged[newest]
    out.fired[rows] |= points.fired
    # any emit of the row's points; an anomalous one wins
    for code in (Emit.RECOVERED, Emit.NEW_LEVEL, Emit.ANOMALOUS):
        here = points.emit == code
        out.emit[rows[here]] = code
        if code == Emit.ANOMALOUS:
            out.score[rows[here]] = points.score[here]
    out.vetoed[rows[points.vetoed]] = True


def _keep_opinions(verdicts: object, offset: int, windows: IntArray, out: Replayed) -> None:
    """Each algorithm's verdict and severity on the newest point of the windows that had a
    new one (variants of `skyline bench nab` score from them)."""
    an = verdicts.analysis  # type: ignore[attr-defined]
    wanted = np.zeros(len(an), dtype=bool)
    wanted[windows] = True
    for res in an.results:
        keep = wanted[res.rows]
        rows = offset + res.rows[keep]
        if res.opinions:
            out.verdicts[rows] = res.verdicts[keep]
            out.severity[rows] = np.stack([o.severity for o in res.opinions], axis=1)[keep]
        out.ensemble_score[rows] = res.score[keep]


def votes(verdicts: npt.NDArray[np.int8]) -> IntArray:
    return np.asarray((verdicts == ANOMALOUS).sum(axis=1), dtype=np.int64)


def replay_many(series: Sequence[tuple[str, FloatArray, FloatArray]], pipeline: Pipeline,
                **kw: object) -> list[Replayed]:
    return [replay(name, t, v, pipeline, **kw) for name, t, v in series]  # type: ignore[arg-type]
