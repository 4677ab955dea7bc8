"""Crucible: one series, every algorithm's verdict and why, and where it would have alerted.

Judging goes through skyline.analysis.judge, as the analyzer's does, with two differences for
a person asking about one series: every algorithm runs (no early stop) so each one's opinion
is explained, and a series that the analyzer would skip (too short, stale, boring) is still
judged, its status reported beside the verdict.

The replay walks the series point by point: the window ending at each point (the last
FULL_DURATION of points) is judged, many windows per batch through the same path; the
open-anomaly state machine the analyzer uses (skyline.analysis.incidents) says where it would
have emitted events, and upstream's alert rule (one per EXPIRATION_TIME) which of them would
have alerted.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from skyline.algorithms import AnalysisParams, Status
from skyline.analysis.customs import CustomSpec
from skyline.analysis.incidents import Incident, judged_anomalous, judged_normal
from skyline.analysis.judge import Judge, Judgement
from skyline.core.errors import InvalidInput
from skyline.core.events import AlgorithmResult
from skyline.core.types import FloatArray
from skyline.settings import Settings

REPLAY_POINTS = 1 << 20  # points judged per batch of windows (all windows laid end to end)


@dataclass
class Examination:
    metric: str
    points: int
    status: str  # the analyzer's status for the whole series (Analysed, TooShort, Stale...)
    anomalous: bool
    score: float
    votes: int
    opinions: int
    consensus: int
    results: tuple[AlgorithmResult, ...]
    triggered: tuple[str, ...]
    timestamp: float
    value: float
    window_timestamps: FloatArray
    window_values: FloatArray


@dataclass
class ReplayEvent:
    """An event the analyzer would have emitted. `alert`: an alert rule with expiration
    EXPIRATION_TIME would have sent it (upstream's rule: one alert per metric per
    EXPIRATION_TIME, whether or not the metric recovered in between)."""

    timestamp: float
    value: float
    score: float
    status: str  # "anomalous" or "recovered"
    triggered: tuple[str, ...] = ()
    alert: bool = False


@dataclass
class Replay:
    judged: int = 0
    anomalous: npt.NDArray[np.bool_] = field(default_factory=lambda: np.zeros(0, dtype=bool))
    events: list[ReplayEvent] = field(default_factory=list)

    @property
    def alerts(self) -> list[ReplayEvent]:
        return [e for e in self.events if e.alert]

    @property
    def anomalous_count(self) -> int:
        return int(self.anomalous.sum())


def examine(judge: Judge, metric: str, t: FloatArray, v: FloatArray, *,
            now: float | None = None) -> Examination:
    verdicts = judge.judge_series([metric], [(t, v)], now=now, analyse_all=True)
    j: Judgement = verdicts.judgement(0)
    opinions = sum(1 for r in j.results if r.verdict is not None)
    votes = sum(1 for r in j.results if r.verdict)
    wt, wv = j.window_timestamps, j.window_values
    return Examination(
        metric=metric, points=len(t), status=Status(int(verdicts.status[0])).label,
        anomalous=bool(verdicts.anomalous[0]), score=j.score, votes=votes, opinions=opinions,
        consensus=judge.consensus, results=j.results, triggered=j.triggered,
        timestamp=j.timestamp, value=j.value, window_timestamps=wt, window_values=wv)


def _windows(starts: npt.NDArray[np.int64], ends: npt.NDArray[np.int64]
             ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Point indices of the windows [starts[k], ends[k]], laid end to end, and their counts."""
    counts = (ends - starts + 1).astype(np.int64)
    offsets = np.cumsum(counts) - counts
    idx = np.repeat(starts - offsets, counts) + np.arange(int(counts.sum()))
    return idx, counts


