"""The upstream flux JSON bodies, parsed into points (pure: no I/O, no settings).

    {"key": K, "metrics": [{"metric": M, "timestamp": T, "value": V}, ...]}
    {"key": K, "metric": M, "timestamp": T, "value": V}

Timestamps are Unix seconds (a missing one means now); values and timestamps may be JSON
numbers or numeric strings. Other members (upstream's `fill`, `test`) are ignored. An item
that cannot be read gets a reason at its position; the others are still returned.
"""

from __future__ import annotations

import json
import math
from typing import Any

from skyline.services.flux.points import Points


class BadBody(Exception):
    """The body as a whole is unusable; `reason` is the counter name, `key` the body's key
    when it could be read (so a client with a good key hears what is wrong, not 401)."""

    def __init__(self, reason: str, message: str, key: str | None = None):
        self.reason = reason
        self.key = key
        super().__init__(message)

    def __reduce__(self) -> tuple[Any, ...]:  # crosses from the parsing process
        return (BadBody, (self.reason, str(self), self.key))


class TooMany(Exception):
    def __init__(self, count: int, limit: int, key: str | None = None, *,
                 approximate: bool = False):
        self.count = count
        self.key = key
        self.args_ = (count, limit, key, approximate)
        what = f"over {count} JSON values, more than" if approximate else f"{count} metrics"
        super().__init__(f"{what} in one request; at most {limit} metrics "
                         "(FLUX_MAX_METRICS_PER_POST)")

    def __reduce__(self) -> tuple[Any, ...]:  # crosses from the parsing process
        count, limit, key, approximate = self.args_
        return (_too_many, (count, limit, key, approximate))


def _too_many(count: int, limit: int, key: str | None, approximate: bool) -> TooMany:
    return TooMany(count, limit, key, approximate=approximate)


def number(v: Any) -> float | None:
    """A JSON number or numeric string as float; None for anything else (bool included)."""
    if isinstance(v, bool):
        return None
    if isinstance(v, int | float):
        try:
            return float(v)
        except OverflowError:
            return None
    if isinstance(v, str) and 0 < len(v) <= 64:
        try:
            return float(v)
        except ValueError:
            return None
    return None


#: commas one metric item may take (its members, and the labels inside a labelled name)
_COMMAS_PER_ITEM = 64


def check_size(raw: bytes, limit: int) -> None:
    """TooMany when the body holds far more JSON values than `limit` metrics could, found by
    counting commas (fast, in C) before parsing: `[{},{},...]` decompressed from a small
    gzip would otherwise build millions of objects (hundreds of MB) only to be refused."""
    if raw.count(b",") > _COMMAS_PER_ITEM * (limit + 1):
        raise TooMany(_COMMAS_PER_ITEM * (limit + 1), limit, approximate=True)


def load(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as e:  # UnicodeDecodeError is a ValueError
        raise BadBody("bad_json", f"the body is not valid JSON: {e}") from None


def parse_post(raw: bytes, max_metrics: int, now: float) -> tuple[str | None, Points]:
    """A POST body to (its key, its points) in one call, so a process can do all of it and
    send back only the points (BadBody, TooMany as items_of and load raise them)."""
    key, items = items_of(load(raw), max_metrics)
    return key, parse_items(items, now)


def items_of(body: Any, max_metrics: int) -> tuple[str | None, list[Any]]:
    """(key, items) of a POST body, in either of upstream's forms."""
    if not isinstance(body, dict):
        raise BadBody("bad_json", "the body must be a JSON object")
    key = body.get("key")
    key = key if isinstance(key, str) and key else None
    if "metrics" in body:
        items = body["metrics"]
        if not isinstance(items, list):
            raise BadBody("bad_json", "'metrics' must be a list", key)
    elif "metric" in body:
        items = [body]
    else:
        raise BadBody("bad_json", "expected 'metrics' (a list of {metric, timestamp, value}) "
                      "or one 'metric' with its 'timestamp' and 'value'", key)
    if len(items) > max_metrics:
        raise TooMany(len(items), max_metrics, key)
    return key, items


def parse_items(items: list[Any], now: float) -> Points:
    names: list[str] = []
    timestamps: list[float] = []
    values: list[float] = []
    out = Points(total=len(items), names=names, timestamps=timestamps, values=values)
    for i, item in enumerate(items):
        reason = _parse_item(item, now, names, timestamps, values)
        if reason is not None:
            out.errors.append((i, reason))
        else:
            out.index.append(i)
    return out


def _parse_item(item: Any, now: float, names: list[str], timestamps: list[float],
                values: list[float]) -> str | None:
    if not isinstance(item, dict):
        return "bad_item"
    name = item.get("metric")
    if not isinstance(name, str) or not name:
        return "bad_metric"
    value = number(item.get("value"))
    if value is None:
        return "bad_value"
    raw_ts = item.get("timestamp")
    ts = now if raw_ts is None else number(raw_ts)
    if ts is None or not math.isfinite(ts):
        return "bad_timestamp"
    names.append(name)
    timestamps.append(ts)
    values.append(value)
    return None
