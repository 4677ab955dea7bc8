"""Crucible: one series through the analyzer's pipeline, for a person asking about it. Used by
`skyline crucible` and the web app's crucible page.

- The verdict (`examine`) is what the analyzer would say about the series' newest point if it
  met the metric now, for the first time: one Pipeline.run on the series with a fresh analysis
  state, the same settings, detector, custom algorithms and stages. So crucible and the
  analyzer agree by construction (and a test checks it).
- The replay (`replay_series`) runs the series row by row through skyline.analysis.replay, the
  engine `skyline bench nab` uses: every event the pipeline would have emitted, and which of
  them would have alerted (the alerters send one alert per metric per EXPIRATION_TIME).
- `--algorithms a,b,c` asks instead for those algorithms' vote (CONSENSUS of them, every one
  run and explained): a question about algorithms, not the analyzer's verdict.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from skyline.algorithms import Status, prepare
from skyline.analysis.config import AnalyzerConfig, from_settings
from skyline.analysis.customs import CustomSpec, specs_from_settings
from skyline.analysis.incidents import Emit
from skyline.analysis.isolation import Isolation
from skyline.analysis.judge import Judge
from skyline.analysis.params import analysis_params
from skyline.analysis.pipeline import Pipeline
from skyline.analysis.replay import _series_history, replay
from skyline.analysis.stages import StageContext
from skyline.core.errors import InvalidInput
from skyline.core.events import AlgorithmResult, StageVerdict
from skyline.core.types import FloatArray
from skyline.settings import Settings

APP = "crucible"


@dataclass
class Examination:
    metric: str
    points: int
    status: str  # the window's status (Analysed, TooShort, Stale, Boring...)
    detector: str  # what judged: score, consensus, learning, or "algorithms" (--algorithms);
    # with the learning detector, "score" while it is still learning the series
    anomalous: bool  # the analyzer would emit a confirmed anomalous event now
    candidate: bool  # the detector called the newest point anomalous (before the stages)
    event: str  # the event the newest point makes: anomalous, vetoed, recovered... or ""
    score: float
    judged: bool
    results: tuple[AlgorithmResult, ...]
    triggered: tuple[str, ...]
    stages: tuple[StageVerdict, ...]
    timestamp: float  # the newest analysis point (for a counter: its rate)
    value: float
    band_low: float  # the range the detector expected the newest point in
    band_high: float
    window_timestamps: FloatArray
    window_values: FloatArray
    votes: int = 0  # with a vote (consensus, --algorithms): True votes and opinions
    opinions: int = 0
    consensus: int = 0
    state: bytes = b""  # the analysis state record the analyzer would store after this run


@dataclass
class ReplayEvent:
    """An event the pipeline emitted in the replay. `alert`: the alerters would have sent it
    (a confirmed anomalous event, at most one per metric per EXPIRATION_TIME)."""

    timestamp: float
    value: float
    score: float
    status: str  # anomalous | vetoed | recovered | new_level
    triggered: tuple[str, ...] = ()
    alert: bool = False
    reason: str = ""  # a veto's reason


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


def examine(pipeline: Pipeline, metric: str, t: FloatArray, v: FloatArray, *,
            now: float | None = None, detector: str | None = None,
            history_from_series: bool = True) -> Examination:
    """The analyzer's first run on this series, at `now` (None: no clock, nothing is stale).
    The stages see the whole series as the metric's history (a file longer than
    FULL_DURATION gives Mirage its week, as the long history would live); with
    history_from_series False (a metric of the hot store, stages given its Redis client)
    they read the hot store as they do live."""
    prepared = prepare([(t, v)], pipeline.params, now=now, analyse_all=True)
    states = pipeline.fresh(1)
    previous = pipeline.history
    if previous is None and history_from_series:
        whole = _series_history(t, v)
        pipeline.history = lambda _metric, a, b: whole(a, b)
    try:
        result = pipeline.run([metric], prepared, states, explain_newest=True)
    finally:
        pipeline.history = previous
    p = result.points
    status = Status(int(prepared.status[0])).label
    state = pipeline.layout.pack(states)[0]
    name = detector or ("learning" if pipeline.stateful else pipeline.params.detector)
    if not len(p):
        return Examination(metric=metric, points=len(t), status=status, detector=name,
                           anomalous=False, candidate=False, event="", score=0.0,
                           judged=False, results=(), triggered=(), stages=(),
                           timestamp=float(t[-1]) if len(t) else math.nan,
                           value=float(v[-1]) if len(v) else math.nan,
                           band_low=math.nan, band_high=math.nan,
                           window_timestamps=np.empty(0), window_values=np.empty(0),
                           state=state)
    i = int(np.flatnonzero(p.newest)[0])
    if detector is None and pipeline.stateful and not p.learnt[i]:
        name = "score"  # the learning detector is still learning the series: score judged it
    ev = next((e for e in result.events if e.point == i), None)
    wt, wv = pipeline._window(prepared, p, i)
    if ev is not None:
        results, triggered, stages = ev.results, ev.triggered, ev.stages
    elif result.verdicts is not None and not pipeline.stateful:
        j = result.verdicts.judgement(0)
        results, triggered, stages = j.results, j.triggered, ()
    else:
        results, triggered, stages = pipeline.describe_newest(result, i)
    votes = sum(1 for r in results if r.verdict)
    opinions = sum(1 for r in results if r.verdict is not None)
    return Examination(
        metric=metric, points=len(t), status=status, detector=name,
        anomalous=bool(p.emit[i] == Emit.ANOMALOUS and not p.vetoed[i]),
        candidate=bool(p.fired[i]), event=ev.status if ev is not None else "",
        score=float(p.score[i]), judged=bool(p.judged[i]), results=tuple(results),
        triggered=tuple(triggered), stages=tuple(stages), timestamp=float(p.t[i]),
        value=float(p.v[i]), band_low=float(p.low[i]), band_high=float(p.high[i]),
        window_timestamps=wt, window_values=wv, votes=votes, opinions=opinions,
        consensus=pipeline.judge.consensus if name in ("consensus", "algorithms") else 0,
        state=state)


def replay_series(pipeline: Pipeline, metric: str, t: FloatArray, v: FloatArray, *,
                  expiration: float, progress: Callable[[int], None] | None = None) -> Replay:
    """Every row through the pipeline in order, from a fresh state."""
    r = replay(metric, t, v, pipeline, progress=progress)
    out = Replay(judged=int(r.judged.sum()), anomalous=r.fired.copy())
    last_alert = -math.inf
    for e in r.events:
        alert = False
        if e.status == "anomalous" and e.timestamp - last_alert >= expiration:
            alert, last_alert = True, e.timestamp
        veto = next((s for s in e.stages if s.verdict == "veto"), None)
        out.events.append(ReplayEvent(e.timestamp, e.value, e.score, e.status, e.triggered,
                                      alert, veto.reason if veto is not None else ""))
    return out


def select_algorithms(settings: Settings, wanted: str
                      ) -> tuple[list[str], tuple[CustomSpec, ...]]:
    """The built-in/plug-in algorithms and custom ones a comma-separated list names."""
    from skyline.algorithms import OPTIONAL_BUILTINS, discover

    customs = specs_from_settings(settings, APP)
    names = [n.strip() for n in wanted.split(",") if n.strip()]
    registry = {**OPTIONAL_BUILTINS, **discover()}
    by_name = {c.name: c for c in customs}
    unknown = [n for n in names if n not in registry and n not in by_name]
    if unknown:
        known = sorted(set(registry) | set(by_name))
        raise InvalidInput(f"unknown algorithm {', '.join(unknown)}; known: {', '.join(known)}")
    if len(set(names)) != len(names):
        raise InvalidInput("--algorithms lists an algorithm twice")
    if not names:
        raise InvalidInput("no algorithm selected")
    return ([n for n in names if n not in by_name],
            tuple(by_name[n] for n in names if n in by_name))


def crucible_config(settings: Settings) -> AnalyzerConfig:
    """The analyzer's own analysis settings, with the custom algorithms used with crucible."""
    config = from_settings(settings)
    return dataclasses.replace(config, customs=specs_from_settings(settings, APP))


