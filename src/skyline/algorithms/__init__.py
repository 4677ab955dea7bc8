"""The algorithm core: upstream Skyline's nine-algorithm 3-sigma ensemble, vectorised over
many metrics at once. Pure: no settings, no I/O, no wall clock (time comes in as data).

    from skyline.algorithms import AnalysisParams, analyse
    result = analyse([(timestamps, values), ...], AnalysisParams(consensus=6, detector="consensus"), now=now)
    result.status[i], result.anomalous[i], result.score[i], result.explain(i)

Lower level: prepare() -> batches, Ensemble(build(names)).run(batch), each algorithm's
run(batch) -> Opinions. See docs/algorithms.md.
"""

from skyline.algorithms.analysis import Analysis, analyse, assemble, make_ensemble
from skyline.algorithms.base import (
    ABSTAIN,
    ANOMALOUS,
    NORMAL,
    NOT_RUN,
    Algorithm,
    BaseAlgorithm,
    Opinions,
)
from skyline.algorithms.batch import Batch
from skyline.algorithms.counters import is_counter, non_negative_derivative, strictly_increasing
from skyline.algorithms.custom import SeriesAlgorithm, UpstreamAlgorithm
from skyline.algorithms.ensemble import Ensemble, EnsembleResult
from skyline.algorithms.params import AnalysisParams, Status
from skyline.algorithms.prepare import Prepared, prepare, prepare_flat
from skyline.algorithms.registry import (
    BUILTINS,
    DEFAULT_ALGORITHMS,
    ENTRY_POINT_GROUP,
    OPTIONAL_BUILTINS,
    build,
    discover,
)

__all__ = [
    "ABSTAIN", "ANOMALOUS", "BUILTINS", "DEFAULT_ALGORITHMS", "ENTRY_POINT_GROUP", "NORMAL",
    "NOT_RUN", "OPTIONAL_BUILTINS", "Algorithm", "Analysis", "AnalysisParams", "BaseAlgorithm",
    "Batch", "Ensemble", "EnsembleResult", "Opinions", "Prepared", "SeriesAlgorithm", "Status",
    "UpstreamAlgorithm", "analyse", "assemble", "build", "discover", "is_counter", "make_ensemble",
    "non_negative_derivative", "prepare", "prepare_flat", "strictly_increasing",
]
