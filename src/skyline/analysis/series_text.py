"""A series given to crucible as text: CSV (timestamp,value; header optional) or JSON
([[t, v], ...], {"points": [[t, v], ...]} as `skyline metrics get --json` prints it).

Refused with one clear line (InvalidInput): anything that is not one of these, a value or
timestamp that is not a finite number, timestamps that do not strictly increase, fewer points
than the analysis needs. Timestamps are Unix seconds or ISO 8601 (UTC when no zone is given).
"""

from __future__ import annotations

import csv
import io
import json
import math
from datetime import UTC, datetime
from typing import Any

import numpy as np

from skyline.core.errors import InvalidInput
from skyline.core.types import FloatArray


def _number(text: str) -> float:
    return float(text.strip())


def _timestamp(text: str) -> float:
    s = text.strip()
    try:
        return float(s)
    except ValueError:
        pass
    dt = datetime.fromisoformat(s)  # ValueError when it is not a date either
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def _is_header(row: list[str]) -> bool:
    """A first row whose first field is no timestamp is a header (a bad value in a data row
    is reported as such, not skipped as a header)."""
    try:
        _timestamp(row[0])
    except ValueError:
        return True
    return False


def parse_csv(text: str, source: str) -> tuple[FloatArray, FloatArray]:
    try:
        rows = list(csv.reader(io.StringIO(text)))
    except csv.Error as e:
        raise InvalidInput(f"{source}: not CSV: {e}") from None
    numbered = [(i + 1, r) for i, r in enumerate(rows) if r and any(c.strip() for c in r)]
    if numbered and _is_header(numbered[0][1]):
        line, header = numbered[0]
        if len(header) < 2:
            raise InvalidInput(f"{source}: not CSV of timestamp,value (line {line}: "
                               f"{','.join(header)[:60]!r})")
        numbered = numbered[1:]
    ts, vs = [], []
    for line, row in numbered:
        if len(row) < 2:
            raise InvalidInput(f"{source}: line {line}: expected timestamp,value, got "
                               f"{','.join(row)[:60]!r}")
        try:
            t = _timestamp(row[0])
        except ValueError:
            raise InvalidInput(f"{source}: line {line}: {row[0].strip()[:40]!r} is not a "
                               "timestamp (Unix seconds or ISO 8601)") from None
        try:
            v = _number(row[1])
        except ValueError:
            raise InvalidInput(f"{source}: line {line}: value {row[1].strip()[:40]!r} is not "
                               "a number") from None
        ts.append(t)
        vs.append(v)
        _check_point(source, f"line {line}", t, v)
    return np.array(ts, dtype=np.float64), np.array(vs, dtype=np.float64)


def _check_point(source: str, where: str, t: float, v: float) -> None:
    if not math.isfinite(t):
        raise InvalidInput(f"{source}: {where}: timestamp {t} is not a finite number")
    if not math.isfinite(v):
        raise InvalidInput(f"{source}: {where}: value {v} is not a finite number")


def parse_json(text: str, source: str) -> tuple[FloatArray, FloatArray]:
    try:
        data: Any = json.loads(text)
    except ValueError as e:
        raise InvalidInput(f"{source}: not JSON: {e}") from None
    if isinstance(data, dict):
        if "points" not in data:
            raise InvalidInput(f"{source}: a JSON object needs \"points\": [[timestamp, value], "
                               "...]")
        data = data["points"]
    if not isinstance(data, list):
        raise InvalidInput(f"{source}: JSON must be [[timestamp, value], ...]")
    ts, vs = [], []
    for i, p in enumerate(data):
        if not isinstance(p, list | tuple) or len(p) != 2:
            raise InvalidInput(f"{source}: point {i}: expected [timestamp, value], got "
                               f"{json.dumps(p)[:60]}")
        try:
            t = _timestamp(str(p[0])) if isinstance(p[0], str) else float(p[0])
            v = float(p[1]) if p[1] is not None else math.nan
        except (TypeError, ValueError):
            raise InvalidInput(f"{source}: point {i}: {json.dumps(p)[:60]} is not a "
                               "[timestamp, value] of numbers") from None
        _check_point(source, f"point {i}", t, v)
        ts.append(t)
        vs.append(v)
    return np.array(ts, dtype=np.float64), np.array(vs, dtype=np.float64)


def parse_series(text: str, source: str, *, min_points: int = 3,
                 kind: str | None = None) -> tuple[FloatArray, FloatArray]:
    """Timestamps and values from CSV or JSON text (`kind` "csv" or "json"; None: guessed
    from the text), checked as described above."""
    if kind is None:
        kind = "json" if text.lstrip()[:1] in ("[", "{") else "csv"
    if "\x00" in text:
        raise InvalidInput(f"{source}: binary data, not CSV or JSON")
    t, v = parse_json(text, source) if kind == "json" else parse_csv(text, source)
    check_series(t, source, min_points)
    return t, v


def check_series(t: FloatArray, source: str, min_points: int) -> None:
    if len(t) == 0:
        raise InvalidInput(f"{source}: no points")
    bad = np.flatnonzero(t[1:] <= t[:-1])
    if len(bad):
        i = int(bad[0]) + 1
        raise InvalidInput(f"{source}: timestamps must increase: point {i + 1} ({t[i]:.0f}) is "
                           f"not after point {i} ({t[i - 1]:.0f})")
    if len(t) < min_points:
        raise InvalidInput(f"{source}: too short: {len(t)} points, at least {min_points} "
                           "needed (MIN_TOLERABLE_LENGTH)")