@contextlib.contextmanager
def crucible_pipeline(settings: Settings, algorithms: str | None = None,
                      context: StageContext | None = None) -> Iterator[Pipeline]:
    """The pipeline crucible judges with (its custom algorithms' process closed on exit):
    the analyzer's, or with `algorithms` the vote of those algorithms. `context`: what the
    stages may use (a Redis client for a metric of the hot store)."""
    config = crucible_config(settings)
    if not algorithms:
        isolation = Isolation(config.customs) if config.customs else None
        try:
            yield config.pipeline(isolation, context=context)
        finally:
            if isolation is not None:
                isolation.close()
        return
    builtins, customs = select_algorithms(settings, algorithms)
    consensus = max(1, min(settings.CONSENSUS, len(builtins) + len(customs)))
    chosen = tuple(builtins) or tuple(settings.ALGORITHMS[:1])  # the ensemble needs one
    params = analysis_params(
        settings, algorithms=chosen, consensus=min(consensus, len(chosen)), early_stop=False,
        algorithm_params={k: v for k, v in settings.analyzer.algorithm_params.items()
                          if k in chosen},
        detector="consensus")
    isolation = Isolation(customs) if customs else None
    try:
        judge = Judge(params, customs, isolation=isolation, run_builtins=bool(builtins),
                      consensus=consensus)
        yield Pipeline(params, config.rules, stages=config.pipeline(context=context).stages,
                       judge=judge,
                       catch_up=config.catch_up)
    finally:
        if isolation is not None:
            isolation.close()
