"""Which algorithms crucible runs, and the Judge that runs them: every algorithm, no early
stop, so each one's opinion is explained."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from skyline.core.errors import InvalidInput
from skyline.runtime.customalgos import CustomSpec
from skyline.runtime.judge import Judge
from skyline.settings import Settings

APP = "crucible"


def select_algorithms(settings: Settings, wanted: str | None
                      ) -> tuple[list[str], tuple[CustomSpec, ...]]:
    """The built-in/plug-in algorithms and the custom ones to run: `wanted` is a
    comma-separated list, None for ALGORITHMS and the CUSTOM_ALGORITHMS used with crucible."""
    from skyline.algorithms import OPTIONAL_BUILTINS, discover
    from skyline.runtime.customalgos import specs_from_settings

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
    """A Judge for crucible; its custom-algorithm sandbox (if any) is closed on exit."""
    from skyline.runtime.analysis_settings import analysis_params
    from skyline.runtime.sandbox import Sandbox

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
    sandbox = Sandbox(customs) if customs else None
    try:
        yield Judge(params, customs, sandbox=sandbox, run_builtins=bool(builtins),
                    consensus=consensus)
    finally:
        if sandbox is not None:
            sandbox.close()
