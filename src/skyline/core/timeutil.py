"""Time helpers. Timestamps are Unix seconds (float) everywhere."""

from __future__ import annotations

import math
import re
import time
from datetime import UTC, datetime

from skyline.core.errors import InvalidInput

_RELATIVE = re.compile(r"^-?(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|d|w)?$")
_UNIT_SECONDS = {None: 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}


def now() -> float:
    return time.time()


def parse_duration(text: str) -> float:
    """'90', '90s', '15m', '2h', '7d', '1w' -> seconds."""
    m = _RELATIVE.match(text.strip().lower())
    if not m:
        raise ValueError(f"not a duration: {text!r} (use e.g. 90, 15m, 2h, 7d)")
    return float(m.group(1)) * _UNIT_SECONDS[m.group(2)]


def parse_time(text: str, *, reference: float | None = None) -> float:
    """A point in time from the CLI or API.

    Accepts Unix seconds, an ISO 8601 date/time (UTC when no zone is given), or a duration
    before `reference` written with a leading minus ('-2h').
    """
    s = text.strip()
    ref = now() if reference is None else reference
    if s.startswith("-"):
        return ref - parse_duration(s[1:])
    if s == "now":
        return ref
    try:
        value = float(s)
    except ValueError:
        pass
    else:
        if not math.isfinite(value):  # nan or inf: no moment, and a silence for ever
            raise ValueError(f"not a time: {text!r} (a finite number of Unix seconds)")
        return value
    try:
        dt = datetime.fromisoformat(s)
    except ValueError:
        raise ValueError(
            f"not a time: {text!r} (use Unix seconds, ISO 8601, 'now' or '-2h')"
        ) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def parse_until(text: str, reference: float | None = None) -> float:
    """'2h', '30m' (from now), ISO 8601 or Unix seconds: when something (a silence) ends."""
    ref = now() if reference is None else reference
    t = text.strip()
    try:
        until = ref + parse_duration(t)
    except ValueError:
        pass
    else:
        if math.isfinite(until):
            return until
    try:
        return parse_time(t, reference=ref)
    except ValueError:
        raise InvalidInput(f"until: not a duration or a time: {text!r} (e.g. 2h, 1d, "
                           "2030-01-01T00:00:00Z)") from None


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