def replay(judge: Judge, metric: str, t: FloatArray, v: FloatArray, *, expiration: float,
           progress: Callable[[int], None] | None = None) -> Replay:
    """Judge the window ending at every point (from the first that can be long enough) and
    run the analyzer's event rules over the verdicts in order."""
    params: AnalysisParams = judge.params
    n = len(t)
    first = min(n, max(0, params.min_tolerable_length - 1))
    out = Replay(anomalous=np.zeros(n, dtype=bool))
    incident: Incident | None = None
    last_alert = -math.inf
    ends_all = np.arange(first, n, dtype=np.int64)
    if not len(ends_all):
        return out
    starts_all = np.searchsorted(t, t[ends_all] - params.full_duration, side="right")
    sizes = np.cumsum(ends_all - starts_all + 1)
    # batches of about REPLAY_POINTS points: a few large numpy calls, bounded memory
    cuts = np.searchsorted(sizes, np.arange(REPLAY_POINTS, int(sizes[-1]), REPLAY_POINTS))
    bounds = [0, *sorted({int(c) + 1 for c in cuts if 0 < int(c) + 1 < len(ends_all)}),
              len(ends_all)]
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        ends = ends_all[lo:hi]
        idx, counts = _windows(starts_all[lo:hi], ends)
        names: Sequence[str] = [metric] * len(ends)
        verdicts = judge.judge_flat(names, t[idx], v[idx], counts, now=None)
        judged = verdicts.judged
        out.judged += int(judged.sum())
        out.anomalous[ends] = verdicts.anomalous & judged
        for k in np.flatnonzero(judged):
            i = int(ends[k])
            if verdicts.anomalous[k]:
                incident, emit = judged_anomalous(incident, float(t[i]), expiration)
                if emit:
                    j = verdicts.judgement(int(k))
                    alert = float(t[i]) - last_alert >= expiration
                    if alert:
                        last_alert = float(t[i])
                    out.events.append(ReplayEvent(float(t[i]), float(v[i]), j.score,
                                                  "anomalous", j.triggered, alert))
            elif judged_normal(incident):
                incident = None
                out.events.append(ReplayEvent(float(t[i]), float(v[i]),
                                              float(verdicts.score[k]), "recovered"))
        if progress is not None:
            progress(len(ends))
    return out


APP = "crucible"


def select_algorithms(settings: Settings, wanted: str | None
                      ) -> tuple[list[str], tuple[CustomSpec, ...]]:
    """The built-in/plug-in algorithms and the custom ones to run: `wanted` is a
    comma-separated list, None for ALGORITHMS and the CUSTOM_ALGORITHMS used with crucible."""
    from skyline.algorithms import OPTIONAL_BUILTINS, discover
    from skyline.analysis.customs import specs_from_settings

    customs = specs_from_settings(settings, APP)
    if not wanted:
        return list(settings.ALGORITHMS), customs
    names = [n.strip() for n in wanted.split(",") if n.strip()]
    registry = {**OPTIONAL_BUILTINS, **discover()}
    by_name = {c.name: c for c in customs}
    unknown = [n for n in names if n not in registry and n not in by_name]
    if unknown:
        known = sorted(set(registry) | set(by_name))
        raise InvalidInput(f"unknown algorithm {', '.join(unknown)}; known: {', '.join(known)}")
    if len(set(names)) != len(names):
        raise InvalidInput("--algorithms lists an algorithm twice")
    return ([n for n in names if n not in by_name],
            tuple(by_name[n] for n in names if n in by_name))


@contextlib.contextmanager
def crucible_judge(settings: Settings, builtins: list[str], customs: tuple[CustomSpec, ...]
                   ) -> Iterator[Judge]:
    """A Judge for crucible; its custom-algorithm isolation (if any) is closed on exit."""
    from skyline.analysis.isolation import Isolation
    from skyline.analysis.params import analysis_params

    if not builtins and not customs:
        raise InvalidInput("no algorithm selected")
    consensus = max(1, min(settings.CONSENSUS, len(builtins) + len(customs)))
    algorithms = tuple(builtins) or tuple(settings.ALGORITHMS[:1])  # the ensemble needs one
    algorithm_params = {k: v for k, v in settings.analyzer.algorithm_params.items()
                        if k in algorithms}
    params = analysis_params(settings, algorithms=algorithms,
                             consensus=min(consensus, len(algorithms)), early_stop=False,
                             algorithm_params=algorithm_params,
                             # crucible runs the algorithms it was asked for and their vote
                             detector="consensus")
    isolation = Isolation(customs) if customs else None
    try:
        yield Judge(params, customs, isolation=isolation, run_builtins=bool(builtins),
                    consensus=consensus)
    finally:
        if isolation is not None:
            isolation.close()
