"""Luminosity's settings: the [luminosity] table (related metrics and incidents,
docs/luminosity.md). Upstream's LUMINOSITY_* names stay top-level in the model."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class LuminositySettings(BaseModel):
    """[luminosity]: which other metrics moved with an anomaly, and incidents that group
    several metrics' incidents."""

    model_config = ConfigDict(extra="forbid", validate_default=True)

    before: int = Field(
        60, ge=10, le=1440,
        description="Steps (of the anomalous metric's resolution) before the anomaly in the "
        "window compared with every other metric.",
    )
    after: int = Field(
        5, ge=0, le=60,
        description="Steps after the anomaly in the window; Luminosity waits for them (and "
        "max_lag more) before it correlates.",
    )
    max_lag: int = Field(
        5, ge=0, le=60,
        description="Steps another metric may lead or follow the anomalous one.",
    )
    min_change: float = Field(
        4.0, ge=0, le=1000,
        description="How far (robust standard deviations of its previous hour) another "
        "metric must have moved around the anomaly to count as related.",
    )
    top: int = Field(10, ge=1, le=100, description="Related metrics kept per anomaly.")
    max_wait: float = Field(
        900.0, ge=0, le=3600,
        description="Most seconds an anomaly waits for the points after it before it is "
        "correlated with what there is.",
    )
    incident_window: float = Field(
        300.0, ge=0, le=86400,
        description="Seconds after an incident's newest member within which another related "
        "metric's incident joins it; 0: no grouping (every metric's incident alone).",
    )
    incident_prefix_depth: int = Field(
        0, ge=0, le=20,
        description="Metrics sharing this many leading dotted elements of their names are "
        "related for grouping; 0: names do not count.",
    )
    incident_min_coefficient: float = Field(
        0.75, gt=0, le=1,
        description="Shape coefficient with the incident's origin a metric needs to join it.",
    )
    incident_min_baseline: float = Field(
        0.2, ge=0, le=1,
        description="Coefficient of the step-to-step changes before the anomaly (moving "
        "together in ordinary times) a metric needs to join an incident.",
    )
    incident_before: int = Field(
        240, ge=10, le=2880,
        description="Steps of history compared when deciding whether a metric joins an "
        "incident.",
    )
    claim_idle: float = Field(
        300.0, gt=0, le=86400,
        description="Seconds an event may stay unacknowledged before another luminosity "
        "takes it over.",
    )
