"""Incidents: when a judged point becomes an event. Pure, vectorised over metrics: one point
per metric per step, every metric's incident a record in a structured array (INCIDENT_DTYPE,
part of the metric's analysis state, so it survives restarts and replays exactly as live).

An incident opens at the first point the detector fires on (an `anomalous` event) and records
the band the detector expected a normal value in at that point: what the metric looked like
before the incident. Then, point by point:

- back inside that band (and the detector not firing) for `recovery` seconds: the incident
  closes as `recovered`. A metric that dropped to 0 and stays there is never "recovered",
  however used to the 0 a window-based detector gets;
- still outside after `new_level_after` seconds: the incident closes as `new_level` (the
  metric changed for good; the detector re-bases on the values seen during the incident);
- otherwise, every `expiration` (EXPIRATION_TIME) seconds since the last event, one more
  `anomalous` event: it is still broken (a re-alert, as upstream's alert expiry).

A point inside an open incident never teaches the detector (the `learn` mask): the detector
must not get used to an outage, and the next incident must not be hidden by the memory of
this one. Times are the metric's own timestamps, so a replay of old data decides as live did,
and a point judged twice (t not after the last processed one) is never processed again (the
pipeline's cursor).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np
import numpy.typing as npt

from skyline.core.errors import InvalidInput
from skyline.core.types import FloatArray

BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]

INCIDENT_DTYPE = np.dtype([
    ("open", "u1"),
    ("since", "<f8"),  # timestamp of the point that opened it
    ("last_event", "<f8"),  # timestamp of the last anomalous event
    ("events", "<u4"),  # anomalous events emitted for it
    ("band_low", "<f8"),  # what the detector expected at the opening point
    ("band_high", "<f8"),
    ("back_since", "<f8"),  # first point of the current run back inside the band; NaN: none
    ("seen_low", "<f8"),  # values seen while open (a new level is re-based on them)
    ("seen_high", "<f8"),
    ("peak", "<f8"),  # the highest score while open (a re-alert quotes it)
])


class Emit(IntEnum):
    """What a point's transition emits."""

    NONE = 0
    ANOMALOUS = 1  # an incident opened, or an open one is still broken after EXPIRATION_TIME
    RECOVERED = 2
    NEW_LEVEL = 3

    @property
    def status(self) -> str:
        return _STATUS[self]


_STATUS = {Emit.NONE: "", Emit.ANOMALOUS: "anomalous", Emit.RECOVERED: "recovered",
           Emit.NEW_LEVEL: "new_level"}


@dataclass(frozen=True)
class IncidentRules:
    expiration: float = 3600.0  # EXPIRATION_TIME: re-alert an incident still open this long
    recovery: float = 600.0  # back inside the band this long: recovered
    new_level_after: float = 14400.0  # outside the band this long: closed as a new level; 0 off

    def __post_init__(self) -> None:
        if self.expiration < 0 or self.recovery < 0 or self.new_level_after < 0:
            raise InvalidInput("EXPIRATION_TIME, recovery and new_level_after must not be "
                               "negative")


def fresh(n: int) -> npt.NDArray[np.void]:
    """n closed incidents."""
    inc = np.zeros(n, dtype=INCIDENT_DTYPE)
    for name in ("since", "last_event", "band_low", "band_high", "back_since", "seen_low",
                 "seen_high", "peak"):
        inc[name] = np.nan
    return inc


@dataclass
class Transition:
    """One step's outcome, per row of the step."""

    emit: npt.NDArray[np.int8]
    learn: BoolArray  # the point may teach the detector (no incident open after it)
    opened: BoolArray  # this point opened an incident (stages may still veto it)
    band_low: FloatArray  # the open incident's band after the step (NaN when closed)
    band_high: FloatArray
    since: FloatArray  # the incident's start for emitted events (NaN when none)
    peak: FloatArray  # the incident's highest score so far, for emitted events
    seen_low: FloatArray  # values seen during an incident that closed as a new level
    seen_high: FloatArray


