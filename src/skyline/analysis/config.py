"""The analysis settings as plain, picklable data (for the analyzer's worker processes, crucible
and replay), the checks that need the algorithm and stage registries (which the settings layer
cannot see), and the one place a Pipeline is built from them."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from skyline.algorithms import AnalysisParams, discover, make_ensemble
from skyline.analysis.customs import CustomSpec, check_entry_points, specs_from_settings
from skyline.analysis.incidents import IncidentRules
from skyline.analysis.isolation import Isolation
from skyline.analysis.params import analysis_params
from skyline.analysis.pipeline import CATCH_UP, Pipeline
from skyline.analysis.stages import StageContext, StageFactory, Stages
from skyline.analysis.stages import build as build_stages
from skyline.core.errors import (
    DuplicateAlgorithm,
    InvalidInput,
    SettingProblem,
    SettingsError,
    UnknownAlgorithm,
)
from skyline.core.patterns import PatternSet
from skyline.settings import Settings

APP = "analyzer"


@dataclass(frozen=True)
class AnalyzerConfig:
    params: AnalysisParams
    customs: tuple[CustomSpec, ...] = ()
    rules: IncidentRules = IncidentRules()
    stages: tuple[str, ...] = ()
    stage_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    stage_budget: float = 1.0
    catch_up: int = CATCH_UP
    chunk_size: int = 2000
    read_batch: int = 1000
    skip: tuple[str, ...] = ()
    do_not_skip: tuple[str, ...] = ()
    monotonic: tuple[str, ...] = ()
    non_derivative: tuple[str, ...] = ()
    stage_configs: Mapping[str, Any] = field(default_factory=dict)
    """Stage configurations resolved from the Settings (StageContext.configs)."""

    @property
    def expiration(self) -> float:
        return self.rules.expiration

    def pipeline(self, isolation: Isolation | None = None,
                 registry: Mapping[str, Any] | None = None,
                 stage_registry: Mapping[str, StageFactory] | None = None,
                 context: StageContext | None = None) -> Pipeline:
        """The pipeline these settings describe. Custom algorithms need `isolation` (the
        caller owns and closes it); stages get `context` (the analyzer's workers give them
        their Redis client and SQL engine)."""
        context = context or StageContext()
        if self.stage_configs:
            context = dataclasses.replace(context,
                                          configs={**self.stage_configs, **context.configs})
        stages = Stages(build_stages(self.stages, self.stage_options, stage_registry, context),
                        budget=self.stage_budget)
        return Pipeline(self.params, self.rules, customs=self.customs, isolation=isolation,
                        stages=stages, registry=registry, catch_up=self.catch_up)

    def skip_filter(self, names: Sequence[str]) -> list[str]:
        if not self.skip:
            return list(names)
        # one pass per pattern over all the names (PatternSet.filter), not one per name
        skip = set(PatternSet(self.skip).filter(names))
        if skip and self.do_not_skip:
            skip -= set(PatternSet(self.do_not_skip).filter(skip))
        return [n for n in names if n not in skip] if skip else list(names)

    def monotonic_flags(self, names: Sequence[str]) -> list[bool | None] | None:
        """MONOTONIC_METRIC_NAMESPACES -> True, NON_DERIVATIVE_MONOTONIC_METRICS -> False (it
        wins when both match: a person said "not this one"), else None (detected)."""
        if not self.monotonic and not self.non_derivative:
            return None
        no = set(PatternSet(self.non_derivative).filter(names)) if self.non_derivative else set()
        yes = set(PatternSet(self.monotonic).filter(names)) if self.monotonic else set()
        return [False if n in no else True if n in yes else None for n in names]


def check_algorithms(params: AnalysisParams, customs: tuple[CustomSpec, ...],
                     registry: Mapping[str, Any] | None = None) -> None:
    """SettingsError naming ALGORITHMS (or CUSTOM_ALGORITHMS) when the registry refuses them."""
    registry = discover() if registry is None else registry
    try:
        make_ensemble(params, registry)
        # ALGORITHMS are checked even while the score detector does not use them, so that
        # switching analyzer.detector to consensus cannot meet a broken list
        make_ensemble(dataclasses.replace(params, detector="consensus"), registry)
    except (UnknownAlgorithm, DuplicateAlgorithm) as e:
        raise SettingsError([SettingProblem("ALGORITHMS", list(params.algorithms), str(e))]) \
            from None
    except InvalidInput as e:
        raise SettingsError([SettingProblem("analyzer.algorithm_params",
                                            dict(params.algorithm_params), str(e))]) from None
    try:
        check_entry_points(customs, registry)
    except UnknownAlgorithm as e:
        raise SettingsError([SettingProblem("CUSTOM_ALGORITHMS", "(see below)", str(e))]) \
            from None


def from_settings(s: Settings, registry: Mapping[str, Any] | None = None) -> AnalyzerConfig:
    params = analysis_params(s)
    customs = specs_from_settings(s, APP)
    check_algorithms(params, customs, registry)
    a = s.analyzer
    stage_options = {k: dict(v) for k, v in a.stage_options.items()}
    try:
        build_stages(a.stages, stage_options)
    except (UnknownAlgorithm, InvalidInput) as e:
        raise SettingsError([SettingProblem("analyzer.stages", list(a.stages), str(e))]) \
            from None
    return AnalyzerConfig(
        params=params, customs=customs,
        rules=IncidentRules(expiration=float(s.EXPIRATION_TIME),
                            recovery=a.recovery_period, new_level_after=a.new_level_after),
        stages=tuple(a.stages), stage_options=stage_options, stage_budget=a.stage_budget,
        catch_up=a.catch_up,
        chunk_size=s.analyzer.chunk_size, read_batch=s.redis.read_chunk_size,
        skip=tuple(s.SKIP_LIST), do_not_skip=tuple(s.DO_NOT_SKIP_LIST),
        monotonic=tuple(s.MONOTONIC_METRIC_NAMESPACES),
        non_derivative=tuple(s.NON_DERIVATIVE_MONOTONIC_METRICS),
        stage_configs=stage_configs(s, params),
    )


def stage_configs(s: Settings, params: AnalysisParams) -> dict[str, Any]:
    """What the built-in stages listed in analyzer.stages take from the Settings."""
    out: dict[str, Any] = {}
    if "mirage" in s.analyzer.stages:
        from skyline.analysis.mirage import MirageConfig

        out["mirage"] = MirageConfig.from_settings(s, params)
    if "ionosphere" in s.analyzer.stages:
        from skyline.analysis.ionosphere import IonosphereConfig

        out["ionosphere"] = IonosphereConfig.from_settings(s)
    return out


def triggers(s: Settings) -> list[str]:
    """What can trigger an anomaly with these settings (the anomalies page filters on it):
    the detector's algorithms and the custom algorithms the analyzer runs."""
    detector = s.analyzer.detector
    # the learning detector leaves a metric's first day to range_excess
    names = ["range_excess"] if detector == "score" else \
        list(s.ALGORITHMS) if detector == "consensus" else [detector, "range_excess"]
    names += [c.name for c in specs_from_settings(s, APP)]
    return names
