"""The analyzer's settings that are tables: [analyzer] and the entries of CUSTOM_ALGORITHMS.

The upstream names (ALGORITHMS, CONSENSUS, STALE_PERIOD, ...) are top-level fields of the
Settings model; `check_analyzer` validates them together. Names of algorithms are checked
against the algorithm registry by the analyzer itself (settings sit below the algorithms in
the layers and cannot see the registry).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from skyline.core.errors import PatternError
from skyline.core.patterns import validate as validate_pattern

if TYPE_CHECKING:
    from skyline.settings.model import Settings

# earthgecko's ALGORITHMS, in its order (most often triggered and cheapest first)
DEFAULT_ALGORITHMS = [
    "histogram_bins", "first_hour_average", "stddev_from_average", "grubbs", "ks_test",
    "mean_subtraction_cumulation", "median_absolute_deviation", "stddev_from_moving_average",
    "least_squares",
]
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
USE_WITH = ("analyzer", "crucible")


class _Table(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class AnalyzerSettings(_Table):
    """[analyzer]: how the analyzer shapes series and splits its work."""

    resolution: float | None = Field(
        60.0, gt=0, le=86400,
        description="Analysis resolution in seconds: a series with more than one point per "
        "step (1.5 or more on average) is averaged into steps of this size; sparser series "
        "keep their own points. Unset: every series at its own resolution.",
    )
    detector: Literal["score", "consensus", "learning"] = Field(
        "learning",
        description="How a metric is judged: learning (each point against what a per-metric "
        "memory learnt of the metric: its 30-day range, level and transitions, and the anomaly "
        "likelihood; until a metric has been learnt for a day, score judges it; "
        "docs/algorithms.md), score (range_excess's anomaly score on the FULL_DURATION "
        "window reaches ANOMALY_SCORE_THRESHOLD; ALGORITHMS and CONSENSUS are not used) or "
        "consensus (upstream's vote: at least CONSENSUS of ALGORITHMS say anomalous).",
    )
    short_fraction: float = Field(
        0.5, ge=0, le=1,
        description="A series too sparse for FULL_DURATION to ever hold MIN_TOLERABLE_LENGTH "
        "points (e.g. hourly) is TooShort only below this fraction of the points "
        "FULL_DURATION holds at its own step; 0: MIN_TOLERABLE_LENGTH applies to all.",
    )
    incomplete_fraction: float = Field(
        0.0, ge=0, le=1,
        description="A series spanning less than this fraction of FULL_DURATION is not "
        "analysed (upstream's documented but never built Incomplete); 0 turns it off.",
    )
    detect_counters: bool = Field(
        True,
        description="Analyse series detected as monotonic counters as their non-negative "
        "derivative (see MONOTONIC_METRIC_NAMESPACES to force it).",
    )
    chunk_size: int = Field(
        2000, ge=100, le=1_000_000,
        description="Metrics a worker fetches and analyses at a time (the next chunk is "
        "fetched while this one is analysed); the buffers hold two chunks of points.",
    )
    algorithm_params: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Keyword overrides per algorithm of ALGORITHMS, e.g. "
        "{ grubbs = { two_sided = false } } (docs/algorithms.md lists them).",
    )
    recovery_period: float = Field(
        600.0, ge=0, le=7 * 86400,
        description="Seconds a metric must stay back inside the range it kept before an "
        "incident (and not be judged anomalous) before the incident closes as recovered.",
    )
    new_level_after: float = Field(
        14400.0, ge=0, le=30 * 86400,
        description="Seconds after which an incident whose metric never came back closes as "
        "a new level (the metric changed for good) instead of staying open; 0: never.",
    )
    catch_up: int = Field(
        60, ge=1, le=100_000,
        description="New points per metric the score and consensus detectors judge in one "
        "run (after a pause, the newest); the consensus ensemble and custom algorithms judge "
        "only the newest.",
    )
    stages: list[str] = Field(
        default_factory=list,
        description="Stages that confirm or veto each anomaly candidate before it alerts, in "
        "order (docs/analyzer.md, \"Stages\"): margin, mirage, ionosphere, and those "
        "installed through the skyline.stages entry point.",
    )
    stage_budget: float = Field(
        1.0, gt=0, le=600,
        description="Seconds all stages together may spend on one candidate; a stage that "
        "errs or answers later abstains (the candidate is not vetoed by it).",
    )
    stage_options: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Options per stage, e.g. { margin = { min_excess = 0.1 } }.",
    )


class CustomAlgorithmSettings(_Table):
    """One CUSTOM_ALGORITHMS entry, with upstream's field names."""

    namespaces: list[str] = Field(
        description="Patterns (glob or re:regex) of the metrics it analyses; upstream entries "
        "convert with skyline.core.patterns.from_upstream."
    )
    algorithm_source: str = Field(
        "",
        description="Path of an upstream-style .py file defining a function named as the "
        "entry; empty: the skyline.algorithms entry point of that name (native form).",
    )
    algorithm_parameters: dict[str, Any] = Field(
        default_factory=dict, description="Passed to the function unchanged."
    )
    consensus: int = Field(
        0, ge=0,
        description="1: its True alone makes the metric anomalous; any other value: its True "
        "is one more vote towards CONSENSUS.",
    )
    max_execution_time: float = Field(
        1.0, gt=0, le=3600,
        description="Seconds one call may take; beyond it the process running it is killed, "
        "the metric marked errored, and the algorithm skipped for the rest of the run.",
    )
    run_3sigma_algorithms: bool = Field(
        True, description="False: the ALGORITHMS are not run for metrics in its namespaces."
    )
    run_before_3sigma: bool = Field(
        True, description="False (with run_only_if_consensus): run after the ALGORITHMS."
    )
    run_only_if_consensus: bool = Field(
        False,
        description="Run only on metrics the ALGORITHMS found anomalous, as a second "
        "opinion: its False clears the anomaly (with run_before_3sigma false).",
    )
    use_with: list[str] = Field(
        default_factory=lambda: list(USE_WITH),
        description="Where it runs: analyzer, crucible (other upstream apps are ignored).",
    )
    # accepted so upstream entries load unchanged; upstream did not use them either, or they
    # belong to apps this project does not have
    algorithms_allowed_in_consensus: list[str] = Field(default_factory=list)
    debug_logging: bool = False
    trigger_history_override: int = 0
    handler: str = ""
    return_results: bool = False

    @field_validator("namespaces")
    @classmethod
    def _namespaces(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("namespaces must name at least one pattern")
        for p in v:
            try:
                validate_pattern(p)
            except PatternError as e:
                raise ValueError(str(e)) from None
        return v

    @field_validator("algorithm_source")
    @classmethod
    def _source(cls, v: str) -> str:
        if v and not (v.endswith(".py") and Path(v).expanduser().is_file()):
            raise ValueError(f"algorithm_source {v!r} is not a .py file that exists")
        return v

    def runs_in(self, app: str) -> bool:
        return app in self.use_with


def check_analyzer(s: Settings) -> None:
    """Checks across the analyzer settings; ValueError naming the setting first."""
    algorithms = s.ALGORITHMS
    twice = sorted({a for a in algorithms if algorithms.count(a) > 1})
    if twice:
        raise ValueError(f"ALGORITHMS lists {', '.join(twice)} more than once")
    if s.CONSENSUS > len(algorithms):
        raise ValueError(f"CONSENSUS {s.CONSENSUS} is more than the {len(algorithms)} "
                         "ALGORITHMS: no metric could ever be anomalous")
    for name, entry in s.CUSTOM_ALGORITHMS.items():
        if not _IDENTIFIER.match(name):
            raise ValueError(f"CUSTOM_ALGORITHMS key {name!r} must be the function's name")
        if name in algorithms:
            raise ValueError(f"CUSTOM_ALGORITHMS {name!r} is also in ALGORITHMS; list it in one")
        unknown = sorted(set(entry.use_with) - set(USE_WITH) - _UPSTREAM_APPS)
        if unknown:
            raise ValueError(f"CUSTOM_ALGORITHMS {name!r} use_with names unknown apps: "
                             f"{', '.join(unknown)}")
    a = s.analyzer
    if len(set(a.stages)) != len(a.stages):
        raise ValueError("analyzer.stages lists a stage twice")
    unknown = sorted(set(a.stage_options) - set(a.stages))
    if unknown:
        raise ValueError(f"analyzer.stage_options names stages not in analyzer.stages: "
                         f"{', '.join(unknown)}")
    unused = sorted(set(s.analyzer.algorithm_params) - set(algorithms))
    if unused:
        raise ValueError(f"analyzer.algorithm_params names algorithms not in ALGORITHMS: "
                         f"{', '.join(unused)}")
    for patterns, name in ((s.MONOTONIC_METRIC_NAMESPACES, "MONOTONIC_METRIC_NAMESPACES"),
                           (s.NON_DERIVATIVE_MONOTONIC_METRICS,
                            "NON_DERIVATIVE_MONOTONIC_METRICS")):
        for p in patterns:
            try:
                validate_pattern(p)
            except PatternError as e:
                raise ValueError(f"{name} {e}") from None


_UPSTREAM_APPS = {"analyzer_batch", "mirage", "boundary", "ionosphere", "snab", "luminosity",
                  "vortex", "webapp", "flux", "panorama"}
