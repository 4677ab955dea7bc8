"""Stages: second opinions on a candidate before it becomes an alert.

The detector's anomalous points are candidates. An ordered list of stages (settings:
`analyzer.stages`; Mirage and Ionosphere are the real ones) looks at each candidate in turn;
each answers confirm, veto or abstain with a one-line reason and the figures behind it. The
first veto ends the chain: the candidate is recorded as `vetoed` (stored by Panorama with the
stage's reason, shown in the UI and API, never alerted). Otherwise it is confirmed and alerted.

Stages fail open. All of a candidate's stages share one time budget (`analyzer.stage_budget`);
a stage that raises, or whose answer comes after the budget is spent, abstains (counted as
`stage_errors` / `stage_overruns`) and the chain goes on: a broken second opinion must never
hide an anomaly. A stage that does I/O is given the remaining budget as its deadline and must
respect it (time.monotonic() based); CPU-bound stages are checked after they return.

Stages are registered by name in STAGES (built-ins) or through the `skyline.stages` entry
point group: a factory called with the stage's options table and a StageContext (Settings,
Redis client, SQL engine); a name that is neither is refused when the settings are checked.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Literal, Protocol, runtime_checkable

from skyline.core.errors import InvalidInput, UnknownAlgorithm
from skyline.core.events import StageVerdict
from skyline.core.patterns import PatternSet
from skyline.core.types import FloatArray

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "skyline.stages"
Verdict = Literal["confirm", "veto", "abstain"]


History = Callable[[float, float], tuple[FloatArray, FloatArray]]


@dataclass(frozen=True)
class Candidate:
    """What a stage sees: the metric, the anomalous point, what the detector expected (the
    band), its score, and the analysis points up to and including the candidate.

    history(start, end): the metric's raw points in [start, end], when the caller has them at
    hand (replay: the series being replayed, so a stage sees exactly what it would have seen
    live); None live, where a stage reads the hot store through its StageContext."""

    metric: str
    timestamp: float
    value: float
    score: float
    band_low: float
    band_high: float
    window_timestamps: FloatArray
    window_values: FloatArray
    realert: bool = False  # an open incident still broken, not a new one
    history: History | None = None
    detector: str = ""  # what judged it: "learning" (its per-metric memory) or a window detector
    # the detector already compared it with the same hour on earlier days (the learning
    # detector's daily profile fired): a time-of-day rule has nothing to add
    time_of_day: bool = False


@dataclass(frozen=True)
class StageContext:
    """What a stage may use besides the candidate, given to its factory: the Settings in
    force, a Redis client (None in replay and crucible on a file), a SQL engine (None where
    there is no database). Stages must work, or abstain, with any of them missing."""

    settings: Any = None
    client: Any = None
    engine: Any = None
    configs: Mapping[str, Any] = field(default_factory=dict)
    """Per stage name, its configuration already resolved from the Settings (picklable, so
    the analyzer's worker processes get it where the Settings object cannot travel)."""


@runtime_checkable
class Stage(Protocol):
    name: str

    def check(self, candidate: Candidate, deadline: float) -> StageVerdict:
        """deadline: time.monotonic() by which to answer (the rest of the budget)."""
        ...


@dataclass
class StageStats:
    checked: int = 0
    vetoed: int = 0
    errors: int = 0
    overruns: int = 0
    seconds: float = 0.0
    per_stage: dict[str, dict[str, int]] = field(default_factory=dict)

    def count(self, stage: str, what: str) -> None:
        d = self.per_stage.setdefault(stage, {})
        d[what] = d.get(what, 0) + 1

    def merge(self, other: StageStats) -> None:
        self.checked += other.checked
        self.vetoed += other.vetoed
        self.errors += other.errors
        self.overruns += other.overruns
        self.seconds += other.seconds
        for stage, d in other.per_stage.items():
            mine = self.per_stage.setdefault(stage, {})
            for k, n in d.items():
                mine[k] = mine.get(k, 0) + n


def _abstain(stage: str, reason: str, ms: float) -> StageVerdict:
    return StageVerdict(stage=stage, verdict="abstain", reason=reason, ms=ms)


class Stages:
    """The ordered chain, with the budget and fail-open rules above."""

    def __init__(self, stages: Sequence[Stage], budget: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if budget <= 0:
            raise InvalidInput("the stage budget must be positive")
        self.stages = tuple(stages)
        self.budget = budget
        self.clock = clock
        self.stats = StageStats()
        self._logged: set[tuple[str, str]] = set()

    def __bool__(self) -> bool:
        return bool(self.stages)

    def close(self) -> None:
        """Release what stages hold (Mirage's remote client and its thread)."""
        for stage in self.stages:
            close = getattr(stage, "close", None)
            if callable(close):
                try:
                    close()
                except Exception as e:  # noqa: BLE001 - one stage must not stop the others
                    log.warning("stage %s: close failed: %s", stage.name, e)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.stages)

    def check(self, candidate: Candidate) -> tuple[bool, tuple[StageVerdict, ...]]:
        """(vetoed, every consulted stage's verdict in order)."""
        return self.check_many([candidate])[0]

    def check_many(self, candidates: Sequence[Candidate]
                   ) -> list[tuple[bool, tuple[StageVerdict, ...]]]:
        """check() of each candidate, the candidates of one analysis step together: a stage
        with a `check_many(candidates, deadline)` (Mirage: one hot-store round trip and one
        judgement for all) is called once with those still not vetoed, the others once per
        candidate. The batch shares len(candidates) x budget; a stage whose answer comes
        after it abstains for every candidate of the call."""
        n = len(candidates)
        if not n:
            return []
        started = self.clock()
        deadline = started + self.budget * n
        out: list[list[StageVerdict]] = [[] for _ in range(n)]
        vetoed = [False] * n
        self.stats.checked += n
        for stage in self.stages:
            todo = [i for i in range(n) if not vetoed[i]]
            if not todo:
                break
            many = getattr(stage, "check_many", None)
            calls: list[list[int]] = [todo] if callable(many) else [[i] for i in todo]
            for rows in calls:
                t0 = self.clock()
                got_list = self._call(stage, [candidates[i] for i in rows], deadline,
                                      many if callable(many) else None)
                ms = (self.clock() - t0) * 1000.0 / len(rows)
                over = self.clock() > deadline
                self._drain(stage)
                for i, got in zip(rows, got_list, strict=True):
                    got = self._settle(stage.name, candidates[i], got, ms, over)
                    self.stats.count(stage.name, got.verdict)
                    out[i].append(got)
                    if got.verdict == "veto":
                        vetoed[i] = True
                        self.stats.vetoed += 1
        self.stats.seconds += self.clock() - started
        return [(vetoed[i], tuple(out[i])) for i in range(n)]

    def _drain(self, stage: Stage) -> None:
        """A stage's own counts since the last call (`drain_counts()`, e.g. Mirage's remote
        fetches and their errors) into its per-stage figures (self-metrics
        stage_<stage>_<what>)."""
        drain = getattr(stage, "drain_counts", None)
        if not callable(drain):
            return
        try:
            counts = dict(drain())
        except Exception:  # noqa: BLE001 - counting never fails a candidate
            return
        mine = self.stats.per_stage.setdefault(stage.name, {})
        for what, n in counts.items():
            if n:
                mine[what] = mine.get(what, 0) + int(n)

    def _call(self, stage: Stage, cands: list[Candidate], deadline: float,
              many: Callable[..., Any] | None) -> list[StageVerdict | BaseException]:
        """The stage's answers, or the exception it raised for each candidate."""
        try:
            if many is not None:
                got = list(many(cands, deadline))
                if len(got) != len(cands):
                    raise InvalidInput(f"answered {len(got)} verdicts for {len(cands)} "
                                       "candidates")
                return got
            return [stage.check(cands[0], deadline)]
        except Exception as e:  # noqa: BLE001 - a failing stage abstains (fail open)
            return [e] * len(cands)

    def _settle(self, name: str, candidate: Candidate, got: StageVerdict | BaseException,
                ms: float, over: bool) -> StageVerdict:
        """The verdict recorded: an overrun, an error or a garbage answer abstains."""
        if not isinstance(got, BaseException):
            if over:
                self.stats.overruns += 1
                self.stats.count(name, "overrun")
                return _abstain(name, f"abstained: over the {self.budget:g} s budget", ms)
            if isinstance(got, StageVerdict) and \
                    got.verdict in ("confirm", "veto", "abstain"):
                return StageVerdict(stage=name, verdict=got.verdict, reason=got.reason,
                                    figures=dict(got.figures), ms=round(ms, 3))
            got = InvalidInput(f"answered {getattr(got, 'verdict', got)!r}")
        self.stats.errors += 1
        self.stats.count(name, "error")
        key = (name, type(got).__name__)
        if key not in self._logged:  # once per stage and kind of error
            self._logged.add(key)
            log.error("stage %s failed on %s: %s: %s (it abstains; logged once)",
                      name, candidate.metric, type(got).__name__, got)
        return _abstain(name, f"abstained: the stage failed "
                        f"({type(got).__name__}: {str(got)[:200]})", ms)


# -- built-in stages -----------------------------------------------------------------------

@dataclass
class MarginStage:
    """Vetoes a candidate whose value lies less than `min_excess` (a fraction of the band's
    width, or of the band's edge when the band has no width) beyond the band the detector
    expected: an anomaly too small to wake anyone. Scoped by `namespaces` (patterns; empty:
    every metric). Off unless listed in analyzer.stages."""

    min_excess: float = 0.1
    namespaces: tuple[str, ...] = ()
    name: str = "margin"

    def __post_init__(self) -> None:
        if not self.min_excess >= 0:
            raise InvalidInput("margin.min_excess must not be negative")
        self._scope = PatternSet(self.namespaces) if self.namespaces else None

    def check(self, candidate: Candidate, deadline: float) -> StageVerdict:
        if self._scope is not None and not self._scope.any(candidate.metric):
            return StageVerdict(self.name, "abstain", "not in this stage's namespaces")
        lo, hi, v = candidate.band_low, candidate.band_high, candidate.value
        if not (math.isfinite(lo) and math.isfinite(hi)):
            return StageVerdict(self.name, "abstain", "the detector gave no expected range")
        beyond = max(lo - v, v - hi, 0.0)
        scale = hi - lo if hi > lo else max(abs(lo), abs(hi))
        if scale <= 0:
            return StageVerdict(self.name, "abstain", "the expected range is a single 0")
        excess = beyond / scale
        figures = {"excess": round(excess, 6), "min_excess": self.min_excess}
        if excess < self.min_excess:
            return StageVerdict(self.name, "veto",
                                f"value {v:.6g} is only {excess:.1%} of the expected range "
                                f"beyond [{lo:.6g}, {hi:.6g}] (less than {self.min_excess:.0%})",
                                figures)
        return StageVerdict(self.name, "confirm",
                            f"value {v:.6g} is {excess:.1%} of the expected range beyond "
                            f"[{lo:.6g}, {hi:.6g}]", figures)


StageFactory = Callable[[Mapping[str, Any], StageContext], Stage]


def _margin(options: Mapping[str, Any], context: StageContext) -> Stage:
    try:
        return MarginStage(min_excess=float(options.get("min_excess", 0.1)),
                           namespaces=tuple(options.get("namespaces", ())))
    except (TypeError, ValueError) as e:
        raise InvalidInput(f"margin stage options: {e}") from None


def _mirage(options: Mapping[str, Any], context: StageContext) -> Stage:
    from skyline.analysis.mirage import factory  # it imports this module

    return factory(options, context)


def _ionosphere(options: Mapping[str, Any], context: StageContext) -> Stage:
    from skyline.analysis.ionosphere import factory  # it imports this module

    return factory(options, context)


#: built-in stages by name
STAGES: dict[str, StageFactory] = {"margin": _margin, "mirage": _mirage,
                                   "ionosphere": _ionosphere}


def registry() -> dict[str, StageFactory]:
    found: dict[str, StageFactory] = {}
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in STAGES:
            raise UnknownAlgorithm(f"stage entry point {ep.name!r} clashes with a built-in "
                                   "stage")
        found[ep.name] = ep.load()
    return {**STAGES, **found}


def build(names: Sequence[str], options: Mapping[str, Mapping[str, Any]],
          known: Mapping[str, StageFactory] | None = None,
          context: StageContext | None = None) -> list[Stage]:
    """Stages by name, each made with its options table; UnknownAlgorithm for a name that is
    not registered, InvalidInput for a stage that refuses its options."""
    known = registry() if known is None else known
    if len(set(names)) != len(names):
        raise InvalidInput("a stage is listed twice")
    out = []
    for name in names:
        if name not in known:
            raise UnknownAlgorithm(f"unknown stage {name!r}; known: {', '.join(sorted(known))}")
        out.append(known[name](options.get(name, {}), context or StageContext()))
    return out
