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


@dataclass(frozen=True)
class StageContext:
    """What a stage may use besides the candidate, given to its factory: the Settings in
    force, a Redis client (None in replay and crucible on a file), a SQL engine (None where
    there is no database). Stages must work, or abstain, with any of them missing."""

    settings: Any = None
    client: Any = None
    engine: Any = None


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

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.stages)

    def check(self, candidate: Candidate) -> tuple[bool, tuple[StageVerdict, ...]]:
        """(vetoed, every consulted stage's verdict in order)."""
        started = self.clock()
        deadline = started + self.budget
        out: list[StageVerdict] = []
        vetoed = False
        self.stats.checked += 1
        for stage in self.stages:
            t0 = self.clock()
            try:
                got = stage.check(candidate, deadline)
                ms = (self.clock() - t0) * 1000.0
                if self.clock() > deadline:
                    self.stats.overruns += 1
                    self.stats.count(stage.name, "overrun")
                    got = _abstain(stage.name, f"abstained: over the {self.budget:g} s budget",
                                   ms)
                elif got.verdict not in ("confirm", "veto", "abstain"):
                    raise InvalidInput(f"answered {got.verdict!r}")
                else:
                    got = StageVerdict(stage=stage.name, verdict=got.verdict, reason=got.reason,
                                       figures=dict(got.figures), ms=round(ms, 3))
            except Exception as e:  # noqa: BLE001 - a failing stage abstains (fail open)
                ms = (self.clock() - t0) * 1000.0
                self.stats.errors += 1
                self.stats.count(stage.name, "error")
                key = (stage.name, type(e).__name__)
                if key not in self._logged:  # once per stage and kind of error
                    self._logged.add(key)
                    log.error("stage %s failed on %s: %s: %s (it abstains; logged once)",
                              stage.name, candidate.metric, type(e).__name__, e)
                got = _abstain(stage.name, f"abstained: the stage failed "
                               f"({type(e).__name__}: {str(e)[:200]})", ms)
            self.stats.count(stage.name, got.verdict)
            out.append(got)
            if got.verdict == "veto":
                vetoed = True
                self.stats.vetoed += 1
                break
        self.stats.seconds += self.clock() - started
        return vetoed, tuple(out)


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


#: built-in stages by name; Mirage and Ionosphere register here when they land
STAGES: dict[str, StageFactory] = {"margin": _margin}


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
