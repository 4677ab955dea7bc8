"""The settings of an analysis (FULL_DURATION, CONSENSUS, [analyzer] ...) as the algorithms'
AnalysisParams: the one conversion, shared by the analyzer and crucible (the algorithms never
import settings)."""

from __future__ import annotations

from typing import Any

from skyline.algorithms import AnalysisParams
from skyline.core.errors import InvalidInput, SettingProblem, SettingsError
from skyline.settings import Settings


def analysis_params(s: Settings, **overrides: Any) -> AnalysisParams:
    a = s.analyzer
    kw: dict[str, Any] = dict(
        full_duration=float(s.FULL_DURATION), resolution=a.resolution,
        detect_counters=a.detect_counters, min_tolerable_length=s.MIN_TOLERABLE_LENGTH,
        stale_period=float(s.STALE_PERIOD), max_tolerable_boredom=s.MAX_TOLERABLE_BOREDOM,
        boredom_set_size=s.BOREDOM_SET_SIZE, incomplete_fraction=a.incomplete_fraction,
        algorithms=tuple(s.ALGORITHMS), consensus=s.CONSENSUS,
        algorithm_params={k: dict(v) for k, v in a.algorithm_params.items()},
        detector=a.detector, score_threshold=s.ANOMALY_SCORE_THRESHOLD,
        short_fraction=a.short_fraction,
    )
    kw.update(overrides)
    try:
        return AnalysisParams(**kw)
    except InvalidInput as e:
        raise SettingsError([SettingProblem("analyzer", "(several)", str(e))]) from None
