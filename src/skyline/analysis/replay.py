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
from typing import Any

import numpy as np
import numpy.typing as npt

from skyline.algorithms import ANOMALOUS, NOT_RUN, Batch, Status, prepare_flat
from skyline.analysis.incidents import Emit
from skyline.analysis.pipeline import (
    BOOTSTRAP_POINTS,
    Pipeline,
    PointEvent,
    Points,
    RunResult,
    _select,
)
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
    return replay_many([(metric, timestamps, values)], pipeline, history=history,
                       anchor=anchor, chunk_points=chunk_points, progress=progress)[0]


def replay_many(series: Sequence[tuple[str, FloatArray, FloatArray]], pipeline: Pipeline, *,
                history: float | None = -1.0, anchor: float | None = None,
                chunk_points: int = CHUNK_POINTS,
                progress: Callable[[int], None] | None = None) -> list[Replayed]:
    """Replay several series side by side, each from a fresh state: row k of every series is
    stepped together, so the per-point work (incidents, a learning detector) is vectorised
    across the series as it is across metrics live. Each series' outcome is exactly what
    replay() of it alone gives (names must differ: they key the stages' history)."""
    items = []
    for name, ts, vs in series:
        t = np.asarray(ts, dtype=np.float64)
        v = np.asarray(vs, dtype=np.float64)
        if t.shape != v.shape or t.ndim != 1:
            raise InvalidInput(f"{name}: timestamps and values must be 1-D and equally long")
        if not np.isfinite(t).all():
            raise InvalidInput(f"{name}: timestamps must be finite")
        items.append((name, t, v))
    names = [name for name, _, _ in items]
    if len(set(names)) != len(names):
        raise InvalidInput("replayed series need distinct names")
    params = pipeline.params
    if history is not None and history < 0:
        history = None if np.isinf(params.full_duration) else float(params.full_duration)
    n_series = len(items)
    sizes = np.array([len(t) for _, t, _ in items], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    total = int(offsets[-1])
    n_alg = len(pipeline.judge.ensemble.algorithms)
    out = Replayed(status=np.zeros(total, dtype=np.int8), score=np.zeros(total),
                   judged=np.zeros(total, dtype=bool), fired=np.zeros(total, dtype=bool),
                   emit=np.zeros(total, dtype=np.int8), vetoed=np.zeros(total, dtype=bool),
                   verdicts=np.full((total, n_alg), NOT_RUN, dtype=np.int8),
                   severity=np.full((total, n_alg), np.nan),
                   ensemble_score=np.zeros(total))
    states = pipeline.fresh(n_series)
    los = [window_starts(t, history) for _, t, _ in items]
    counts = [np.arange(len(t), dtype=np.int64) - lo + 1 for (_, t, _), lo in zip(items, los,
                                                                                  strict=True)]
    cum = [np.concatenate([[0], np.cumsum(c)]) for c in counts]  # window points before row r
    carried = np.full(n_series, np.nan)  # each series' cursor before the chunk
    # stages see each replayed series as its history, never past the row being decided
    by_name = {name: _series_history(t, v) for name, t, v in items}
    previous = pipeline.history
    pipeline.history = lambda metric, a, b: by_name[metric](a, b)
    try:
        r0 = 0
        longest = int(sizes.max()) if n_series else 0
        while r0 < longest:
            r1 = _chunk_end(cum, sizes, r0, chunk_points)
            _replay_rows(items, pipeline, states, out, los, counts, offsets, carried, r0, r1,
                         anchor)
            if progress is not None:
                progress(int(np.minimum(sizes, r1).sum() - np.minimum(sizes, r0).sum()))
            r0 = r1
    finally:
        pipeline.history = previous
    events: list[list[PointEvent]] = [[] for _ in range(n_series)]
    for ev in out.events:
        events[ev.row].append(ev)
    return [_part(out, int(offsets[i]), int(offsets[i + 1]), events[i])
            for i in range(n_series)]


def _chunk_end(cum: list[IntArray], sizes: IntArray, r0: int, chunk_points: int) -> int:
    """The end of the next chunk of rows: as many rows as keep every series' windows within
    about chunk_points points (at least one row)."""
    def points(r: int) -> int:
        return int(sum(int(c[min(r, n)] - c[min(r0, n)]) for c, n in zip(cum, sizes,
                                                                           strict=True)))
    hi = int(sizes.max())
    step = 1
    r = r0 + 1
    while r < hi and points(min(hi, r + step)) <= chunk_points:
        r = min(hi, r + step)
        step *= 2
    while step > 1 and r < hi:
        step //= 2
        if points(min(hi, r + step)) <= chunk_points:
            r = min(hi, r + step)
    return r


def _replay_rows(items: list[tuple[str, FloatArray, FloatArray]], pipeline: Pipeline,
                 states: Any, out: Replayed, los: list[IntArray], counts: list[IntArray],
                 offsets: IntArray, carried: FloatArray, r0: int, r1: int,
                 anchor: float | None) -> None:
    """Rows [r0, r1) of every series: their windows prepared and judged together, then the
    pipeline stepped through them (row k of every series at step k)."""
    idx_l, t_l, v_l, c_l, now_l, owner_l, row_l = [], [], [], [], [], [], []
    for i, (_, t, v) in enumerate(items):
        a, b = min(r0, len(t)), min(r1, len(t))
        if a >= b:
            continue
        idx = _gather(los[i][a:b], counts[i][a:b])
        idx_l.append(idx)
        t_l.append(t[idx])
        v_l.append(v[idx])
        c_l.append(counts[i][a:b])
        now_l.append(t[a:b])
        owner_l.append(np.full(b - a, i, dtype=np.int64))
        row_l.append(np.arange(a, b, dtype=np.int64) + offsets[i])
    owner = np.concatenate(owner_l)  # the series of each window
    grow = np.concatenate(row_l)  # each window's row in `out`
    prepared = prepare_flat(np.concatenate(t_l), np.concatenate(v_l), np.concatenate(c_l),
                            pipeline.params, now=np.concatenate(now_l), analyse_all=True)
    if anchor is not None:
        prepared.batches = [Batch(x.timestamps, x.values, x.counts, rows=x.rows,
                                  full_duration=anchor) for x in prepared.batches]
    out.status[grow] = prepared.status
    # window w's cursor: the newest analysis point its series reached before it
    last = _last_analysis_time(prepared, len(owner))
    cursor = np.empty(len(owner))
    starts = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])
    for s, e in zip(starts.tolist(), [*starts[1:].tolist(), len(owner)], strict=True):
        i = int(owner[s])
        reach = np.fmax.accumulate(np.r_[carried[i], last[s:e]])
        cursor[s:e] = reach[:-1]
        carried[i] = reach[-1]
    points = _select(prepared, cursor, _cap(pipeline, cursor))
    names = [name for name, _, _ in items]
    result = RunResult(points=points)
    if len(points):
        window_names = [names[int(i)] for i in owner.tolist()]
        verdicts = pipeline.judge.judge_prepared(window_names, prepared, ok_only=True)
        result.verdicts = verdicts
        _keep_opinions(verdicts, grow, points.metric[points.newest], out)
        pipeline._older_ops = {}
        pipeline._window_opinions(prepared, verdicts, points)
        if pipeline.stateful:
            pipeline._custom_opinions(verdicts, points)
    # each window's points belong to its series' state record; step k is row k of each
    pipeline.advance(names, points, states, result, prepared=prepared,
                     state_rows=owner[points.metric])
    _keep_points(points, grow, out)
    for ev in result.events:
        ev.point = int(grow[int(points.metric[ev.point])])  # a row of `out`, for now
        out.events.append(ev)


