"""Graphite plaintext: `name value timestamp\\n`, over TCP and UDP (horizon) and in Kafka
messages (flux).

The fast path parses a whole buffer of complete lines with a few C-level passes (numpy
checks of the separators, one `bytes.split`, `map(float)` for the values, the timestamps read
as digits straight from the buffer) instead of a Python loop per line; any buffer it cannot
prove well-formed goes through the per-line parser, which keeps every good line and counts the
others.

Graphite tagged names, `name;k=v;k2=v2`, become labelled names `name{k="v",k2="v2"}`.
"""

from __future__ import annotations

import re

import numpy as np

from skyline.ingest.batch import Batch
from skyline.ingest.names import labelled_name

NEWLINE = 10
SPACE = 32
_SEPARATORS = np.array([SPACE, SPACE, NEWLINE], dtype=np.uint8)
ZERO = np.uint8(ord("0"))
_POWERS = 10 ** np.arange(14, -1, -1, dtype=np.int64)  # 10**14 ... 10**0
# bytes that bytes.split() treats as whitespace, besides space and newline
_OTHER_WHITESPACE = (b"\t", b"\r", b"\x0b", b"\x0c")
MAX_LINE = 16_384  # horizon.max_line_bytes' default
_LABEL_NAME_BAD = re.compile(r"[^A-Za-z0-9_]")

# rejection reasons (counted as rejected_plaintext_<reason>)
BAD_LINE = "bad_line"  # not three fields
BAD_NUMBER = "bad_number"  # value or timestamp is not a number
BAD_ENCODING = "bad_encoding"  # name is not UTF-8
BAD_TAGS = "bad_tags"  # a `;tag=value` part without `=`, or empty
LINE_TOO_LONG = "line_too_long"
INCOMPLETE_LINE = "incomplete_line"  # the connection closed in the middle of a line


def tagged_name(name: str) -> str | None:
    """`name;k=v;...` as `name{k="v",...}`; None when a tag is malformed.

    Graphite allows tag names that Prometheus label names do not (`dc-1`, `a.b`): characters
    outside [A-Za-z0-9_] become `_`, as Prometheus' own converters do.
    """
    base, *tags = name.split(";")
    labels: dict[str, str] = {}
    for tag in tags:
        key, sep, value = tag.partition("=")
        if not sep or not key or not value:
            return None
        key = _LABEL_NAME_BAD.sub("_", key)
        if key[0].isdigit():
            key = "_" + key
        labels[key] = value
    return labelled_name(base, labels)


def _separators(chunk: bytes, arr: np.ndarray, max_line: int) -> np.ndarray | None:
    """The positions of the separators when every line of `chunk` (newline-terminated) is
    at most `max_line` bytes of exactly three non-empty fields separated by single spaces,
    so that the fields of a whole-buffer split line up in threes; else None.

    Checked on the separators alone: they must run space, space, newline, space, space,
    newline, ... with a field byte before each of them.
    """
    if any(ws in chunk for ws in _OTHER_WHITESPACE):  # one memchr each
        return None
    seps = np.flatnonzero((arr == SPACE) | (arr == NEWLINE))
    if len(seps) % 3 or not len(seps) or seps[0] == 0 or not (np.diff(seps) > 1).all():
        return None
    if not (arr[seps].reshape(-1, 3) == _SEPARATORS).all():
        return None
    if np.diff(seps[2::3], prepend=-1).max() > max_line + 1:
        return None
    return seps


def _integer_stamps(arr: np.ndarray, seps: np.ndarray) -> np.ndarray | None:
    """The timestamps, when all are integers of the same number of digits (Unix seconds, as
    nearly every sender writes them), read straight from the buffer; else None (float())."""
    starts = seps[1::3] + 1
    widths = seps[2::3] - starts
    width = int(widths[0])
    if not 1 <= width <= 15 or not (widths == width).all():  # 15 digits: exact in a double
        return None
    digits = arr[starts[:, None] + np.arange(width)] - ZERO  # anything else wraps above 9
    if not (digits <= 9).all():
        return None
    return (digits @ _POWERS[-width:]).astype(np.float64)


