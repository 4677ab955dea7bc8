"""InfluxDB line protocol, parsed into points (pure).

    measurement[,tag=value...] field=value[,field=value...] [timestamp]

Each numeric field is one series named `measurement_field{tags}` (tag keys made valid label
names, sorted). Floats as written, integers with `i`, unsigned integers with `u`, booleans
(t, true, T, True, TRUE and the f forms) as 1 and 0. String fields are dropped and counted
(`string_field`): Telegraf emits some on most inputs, and refusing the line for them would
lose its numbers. Escapes follow the protocol: `\\,` `\\ ` in a measurement, `\\,` `\\=` `\\ ` in
tag keys, tag values and field keys, `\\"` inside string values. A line that cannot be read is
refused whole with a reason, and the other lines still count. Item numbers are line numbers
(from 1).
"""

from __future__ import annotations

import re

import numpy as np

from skyline.services.flux.naming import label_name, label_suffix
from skyline.services.flux.points import Points

#: timestamp unit -> (multiplier, divisor) to Unix seconds; v1 and v2 spellings
PRECISIONS: dict[str, tuple[int, int]] = {
    "ns": (1, 10**9), "n": (1, 10**9), "us": (1, 10**6), "u": (1, 10**6), "µ": (1, 10**6),
    "ms": (1, 10**3), "s": (1, 1), "m": (60, 1), "h": (3600, 1),
}
_FLOAT = re.compile(r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$")
_INT = re.compile(r"^[+-]?\d{1,20}$")
_TS = re.compile(r"^-?\d{1,19}$")
_TRUE = frozenset(("t", "T", "true", "True", "TRUE"))
_FALSE = frozenset(("f", "F", "false", "False", "FALSE"))
_UNESCAPE = re.compile(r"\\([, =])")
_MAX_LINE = 1 << 20


class BadLine(Exception):
    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(reason)


def _split(s: str, sep: str, quotes: bool = False) -> list[str]:
    """`s` split at each `sep` not escaped by a backslash (nor, with `quotes`, inside a double
    quoted string); the pieces keep their escapes."""
    if "\\" not in s and not (quotes and '"' in s):
        return s.split(sep)
    out: list[str] = []
    start = i = 0
    n = len(s)
    in_string = False
    while i < n:
        c = s[i]
        if c == "\\":
            i += 2
            continue
        if quotes and c == '"':
            in_string = not in_string
        elif c == sep and not in_string:
            out.append(s[start:i])
            start = i + 1
        i += 1
    if in_string:
        raise BadLine("unterminated_string")
    out.append(s[start:])
    return out


def _unescape(s: str) -> str:
    return _UNESCAPE.sub(r"\1", s) if "\\" in s else s


def _value(raw: str) -> float | None:
    """A field value as float; None for a string field; BadLine when unreadable."""
    if not raw:
        raise BadLine("bad_field")
    last = raw[-1]
    if last == '"' and raw[0] == '"' and len(raw) >= 2:
        return None
    if last in "iu":
        digits = raw[:-1]
        if not _INT.match(digits) or (last == "u" and digits.startswith("-")):
            raise BadLine("bad_field")
        return float(int(digits))
    if raw in _TRUE:
        return 1.0
    if raw in _FALSE:
        return 0.0
    if not _FLOAT.match(raw):
        raise BadLine("bad_field")
    return float(raw)


def _sections(line: str) -> list[str]:
    """series key, fields and optional timestamp: split at unescaped spaces outside
    strings, runs of spaces counting as one."""
    parts = [p for p in _split(line, " ", quotes=True) if p]
    if len(parts) not in (2, 3):
        raise BadLine("bad_line")
    return parts


def parse(body: bytes, precision: str, now: float) -> Points:
    """Every point of a body; `precision` is a key of PRECISIONS (the caller checks it)."""
    mul, div = PRECISIONS[precision]
    text = body.decode("utf-8", "replace")
    out = Points()
    names: list[str] = []
    values: list[float] = []
    raw_ts: list[float] = []  # in `precision` units; NaN where the line has none
    index: list[int] = []
    total = 0
    for line_no, line in enumerate(text.split("\n"), 1):
        line = line.strip()
        if not line or line[0] == "#":
            continue
        total += 1
        try:
            if len(line) > _MAX_LINE:
                raise BadLine("line_too_long")
            parts = _sections(line)
            head = _split(parts[0], ",")
            measurement = _unescape(head[0])
            if not measurement:
                raise BadLine("bad_line")
            tags: dict[str, str] = {}
            for pair in head[1:]:
                kv = _split(pair, "=")
                if len(kv) != 2 or not kv[0] or not kv[1]:
                    raise BadLine("bad_tag")
                tags[label_name(_unescape(kv[0]))] = _unescape(kv[1])
            if len(parts) == 3:
                if not _TS.match(parts[2]):
                    raise BadLine("bad_timestamp")
                ts = float(int(parts[2]))
            else:
                ts = float("nan")
            fields: list[tuple[str, float]] = []
            strings = 0
            for pair in _split(parts[1], ",", quotes=True):
                key, eq, raw = pair.partition("=")
                if not eq or not key:
                    raise BadLine("bad_field")
                if "\\" in key:  # an escaped '=' inside the key: split again, escape-aware
                    kv = _split(pair, "=", quotes=True)
                    if len(kv) < 2 or not kv[0]:
                        raise BadLine("bad_field")
                    key, raw = kv[0], "=".join(kv[1:])
                value = _value(raw)
                if value is None:
                    strings += 1
                else:
                    fields.append((_unescape(key), value))
        except BadLine as e:
            out.errors.append((line_no, e.reason))
            continue
        if strings:
            out.ignored["string_field"] += strings
        suffix = label_suffix(tags)
        for key, value in fields:
            names.append(f"{measurement}_{key}{suffix}")
            values.append(value)
            raw_ts.append(ts)
            index.append(line_no)
    ts_arr = np.array(raw_ts, dtype=np.float64) * mul / div
    ts_arr[np.isnan(ts_arr)] = now
    out.total, out.names, out.values, out.timestamps, out.index = (
        total, names, np.array(values, dtype=np.float64), ts_arr, index)
    return out
