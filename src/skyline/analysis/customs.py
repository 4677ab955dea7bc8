"""Custom algorithms as configured (CUSTOM_ALGORITHMS), and how one is loaded.

A spec is plain data, so it can be sent to the process that runs the algorithm (see
isolation.py): only that process ever imports the user's code, so an import that hangs or
crashes cannot take the analyzer with it.

Two forms, both wrapped by the pure adapters of skyline.algorithms.custom:
- `algorithm_source` set: an upstream (earthgecko) file defining a function named as the
  entry, `fn(current_skyline_app, parent_pid, timeseries, algorithm_parameters)`;
  upstream injects `metric` and `base_name` into the parameters, and so do we.
- no source: the `skyline.algorithms` entry point of that name: a native per-series function
  `f(timestamps, values, **params)`, or an algorithm class or instance.
"""

from __future__ import annotations

import importlib.util
import inspect
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

from skyline.algorithms import (
    ENTRY_POINT_GROUP,
    OPTIONAL_BUILTINS,
    Algorithm,
    SeriesAlgorithm,
    UpstreamAlgorithm,
)
from skyline.core.errors import InvalidInput, UnknownAlgorithm
from skyline.core.patterns import PatternSet
from skyline.settings import Settings


@dataclass(frozen=True)
class CustomSpec:
    name: str
    namespaces: tuple[str, ...]
    source: str = ""  # path of an upstream-style file; "" = entry point
    params: Mapping[str, Any] = field(default_factory=dict)
    alone: bool = False  # upstream consensus 1: its True alone makes the metric anomalous
    max_time: float = 1.0  # seconds per call
    run_3sigma: bool = True  # False: the built-in ensemble is skipped in its namespaces
    veto: bool = False  # runs after the ensemble, only on anomalies; its False clears them

    def matcher(self) -> PatternSet:
        return PatternSet(self.namespaces)


def specs_from_settings(settings: Settings, app: str) -> tuple[CustomSpec, ...]:
    out = []
    for name, c in settings.CUSTOM_ALGORITHMS.items():
        if not c.runs_in(app):
            continue
        out.append(CustomSpec(
            name=name, namespaces=tuple(c.namespaces), source=c.algorithm_source,
            params=dict(c.algorithm_parameters), alone=c.consensus == 1,
            max_time=c.max_execution_time, run_3sigma=c.run_3sigma_algorithms,
            veto=(not c.run_before_3sigma) and c.run_only_if_consensus,
        ))
    return tuple(out)


def check_entry_points(specs: tuple[CustomSpec, ...],
                       names: Mapping[str, Any] | None = None) -> None:
    """UnknownAlgorithm for a spec without source whose entry point is not installed. Only
    the names are read; nothing is imported."""
    if names is None:
        names = {ep.name: ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}
    for spec in specs:
        # the optional built-ins (isolation_forest, mstl, ...) are scoped the same way
        if not spec.source and spec.name not in names and spec.name not in OPTIONAL_BUILTINS:
            raise UnknownAlgorithm(
                f"custom algorithm {spec.name!r} has no algorithm_source and no "
                f"{ENTRY_POINT_GROUP} entry point of that name is installed")


class _Recorder:
    """Wraps the user's function to keep the last exception's text: the adapters turn an
    exception into an abstention, and the message is still wanted for the log."""

    def __init__(self, fn: Callable[..., Any]):
        self.fn = fn
        self.error = ""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return self.fn(*args, **kwargs)
        except Exception as e:
            self.error = f"{type(e).__name__}: {e}"
            raise


@dataclass
class Loaded:
    spec: CustomSpec
    algorithm: Algorithm
    recorder: _Recorder | None = None

    def for_metric(self, metric: str) -> Algorithm:
        """The algorithm as called for one metric (upstream ones get metric and base_name)."""
        alg = self.algorithm
        if isinstance(alg, UpstreamAlgorithm):
            params = {**alg.params, "metric": metric, "base_name": metric}
            return UpstreamAlgorithm(name=alg.name, fn=alg.fn, params=params,
                                     parent_pid=alg.parent_pid)
        return alg


def load(spec: CustomSpec) -> Loaded:
    """Import the algorithm. Runs user code: call it only where a hang or crash is contained."""
    if spec.source:
        path = os.path.expanduser(spec.source)
        mod_spec = importlib.util.spec_from_file_location(f"skyline_custom_{spec.name}", path)
        if mod_spec is None or mod_spec.loader is None:
            raise InvalidInput(f"cannot load {path}")
        module = importlib.util.module_from_spec(mod_spec)
        mod_spec.loader.exec_module(module)
        fn = getattr(module, spec.name, None)
        if not callable(fn):
            raise InvalidInput(f"{path} defines no function named {spec.name}")
        rec = _Recorder(fn)
        return Loaded(spec, UpstreamAlgorithm(name=spec.name, fn=rec, params=dict(spec.params),
                                              parent_pid=os.getppid()), rec)
    if spec.name in OPTIONAL_BUILTINS:
        return Loaded(spec, OPTIONAL_BUILTINS[spec.name](**dict(spec.params)))
    eps = [ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP) if ep.name == spec.name]
    if not eps:
        raise UnknownAlgorithm(f"no {ENTRY_POINT_GROUP} entry point named {spec.name!r}")
    target: Any = eps[0].load()
    if inspect.isclass(target):
        made = target(**dict(spec.params))
        if not isinstance(made, Algorithm):
            raise InvalidInput(f"entry point {spec.name} made {made!r}, not an algorithm")
        return Loaded(spec, made)
    if isinstance(target, Algorithm):
        return Loaded(spec, target)
    if callable(target):
        rec = _Recorder(target)
        return Loaded(spec, SeriesAlgorithm(name=spec.name, fn=rec, params=dict(spec.params)),
                      rec)
    raise InvalidInput(f"entry point {spec.name} is neither an algorithm nor a function")
