"""The settings as a person reads them: grouped by the component they steer, the detector and
pipeline first, each with its value (secrets masked), its doc line and where the value came
from (default, file, environment, override). The web app's settings page shows this."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from skyline.settings.model import Settings
from skyline.settings.reference import SettingDoc, settings_reference
from skyline.settings.show import MASK, as_dict
from skyline.settings.show import _inline as toml_inline

DEFAULT = "default"
# highest precedence first, as load_settings applies them
SOURCES = ("override", "env", "file")
ORIGIN_TEXT = {"override": "override", "env": "environment", "file": "file",
               DEFAULT: "default"}

# (group id, title, what it steers), in the order the page shows them
GROUPS: tuple[tuple[str, str, str], ...] = (
    ("analyzer", "Analyzer: the detector", "what decides that a point is anomalous, and when"),
    ("pipeline", "Stages after the detector", "mirage, ionosphere and the stages that confirm or veto"),
    ("boundary", "Boundary", "per-namespace threshold rules"),
    ("alerters", "Alerts", "routing, channels and expiry"),
    ("panorama", "Panorama", "the stored anomaly events"),
    ("luminosity", "Luminosity", "related metrics and incidents"),
    ("horizon", "Horizon", "TCP/UDP listeners"),
    ("flux", "Flux", "HTTP ingest"),
    ("ingest", "Ingest", "limits on every accepted point"),
    ("vista", "Vista", "metrics pulled from remote servers"),
    ("roomba", "Roomba", "trimming of the hot store"),
    ("webapp", "Web app", "UI, API, users and sessions"),
    ("stores", "Stores and process", "data directory, Redis, SQL, logs"),
    ("telemetry", "Telemetry", "Skyline's own counters and heartbeats"),
    ("thunder", "Thunder", "Skyline watching itself: checks and their alerts"),
)

# tables -> group (the first element of a dotted name)
_TABLES = {"analyzer": "analyzer", "mirage": "pipeline", "ionosphere": "pipeline",
           "alerters": "alerters",
           "panorama": "panorama", "luminosity": "luminosity", "horizon": "horizon",
           "statsd": "horizon", "flux": "flux", "ingest": "ingest", "vista": "vista",
           "roomba": "roomba", "webapp": "webapp", "redis": "stores", "database": "stores",
           "telemetry": "telemetry"}
# top-level (upstream) names by prefix, then one by one
_PREFIXES = (("ANALYZER_", "analyzer"), ("MAX_ANALYZER_", "analyzer"), ("MIRAGE_", "pipeline"),
             ("BOUNDARY_", "boundary"), ("LUMINOSITY_", "luminosity"),
             ("LUMINOL_", "luminosity"), ("VISTA_", "vista"), ("FLUX_", "flux"),
             ("WEBAPP_", "webapp"), ("ROOMBA_", "roomba"), ("PANORAMA_", "panorama"),
             ("LOG_", "stores"), ("THUNDER_", "thunder"))
_NAMES = {
    "FULL_DURATION": "analyzer", "ALGORITHMS": "analyzer", "CONSENSUS": "analyzer",
    "ANOMALY_SCORE_THRESHOLD": "analyzer", "STALE_PERIOD": "analyzer",
    "MIN_TOLERABLE_LENGTH": "analyzer", "MAX_TOLERABLE_BOREDOM": "analyzer",
    "BOREDOM_SET_SIZE": "analyzer", "MONOTONIC_METRIC_NAMESPACES": "analyzer",
    "NON_DERIVATIVE_MONOTONIC_METRICS": "analyzer", "CUSTOM_ALGORITHMS": "analyzer",
    "SKIP_LIST": "analyzer", "DO_NOT_SKIP_LIST": "analyzer",
    "EXPIRATION_TIME": "alerters", "ENABLE_ALERTS": "alerters", "ALERTS": "alerters",
    "CORRELATE_ALERTS_ONLY": "luminosity",
    "HORIZON_IP": "horizon", "PICKLE_PORT": "horizon", "UDP_PORT": "horizon",
    "MAX_METRICS": "ingest", "MAX_NEW_METRICS_PER_MINUTE": "ingest",
    "DATA_DIR": "stores", "REDIS_URL": "stores", "DATABASE_URL": "stores",
    "INSTANCE_NAME": "stores",
    "ALERT_ON_STALE_METRICS": "thunder", "ALERT_ON_STALE_PERIOD": "thunder",
    "CUSTOM_STALE_PERIOD": "thunder", "DO_NOT_ALERT_ON_STALE_METRICS": "thunder",
}
# shown first in their group, in this order: what decides comes before how it is tuned
_FIRST = ("analyzer.detector", "ANOMALY_SCORE_THRESHOLD", "ALGORITHMS", "CONSENSUS",
          "CUSTOM_ALGORITHMS", "FULL_DURATION", "ANALYZER_OPTIMUM_RUN_DURATION",
          "analyzer.stages", "analyzer.stage_budget", "ENABLE_ALERTS", "ALERTS")


def group_of(name: str) -> str | None:
    """The group of a setting (its TOML name), None when it has none (a test keeps that
    from happening)."""
    head = name.split(".", 1)[0]
    if name.startswith("analyzer.stage"):
        return "pipeline"
    if head in _TABLES:
        return _TABLES[head]
    if head in _NAMES:
        return _NAMES[head]
    for prefix, group in _PREFIXES:
        if head.startswith(prefix):
            return group
    return None


def origin(settings: Settings, name: str) -> str:
    """Where the value of setting `name` came from: override (arguments of load_settings),
    env, file, or default. A table given whole (SKYLINE_ANALYZER='{...}') sets each setting
    it holds; a setting whose table entries were given (FLUX_API_KEYS.x) was set."""
    paths: dict[str, frozenset[str]] = settings._origins
    for source in SOURCES:
        for p in paths.get(source, ()):
            if p == name or name.startswith(p + ".") or p.startswith(name + "."):
                return source
    return DEFAULT


@dataclass(frozen=True)
class Row:
    name: str
    value: str  # as written in TOML, secrets masked; "" when unset
    origin: str
    doc: SettingDoc

    @property
    def unset(self) -> bool:
        return self.value == ""


@dataclass(frozen=True)
class Group:
    id: str
    title: str
    about: str
    rows: list[Row]

    @property
    def changed(self) -> int:
        return sum(1 for r in self.rows if r.origin != DEFAULT)


def _lookup(data: Any, name: str) -> Any:
    for part in name.split("."):
        data = data.get(part) if isinstance(data, dict) else None
    return data


def _inline(v: Any) -> str:
    return "" if v is None else toml_inline(v)


def grouped(settings: Settings) -> list[Group]:
    """Every setting, grouped; inside a group the deciding ones first, then as declared."""
    data = as_dict(settings)
    rows: dict[str, list[Row]] = {g: [] for g, _, _ in GROUPS}
    other: list[Row] = []
    for doc in settings_reference():
        row = Row(doc.name, _inline(_lookup(data, doc.name)), origin(settings, doc.name), doc)
        g = group_of(doc.name)
        (rows[g] if g in rows else other).append(row)
    rank = {n: i for i, n in enumerate(_FIRST)}
    out = []
    for gid, title, about in GROUPS:
        items = sorted(rows[gid], key=lambda r: rank.get(r.name, len(rank)))  # stable
        out.append(Group(gid, title, about, items))
    if other:
        out.append(Group("other", "Other", "", other))
    return out


def detector_summary(settings: Settings) -> list[tuple[str, str]]:
    """The few facts that say how Skyline decides, as (label, text) lines for the top of the
    settings page."""
    s = settings
    a = s.analyzer
    if a.detector == "score":
        how = (f"score: range_excess's anomaly score against ANOMALY_SCORE_THRESHOLD "
               f"{s.ANOMALY_SCORE_THRESHOLD:g}")
    elif a.detector == "learning":
        how = ("learning: each point against the metric's own 30-day memory (range, level, "
               "transitions, anomaly likelihood); a metric learnt for less than a day is "
               f"judged by range_excess against ANOMALY_SCORE_THRESHOLD "
               f"{s.ANOMALY_SCORE_THRESHOLD:g}")
    elif a.detector == "consensus":
        how = (f"consensus: {s.CONSENSUS} of the {len(s.ALGORITHMS)} ALGORITHMS "
               f"({', '.join(s.ALGORITHMS)}) must agree")
    else:  # a detector added later: its name, and its doc line says the rest
        how = f"{a.detector} (analyzer.detector; see its line below)"
    lines = [("Detector", how)]
    if s.CUSTOM_ALGORITHMS:
        lines.append(("Custom algorithms", ", ".join(sorted(s.CUSTOM_ALGORITHMS))))
    lines.append(("Stages", " -> ".join(a.stages) if a.stages else
                  "none: the detector's verdict alerts"))
    lines.append(("Window", f"FULL_DURATION {s.FULL_DURATION:,} s, every "
                  f"{s.ANALYZER_OPTIMUM_RUN_DURATION:g} s, {s.ANALYZER_PROCESSES} process(es)"
                  + ("" if s.ANALYZER_ENABLED else "; analysis OFF (ANALYZER_ENABLED)")))
    lines.append(("Alerts", ("on" if s.ENABLE_ALERTS else "OFF (ENABLE_ALERTS)")
                  + f", {len(s.ALERTS)} rule(s), EXPIRATION_TIME {s.EXPIRATION_TIME:,} s"))
    return lines


def config_file(settings: Settings) -> str | None:
    return settings._config_file


__all__ = ["DEFAULT", "GROUPS", "MASK", "ORIGIN_TEXT", "Group", "Row", "config_file",
           "detector_summary", "group_of", "grouped", "origin"]
