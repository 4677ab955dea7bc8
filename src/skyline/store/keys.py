"""Every Redis key name Skyline uses, in one place.

One metric's keys share a Redis Cluster hash tag: the metric name sits in braces right after
a fixed prefix, so all of that metric's keys hash to the same slot (a name that itself holds a
closing brace still yields the same tag for all of its keys).
"""

from __future__ import annotations

import functools

SERIES_PREFIX = "metrics.{"
SERIES_SUFFIX = "}"

#: set of every metric name in the hot store (upstream's metrics.unique_metrics)
METRIC_INDEX = "skyline.unique_metrics"

#: Redis stream of AnomalyEvents (JSON in field "data")
ANOMALY_STREAM = "skyline.events.anomalies"

#: Redis stream of incident changes (JSON in field "data": an incident opened, a member
#: joined or ended, the incident closed), written by luminosity
INCIDENT_STREAM = "skyline.events.incidents"

#: set of "component:instance" that have published self-metrics
TELEMETRY_INDEX = "skyline.telemetry.instances"
# hash "component.instance" -> Unix time of its last heartbeat, kept after the heartbeat key
# expires, so that the overview can say a component stopped (not just forget it)
HEARTBEATS_SEEN = "skyline.heartbeats.seen"

#: hash metric -> JSON of its open incident ({"since", "last_event", "events", "band_low",
#: "band_high", "score", "source"}): an index the analyzer keeps beside the analysis states
#: (which hold the truth), so a page can list what is broken now without reading every state
OPEN_INCIDENTS = "skyline.incidents.open"

#: hash metric -> JSON {"since", "who", "at", "note"}: who acknowledged the metric's open
#: incident (written by the web app); an entry whose "since" is not the open incident's is
#: an old incident's and is dropped when read
INCIDENT_ACKS = "skyline.incidents.acks"

#: hash check -> packed state of every Boundary check that is counting detections or has an
#: open incident ("<algorithm>\x00<metric>" -> skyline.analysis.boundary.STATE_DTYPE record)
BOUNDARY_CHECKS = "skyline.boundary.checks"

#: the hash of open incidents that releases before 0.2 kept (metric -> JSON); read once to
#: carry open incidents into the analysis states, then deleted
LEGACY_ANALYZER_INCIDENTS = "skyline.analyzer.incidents"

#: sorted set: the analyzers sharing a Redis Cluster's metrics (services/analyzer/leases.py),
#: member id -> the Redis time its lease expires; each takes an equal run of the index shards
ANALYZER_MEMBERS = "skyline.analyzer.members"

#: Ionosphere's profile cache (the profiles themselves live in SQL): a counter bumped on every
#: change, so the stage reloads at its next candidate; the set of metrics with enabled
#: profiles; per metric, its enabled profiles (ionosphere_profiles(metric))
IONOSPHERE_VERSION = "skyline.ionosphere.version"
IONOSPHERE_METRICS = "skyline.ionosphere.metrics"


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


def history(metric: str) -> str:
    """The string holding a metric's long history: its points downsampled to
    MIRAGE_ANALYSIS_RESOLUTION buckets for mirage.history_days (store/history.py)."""
    return f"skyline.history.{{{metric}}}"


def metric_keys(metric: str) -> tuple[str, ...]:
    """Every key that belongs to one metric (deleted with it)."""
    return (series(metric), analysis_state(metric), scores(metric), history(metric))


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


def _scoped(scope: str) -> str:
    return f"{scope}." if scope else ""


def alert_last(channel: str, metric: str, scope: str = "") -> str:
    """Alert de-duplication marker (upstream last_alert.<alerter>.<metric>): holds the id of
    the event alerted on this channel, for the matching rule's expiration. `scope` keeps
    another source's alerts on the same metric apart (Boundary: "boundary.<algorithm>", as
    upstream's last_alert.boundary.<alerter>.<metric>.<algorithm>)."""
    return f"skyline.alerts.last.{channel}.{_scoped(scope)}{{{metric}}}"


def alert_open(channel: str, metric: str, scope: str = "") -> str:
    """Set while a channel that resolves (PagerDuty, Alertmanager, webhook) has an open
    alert for the metric: a recovery is sent only then."""
    return f"skyline.alerts.open.{channel}.{_scoped(scope)}{{{metric}}}"


def alert_incident(channel: str, incident: str) -> str:
    """Set once a channel alerted on an incident (alert rules with group = "incident"):
    holds the id of the anomaly event it alerted with; later members are updates, and the
    incident's close resolves it."""
    return f"skyline.alerts.incident.{channel}.{{{incident}}}"


def alert_incident_update(channel: str, incident: str) -> str:
    """Set while an update of an incident's alert is queued on a channel (for
    alerters.incident_update_delay seconds): members joining meanwhile ride on it."""
    return f"skyline.alerts.incident_update.{channel}.{{{incident}}}"


def alert_rate(channel: str, window: int, scope: str = "") -> str:
    """Counter of alerts a channel sent in one rate-limit window (with `scope`: of one
    source's share, e.g. BOUNDARY_ALERTER_OPTS's "boundary")."""
    return f"skyline.alerts.rate.{channel}.{_scoped(scope)}{window}"

#: hash: Vista's bookkeeping, field -> Unix seconds. "fetch <fetch key>": the end of the last
#: window fetched for one configured query; "series <name>": the newest point stored for one
#: series it gave (so a restart neither fetches nor stores a point twice)
VISTA_LAST = "skyline.vista.last"


def ionosphere_profiles(metric: str) -> str:
    """A metric's enabled Ionosphere profiles, packed (store/ionosphere_cache.py)."""
    return f"skyline.ionosphere.{{{metric}}}"

#: hash: what Vista's remote_write sender has sent, so a restart neither resends nor skips.
#: "events": the id of the last anomaly-stream entry sent; "scores <metric>": the newest
#: anomaly-score timestamp of the metric sent (Unix seconds)
VISTA_WRITTEN = "skyline.vista.written"

#: the metric index on a Redis Cluster (store/cluster.py): one set per 16 slots, 1,024 sets,
#: each hash-tagged into its own range of 16 slots, so that the set listing a metric lives
#: on the master that holds the metric (no node holds the whole index)
INDEX_SHARDS = 1024
_SLOTS_PER_SHARD = 16384 // INDEX_SHARDS


@functools.cache
def _shard_tags() -> list[str]:
    """A hash tag for each shard: the first of ix0, ix1, ... whose slot falls in its range."""
    from binascii import crc_hqx  # Redis Cluster's CRC16 (XMODEM)

    tags: list[str | None] = [None] * INDEX_SHARDS
    left, i = INDEX_SHARDS, 0
    while left:
        tag = f"ix{i}"
        shard = (crc_hqx(tag.encode(), 0) % 16384) // _SLOTS_PER_SHARD
        if tags[shard] is None:
            tags[shard] = tag
            left -= 1
        i += 1
    return [t for t in tags if t is not None]



def metric_index_shard(slot: int) -> str:
    """The cluster index set that lists the metrics whose keys hash to `slot`."""
    return f"skyline.unique_metrics.{{{_shard_tags()[slot // _SLOTS_PER_SHARD]}}}"