def _part(out: Replayed, a: int, b: int, events: list[PointEvent]) -> Replayed:
    """One series' rows of a side-by-side replay, its events' `point` its own rows."""
    for ev in events:
        ev.point -= a
    return Replayed(status=out.status[a:b], score=out.score[a:b], judged=out.judged[a:b],
                    fired=out.fired[a:b], emit=out.emit[a:b], vetoed=out.vetoed[a:b],
                    verdicts=out.verdicts[a:b], severity=out.severity[a:b],
                    ensemble_score=out.ensemble_score[a:b], events=events)


def _series_history(t: FloatArray, v: FloatArray) -> History:
    order = np.argsort(t, kind="stable")
    ts, vs = t[order], v[order]

    def history(start: float, end: float) -> tuple[FloatArray, FloatArray]:
        lo, hi = np.searchsorted(ts, start, side="left"), np.searchsorted(ts, end, side="right")
        return ts[lo:hi].copy(), vs[lo:hi].copy()

    return history


def _cap(pipeline: Pipeline, cursor: FloatArray) -> IntArray:
    if pipeline.stateful:  # as Pipeline.run
        return np.where(np.isnan(cursor), BOOTSTRAP_POINTS,
                        np.iinfo(np.int64).max).astype(np.int64)
    return np.where(np.isnan(cursor), 1, pipeline.catch_up).astype(np.int64)


def _keep_points(points: Points, grow: IntArray, out: Replayed) -> None:
    """Row results from the points (a row's newest point speaks for the row); grow: each
    window's row in `out`."""
    if not len(points):
        return
    rows = grow[points.metric]
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


def _keep_opinions(verdicts: object, grow: IntArray, windows: IntArray, out: Replayed) -> None:
    """Each algorithm's verdict and severity on the newest point of the windows that had a
    new one (variants of `skyline bench nab` score from them)."""
    an = verdicts.analysis  # type: ignore[attr-defined]
    wanted = np.zeros(len(an), dtype=bool)
    wanted[windows] = True
    for res in an.results:
        keep = wanted[res.rows]
        rows = grow[res.rows[keep]]
        if res.opinions:
            out.verdicts[rows] = res.verdicts[keep]
            out.severity[rows] = np.stack([o.severity for o in res.opinions], axis=1)[keep]
        out.ensemble_score[rows] = res.score[keep]


def votes(verdicts: npt.NDArray[np.int8]) -> IntArray:
    return np.asarray((verdicts == ANOMALOUS).sum(axis=1), dtype=np.int64)