def parse_lines(chunk: bytes, batch: Batch, max_line: int = MAX_LINE) -> None:
    """Parse a buffer of complete lines into `batch`; lines over `max_line` bytes are
    counted, not parsed."""
    if not chunk:
        return
    if b"\r\n" in chunk:
        chunk = chunk.replace(b"\r\n", b"\n")
    if not chunk.endswith(b"\n"):
        chunk += b"\n"
    arr = np.frombuffer(chunk, dtype=np.uint8)
    seps = _separators(chunk, arr, max_line)
    if seps is not None:
        fields = chunk.split()
        try:
            names = list(map(bytes.decode, fields[0::3]))
            values = np.array(list(map(float, fields[1::3])), dtype=np.float64)
            stamps = _integer_stamps(arr, seps)
            if stamps is None:
                stamps = np.array(list(map(float, fields[2::3])), dtype=np.float64)
        except ValueError:  # a bad number or bad UTF-8 (UnicodeDecodeError is a ValueError)
            pass
        else:
            batch.units += len(names)
            if b";" in chunk:
                _convert_tagged(names, stamps, values, batch)
            else:
                batch.extend(names, stamps, values)
            return
    _parse_slowly(chunk, batch, max_line)


def _convert_tagged(names: list[str], stamps: np.ndarray, values: np.ndarray,
                    batch: Batch) -> None:
    keep = np.ones(len(names), dtype=bool)
    for i, name in enumerate(names):
        if ";" in name:
            converted = tagged_name(name)
            if converted is None:
                keep[i] = False
                batch.reject(BAD_TAGS)
            else:
                names[i] = converted
    if keep.all():
        batch.extend(names, stamps, values)
    else:
        batch.extend([n for n, k in zip(names, keep.tolist(), strict=True) if k],
                     stamps[keep], values[keep])


def _parse_slowly(chunk: bytes, batch: Batch, max_line: int) -> None:
    for line in chunk.split(b"\n"):
        fields = line.split()
        if not fields:  # blank lines carry nothing
            continue
        batch.units += 1
        if len(line) > max_line:
            batch.reject(LINE_TOO_LONG)
            continue
        if len(fields) != 3:
            batch.reject(BAD_LINE)
            continue
        try:
            name = fields[0].decode()
        except UnicodeDecodeError:
            batch.reject(BAD_ENCODING)
            continue
        try:
            value, stamp = float(fields[1]), float(fields[2])
        except ValueError:
            batch.reject(BAD_NUMBER)
            continue
        if ";" in name:
            converted = tagged_name(name)
            if converted is None:
                batch.reject(BAD_TAGS)
                continue
            name = converted
        batch.add(name, stamp, value)


class LineReader:
    """One TCP connection's line framing: complete lines are parsed as they arrive, a partial
    last line waits for the rest, and a line longer than `max_line` is skipped and counted."""

    refusal: str | None = None  # it never asks for the connection to be closed

    def __init__(self, max_line: int):
        self.max_line = max_line
        self._rest = b""
        self._skipping = False  # inside an overlong line: drop bytes until its newline

    @property
    def buffered(self) -> int:
        return len(self._rest)

    def feed(self, data: bytes, batch: Batch) -> None:
        if self._skipping:
            end = data.find(b"\n")
            if end < 0:
                return
            data = data[end + 1 :]
            self._skipping = False
        if self._rest:
            data = self._rest + data
            self._rest = b""
        last = data.rfind(b"\n")
        if last < 0:
            rest = data
        else:
            rest = data[last + 1 :]
            parse_lines(data[: last + 1] if rest else data, batch, self.max_line)
        if len(rest) > self.max_line:
            batch.reject(LINE_TOO_LONG)
            self._skipping = True
        else:
            self._rest = rest

    def finish(self, batch: Batch) -> None:
        """At end of stream: a line without its newline may be cut short, so it is counted,
        not guessed at (carbon drops it too)."""
        if self._rest.strip():
            batch.reject(INCOMPLETE_LINE)
        self._rest = b""


def parse_datagram(data: bytes, batch: Batch, max_line: int = MAX_LINE) -> None:
    """A UDP datagram holds whole lines; the last one's newline is optional."""
    parse_lines(data, batch, max_line)
