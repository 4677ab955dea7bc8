"""Crucible's analysis of one series, below the services so that both the `skyline crucible`
command and the web app's crucible page use it: parsing a CSV/JSON series, choosing the
algorithms, judging the series with every algorithm's explanation, and the replay."""

from skyline.runtime.crucible.examine import (
    Examination,
    Replay,
    ReplayEvent,
    examine,
    replay,
)
from skyline.runtime.crucible.judging import crucible_judge, select_algorithms
from skyline.runtime.crucible.parse import check_series, parse_series

__all__ = ["Examination", "Replay", "ReplayEvent", "check_series", "crucible_judge", "examine",
           "parse_series", "replay", "select_algorithms"]
