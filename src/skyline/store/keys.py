"""Every Redis key name Skyline uses, in one place.

One metric's keys share a Redis Cluster hash tag: the metric name sits in braces right after
a fixed prefix, so all of that metric's keys hash to the same slot (a name that itself holds a
closing brace still yields the same tag for all of its keys).
"""

from __future__ import annotations

SERIES_PREFIX = "metrics.{"
SERIES_SUFFIX = "}"

#: set of every metric name in the hot store (upstream's metrics.unique_metrics)
METRIC_INDEX = "skyline.unique_metrics"

#: Redis stream of AnomalyEvents (JSON in field "data")
ANOMALY_STREAM = "skyline.events.anomalies"

#: set of "component:instance" that have published self-metrics
TELEMETRY_INDEX = "skyline.telemetry.instances"


def series(metric: str) -> str:
    """The string holding a metric's packed points."""
    return f"{SERIES_PREFIX}{metric}{SERIES_SUFFIX}"


def metric_of_series(key: str) -> str:
    if not (key.startswith(SERIES_PREFIX) and key.endswith(SERIES_SUFFIX)):
        raise ValueError(f"not a series key: {key!r}")
    return key[len(SERIES_PREFIX) : -len(SERIES_SUFFIX)]


def heartbeat(component: str) -> str:
    return f"skyline.heartbeat.{component}"


def telemetry(component: str, instance: str) -> str:
    """Hash of one component instance's cumulative counters."""
    return f"skyline.telemetry.{component}.{instance}"


def telemetry_gauges(component: str, instance: str) -> str:
    return f"skyline.telemetry_gauges.{component}.{instance}"


def roomba_cursor() -> str:
    """Where the trimming pass stopped (SSCAN cursor over METRIC_INDEX)."""
    return "skyline.roomba.cursor"
