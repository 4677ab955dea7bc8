"""Which algorithms exist: the nine built-ins, listed here and nowhere else, the optional
built-ins (shipped, selectable by name, never in the default ensemble), plus plug-ins from the
`skyline.algorithms` entry point group. A name claimed twice is refused.

A plug-in entry point may name an Algorithm instance, a class whose no-argument (or keyword)
construction gives one, or a plain per-series function in the native form, which is wrapped
in SeriesAlgorithm.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping, Sequence
from importlib import metadata
from typing import Any, Protocol, cast

from skyline.algorithms.base import Algorithm
from skyline.algorithms.custom import SeriesAlgorithm
from skyline.algorithms.extra.abs_stddev_from_median import AbsStddevFromMedian
from skyline.algorithms.extra.isolation_forest import IsolationForest
from skyline.algorithms.extra.mstl import Mstl
from skyline.algorithms.extra.spectral_residual import SpectralResidual
from skyline.algorithms.first_hour_average import FirstHourAverage
from skyline.algorithms.grubbs import Grubbs
from skyline.algorithms.histogram_bins import HistogramBins
from skyline.algorithms.ks_test import KsTest
from skyline.algorithms.least_squares import LeastSquares
from skyline.algorithms.mean_subtraction_cumulation import MeanSubtractionCumulation
from skyline.algorithms.median_absolute_deviation import MedianAbsoluteDeviation
from skyline.algorithms.range_excess import RangeExcess
from skyline.algorithms.stddev_from_average import StddevFromAverage
from skyline.algorithms.stddev_from_moving_average import StddevFromMovingAverage
from skyline.core.errors import DuplicateAlgorithm, InvalidInput, UnknownAlgorithm

ENTRY_POINT_GROUP = "skyline.algorithms"

Factory = Callable[..., Algorithm]

BUILTINS: Mapping[str, Factory] = {
    "histogram_bins": HistogramBins,
    "first_hour_average": FirstHourAverage,
    "stddev_from_average": StddevFromAverage,
    "grubbs": Grubbs,
    "ks_test": KsTest,
    "mean_subtraction_cumulation": MeanSubtractionCumulation,
    "median_absolute_deviation": MedianAbsoluteDeviation,
    "stddev_from_moving_average": StddevFromMovingAverage,
    "least_squares": LeastSquares,
}

# earthgecko's default ALGORITHMS order (most often triggered and cheapest first)
DEFAULT_ALGORITHMS: tuple[str, ...] = tuple(BUILTINS)

# Built-in but opt-in: a caller lists them by name (ALGORITHMS, a namespace's own list). Kept out
# of BUILTINS so the default ensemble, its CONSENSUS and discover()'s nine stay upstream's.
OPTIONAL_BUILTINS: Mapping[str, Factory] = {
    "abs_stddev_from_median": AbsStddevFromMedian,
    "spectral_residual": SpectralResidual,
    "isolation_forest": IsolationForest,
    "mstl": Mstl,
    "range_excess": RangeExcess,  # the "score" detector's algorithm; selectable as a voter too
}


class EntryPointLike(Protocol):
    name: str

    def load(self) -> Any: ...


def _factory(name: str, target: Any) -> Factory:
    if inspect.isclass(target):
        return cast(Factory, target)
    if isinstance(target, Algorithm):
        def same(**params: Any) -> Algorithm:
            if params:
                raise InvalidInput(f"algorithm {name} is an instance and takes no parameters")
            return target
        return same
    if callable(target):
        def wrap(**params: Any) -> Algorithm:
            return SeriesAlgorithm(name=name, fn=target, params=params)
        return wrap
    raise InvalidInput(f"entry point {name} is neither an algorithm nor a function: {target!r}")


def discover(entry_points: Iterable[EntryPointLike] | None = None) -> dict[str, Factory]:
    """Built-ins plus plug-ins; DuplicateAlgorithm when two claim one name."""
    found: dict[str, Factory] = dict(BUILTINS)
    eps = metadata.entry_points(group=ENTRY_POINT_GROUP) if entry_points is None else entry_points
    for ep in eps:
        if ep.name in found or ep.name in OPTIONAL_BUILTINS:
            raise DuplicateAlgorithm(f"algorithm {ep.name!r} is defined twice (a built-in or "
                                     f"another {ENTRY_POINT_GROUP} entry point already has it)")
        found[ep.name] = _factory(ep.name, ep.load())
    return found


def build(names: Sequence[str], *, registry: Mapping[str, Factory] | None = None,
          params: Mapping[str, Mapping[str, Any]] | None = None) -> tuple[Algorithm, ...]:
    """Instances for the names, in the given order (the caller's ALGORITHMS list). params holds
    per-algorithm keyword overrides, e.g. {"grubbs": {"two_sided": False}}. Optional built-ins
    resolve from any registry that does not define the name itself."""
    registry = BUILTINS if registry is None else registry
    params = params or {}
    seen: set[str] = set()
    out = []
    for name in names:
        if name in seen:
            raise DuplicateAlgorithm(f"algorithm {name!r} is listed twice")
        seen.add(name)
        factory = registry.get(name) or OPTIONAL_BUILTINS.get(name)
        if factory is None:
            known = ", ".join(sorted({*registry, *OPTIONAL_BUILTINS}))
            raise UnknownAlgorithm(f"unknown algorithm {name!r}; known: {known}")
        try:
            alg = factory(**dict(params.get(name, {})))
        except TypeError as e:
            raise InvalidInput(f"parameters for algorithm {name}: {e}") from None
        if alg.name != name:
            raise InvalidInput(f"algorithm registered as {name!r} calls itself {alg.name!r}")
        out.append(alg)
    unused = set(params) - seen
    if unused:
        raise InvalidInput(f"parameters given for algorithms not listed: {', '.join(sorted(unused))}")
    return tuple(out)
