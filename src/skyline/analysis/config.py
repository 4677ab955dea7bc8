"""The analyzer's settings as plain, picklable data for its worker processes, and the checks
that need the algorithm registry (which the settings layer cannot see)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from skyline.algorithms import AnalysisParams, discover, make_ensemble
from skyline.analysis.customs import CustomSpec, check_entry_points, specs_from_settings
from skyline.analysis.params import analysis_params
from skyline.core.errors import (
    DuplicateAlgorithm,
    InvalidInput,
    SettingProblem,
    SettingsError,
    UnknownAlgorithm,
)
from skyline.core.patterns import PatternSet, skipped
from skyline.settings import Settings

APP = "analyzer"


@dataclass(frozen=True)
class AnalyzerConfig:
    params: AnalysisParams
    customs: tuple[CustomSpec, ...] = ()
    expiration: float = 3600.0
    chunk_size: int = 2000
    read_batch: int = 1000
    skip: tuple[str, ...] = ()
    do_not_skip: tuple[str, ...] = ()
    monotonic: tuple[str, ...] = ()
    non_derivative: tuple[str, ...] = ()

    def skip_filter(self, names: Sequence[str]) -> list[str]:
        if not self.skip:
            return list(names)
        skip, keep = PatternSet(self.skip), PatternSet(self.do_not_skip)
        return [n for n in names if not skipped(n, skip, keep)]

    def monotonic_flags(self, names: Sequence[str]) -> list[bool | None] | None:
        """MONOTONIC_METRIC_NAMESPACES -> True, NON_DERIVATIVE_MONOTONIC_METRICS -> False (it
        wins when both match: a person said "not this one"), else None (detected)."""
        if not self.monotonic and not self.non_derivative:
            return None
        yes, no = PatternSet(self.monotonic), PatternSet(self.non_derivative)
        return [False if no.any(n) else True if yes.any(n) else None for n in names]


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
    return AnalyzerConfig(
        params=params, customs=customs, expiration=float(s.EXPIRATION_TIME),
        chunk_size=s.analyzer.chunk_size, read_batch=s.redis.read_chunk_size,
        skip=tuple(s.SKIP_LIST), do_not_skip=tuple(s.DO_NOT_SKIP_LIST),
        monotonic=tuple(s.MONOTONIC_METRIC_NAMESPACES),
        non_derivative=tuple(s.NON_DERIVATIVE_MONOTONIC_METRICS),
    )
