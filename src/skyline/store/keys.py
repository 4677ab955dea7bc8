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

#: hash metric -> JSON of its open incident ({"since", "last_event", "events", "band_low",
#: "band_high", "score", "source"}): an index the analyzer keeps beside the analysis states
#: (which hold the truth), so a page can list what is broken now without reading every state
OPEN_INCIDENTS = "skyline.incidents.open"

#: the hash of open incidents that releases before 0.2 kept (metric -> JSON); read once to
#: carry open incidents into the analysis states, then deleted
LEGACY_ANALYZER_INCIDENTS = "skyline.analyzer.incidents"


def series(metric: str) -> str:
    """The string holding a metric's packed points."""
    return f"{SERIES_PREFIX}{metric}{SERIES_SUFFIX}"


def analysis_state(metric: str) -> str:
    """A metric's analysis state record (skyline.analysis.state): cursor, open incident,
    the detector's memory of the metric."""
    return f"skyline.analysis.{{{metric}}}"


def scores(metric: str) -> str:
    """The string holding a metric's anomaly-score series (written by the analyzer), packed
    as the metric's own series is, with the same hash tag."""
    return f"skyline.scores.{{{metric}}}"


def metric_keys(metric: str) -> tuple[str, ...]:
    """Every key that belongs to one metric (deleted with it)."""
    return (series(metric), analysis_state(metric), scores(metric))


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


def panorama_last(source: str, metric: str) -> str:
    """Panorama's sampling marker (upstream panorama.last_check.<app>.<metric>): holds the id
    of the event stored for this metric and source, for PANORAMA_EXPIRY_TIME seconds."""
    return f"skyline.panorama.last.{source}.{{{metric}}}"


def alert_last(channel: str, metric: str) -> str:
    """Alert de-duplication marker (upstream last_alert.<alerter>.<metric>): holds the id of
    the event alerted on this channel, for the matching rule's expiration."""
    return f"skyline.alerts.last.{channel}.{{{metric}}}"


def alert_open(channel: str, metric: str) -> str:
    """Set while a channel that resolves (PagerDuty, Alertmanager, webhook) has an open
    alert for the metric: a recovery is sent only then."""
    return f"skyline.alerts.open.{channel}.{{{metric}}}"


def alert_rate(channel: str, window: int) -> str:
    """Counter of alerts a channel sent in one rate-limit window."""
    return f"skyline.alerts.rate.{channel}.{window}"

#: hash: Vista's bookkeeping, field -> Unix seconds. "fetch <fetch key>": the end of the last
#: window fetched for one configured query; "series <name>": the newest point stored for one
#: series it gave (so a restart neither fetches nor stores a point twice)
VISTA_LAST = "skyline.vista.last"
