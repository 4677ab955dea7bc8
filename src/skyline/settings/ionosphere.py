"""Ionosphere's settings: the [ionosphere] table (profiles taught by operators, the stage that
matches candidates against them; docs/ionosphere.md)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class IonosphereSettings(BaseModel):
    """[ionosphere]: what operators taught is not anomalous (or is), and the stage that
    matches each candidate against it. The stage runs when "ionosphere" is listed in
    analyzer.stages."""

    model_config = ConfigDict(extra="forbid", validate_default=True)

    mode: Literal["off", "shadow", "on"] = Field(
        "on",
        description="off: the stage abstains; shadow: matches are recorded and shown but the "
        "candidate still alerts; on: a candidate matching a not-anomalous profile is vetoed "
        "(one matching a real-anomaly profile is always confirmed).",
    )
    windows_hours: list[float] = Field(
        default_factory=lambda: [3.0, 6.0, 12.0],
        description="Hours before and including a candidate searched for in the metric's "
        "profiles (upstream's IONOSPHERE_INFERENCE_MOTIFS_SETTINGS batch sizes 180/360/720 "
        "points at 60 s).",
    )
    min_correlation: float = Field(
        0.8, gt=0, le=1,
        description="Shape: the z-normalised correlation a profile's subsequence needs with "
        "the candidate's window to match.",
    )
    range_padding: float = Field(
        0.1, ge=0, le=1,
        description="Range: the candidate's window must lie within the matched subsequence's "
        "min and max widened by this fraction of their magnitude (upstream's "
        "IONOSPHERE_INFERENCE_MOTIFS_RANGE_PADDING).",
    )
    area_tolerance: float = Field(
        0.2, ge=0, le=1,
        description="Area: the candidate window's area under the curve within this fraction of "
        "the matched subsequence's (upstream's max_area_percent_diff 20).",
    )
    smooth_points: int = Field(
        3, ge=1, le=60,
        description="Points of a trailing moving mean taken of the candidate's window and of "
        "the profiles before their shapes are compared (1: none); the range and area checks "
        "use the raw values.",
    )
    time_of_day_hours: float = Field(
        2.0, ge=0, le=12,
        description="When set, a profile's subsequence matches only if it ends within this many "
        "hours of the candidate's time of day (UTC): what was taught about the 02:00 backup "
        "does not excuse the same step at 15:00. 0: any time of day.",
    )
    anchor_hours: float = Field(
        1.0, ge=0, le=24,
        description="When set, a profile's subsequence matches only if it ends within this many "
        "hours of the point the profile was taught from (the alert): the candidate must look "
        "like what led to that alert, not like any stretch of the profile's day. 0: anywhere "
        "in the profile (upstream's motif search).",
    )
    min_points: int = Field(
        8, ge=4, le=10_000,
        description="A window holding fewer points than this at a profile's resolution is not "
        "compared with it (a correlation of a few points says little about shape).",
    )
    tail: float = Field(
        0.1, ge=0, le=1,
        description="When above 0, the candidate's own value must also lie within the range of "
        "the matched subsequence's last `tail` fraction (at least 2 points), widened by "
        "range_padding of the subsequence's range: the point that alerted is like the point "
        "the profile ended on, not only like the profile somewhere.",
    )
    budget: float = Field(
        0.25, gt=0, le=10,
        description="Seconds the stage's search may spend on one candidate (within "
        "analyzer.stage_budget; building a metric's profiles after a change is not counted); "
        "over it, it abstains (the candidate alerts).",
    )

    @field_validator("windows_hours")
    @classmethod
    def _windows(cls, v: list[float]) -> list[float]:
        if not v or any(not 0 < h <= 720 for h in v):
            raise ValueError("windows_hours must list hours between 0 and 720")
        return v
