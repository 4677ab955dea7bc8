"""Crucible: offline analysis of one series (a file or a stored metric) with every
algorithm's explanation, a replay of where the analyzer would have alerted, and a plot.

The analysis itself lives in skyline.runtime.crucible, where the web app's crucible page
reaches it too (services do not import each other)."""

from skyline.runtime.crucible import (
    Examination,
    Replay,
    ReplayEvent,
    check_series,
    crucible_judge,
    examine,
    parse_series,
    replay,
    select_algorithms,
)

__all__ = ["Examination", "Replay", "ReplayEvent", "check_series", "crucible_judge", "examine",
           "parse_series", "replay", "select_algorithms"]