def step(inc: npt.NDArray[np.void], t: FloatArray, v: FloatArray, judged: BoolArray,
         fired: BoolArray, low: FloatArray, high: FloatArray,
         rules: IncidentRules, score: FloatArray | None = None) -> Transition:
    """Apply one point per row to `inc` (a structured array of INCIDENT_DTYPE, one record per
    row, updated in place). judged: the detector gave an opinion; fired: it called the point
    anomalous; low/high: the band it expected a normal value in (NaN: no band, anything goes);
    score: the detector's score (an incident keeps its peak).
    """
    n = len(t)
    is_open = inc["open"].astype(bool)
    fired = fired & judged
    emit = np.zeros(n, dtype=np.int8)

    # closed: fire -> open
    opening = ~is_open & fired
    if opening.any():
        lo = np.where(np.isnan(low), -np.inf, low)
        hi = np.where(np.isnan(high), np.inf, high)
        inc["open"][opening] = 1
        inc["since"][opening] = t[opening]
        inc["last_event"][opening] = t[opening]
        inc["events"][opening] = 1
        inc["band_low"][opening] = lo[opening]
        inc["band_high"][opening] = hi[opening]
        inc["back_since"][opening] = np.nan
        inc["seen_low"][opening] = v[opening]
        inc["seen_high"][opening] = v[opening]
        inc["peak"][opening] = -np.inf
        emit[opening] = Emit.ANOMALOUS

    seen_low = np.full(n, np.nan)
    seen_high = np.full(n, np.nan)
    now_open_before = is_open | opening
    if score is not None and now_open_before.any():
        o = now_open_before
        inc["peak"][o] = np.fmax(inc["peak"][o], np.where(judged[o], score[o], np.nan))
    if is_open.any():
        o = is_open
        inc["seen_low"][o] = np.fmin(inc["seen_low"][o], v[o])
        inc["seen_high"][o] = np.fmax(inc["seen_high"][o], v[o])
        inside = (inc["band_low"] <= v) & (v <= inc["band_high"])
        back = o & inside & ~fired
        away = o & ~back
        # back inside: count from the first point of the run
        start = inc["back_since"]
        newly = back & np.isnan(start)
        inc["back_since"][newly] = t[newly]
        recovered = back & (t - inc["back_since"] >= rules.recovery)
        # still away: a new level after new_level_after, else a re-alert per expiration
        inc["back_since"][away] = np.nan
        new_level = away & (rules.new_level_after > 0) & \
            (t - inc["since"] >= rules.new_level_after)
        realert = away & ~new_level & (t - inc["last_event"] >= rules.expiration)
        if realert.any():
            inc["last_event"][realert] = t[realert]
            inc["events"][realert] += 1
            emit[realert] = Emit.ANOMALOUS
        emit[recovered] = Emit.RECOVERED
        emit[new_level] = Emit.NEW_LEVEL
        seen_low[new_level] = inc["seen_low"][new_level]
        seen_high[new_level] = inc["seen_high"][new_level]
        closing = recovered | new_level
        if closing.any():
            inc["open"][closing] = 0
    since = np.where(emit > 0, inc["since"], np.nan)
    peak = np.where(emit > 0, inc["peak"], np.nan)
    now_open = inc["open"].astype(bool)
    return Transition(
        emit=emit, learn=~now_open, opened=opening,
        band_low=np.where(now_open, inc["band_low"], np.nan),
        band_high=np.where(now_open, inc["band_high"], np.nan),
        since=since, peak=peak, seen_low=seen_low, seen_high=seen_high)


def veto(inc: npt.NDArray[np.void], rows: IntArray) -> None:
    """A stage vetoed the anomalous event of these rows: it was not an incident after all (or
    no longer is); close it, so the point teaches the detector what is normal."""
    inc["open"][rows] = 0
    inc["back_since"][rows] = np.nan
