"""Crucible: offline analysis of one series (a file or a stored metric) with every
algorithm's explanation, a replay of where the analyzer would have alerted, and a plot."""

from skyline.services.crucible.examine import (
    Examination,
    Replay,
    ReplayEvent,
    examine,
    replay,
)
from skyline.services.crucible.parse import check_series, parse_series

__all__ = ["Examination", "Replay", "ReplayEvent", "check_series", "examine", "parse_series",
           "replay"]
