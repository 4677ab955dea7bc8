"""Graphite pickle over TCP, as carbon-relay sends it.

A stream of frames: a 4-byte big-endian length, then a pickle of a list of
`(name, (timestamp, value))`. Input from the network is never given to `pickle.loads`: the
unpickler below refuses every global (class or function), which is what would let a pickle
run code, so a frame can only build builtin values; anything that is not a list of such
records is refused record by record. A frame naming a global is counted, logged and ends the
connection; a frame over `max_frame` bytes too, since the sender is not one we understand.
"""

from __future__ import annotations

import io
import pickle
import struct
from typing import Any

import numpy as np

from skyline.services.horizon.batch import Batch

HEADER = struct.Struct("!I")

# rejection reasons (counted as rejected_pickle_<reason>)
FORBIDDEN_GLOBAL = "forbidden_global"
FRAME_TOO_LARGE = "frame_too_large"
BAD_FRAME = "bad_frame"  # not a pickle, or not a list
BAD_RECORD = "bad_record"  # an item that is not (name, (timestamp, value))
INCOMPLETE_FRAME = "incomplete_frame"  # the connection closed in the middle of a frame

# what a malformed pickle can raise from the C unpickler (found by the property tests)
UNPICKLE_ERRORS = (
    pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError,
    KeyError, OverflowError, MemoryError, RecursionError,
)

_SEQUENCES: frozenset[type] = frozenset((tuple, list))
_NUMBERS: frozenset[type] = frozenset((int, float))


class ForbiddenGlobal(pickle.UnpicklingError):
    def __init__(self, module: str, name: str):
        self.qualname = f"{module}.{name}"
        super().__init__(f"pickle names the global {self.qualname}")


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str, /) -> Any:
        raise ForbiddenGlobal(module, name)


def safe_loads(frame: bytes) -> Any:
    """Unpickle builtin values only; raises ForbiddenGlobal for any class or function.

    The buffered reader matters for speed: with `peek` the C unpickler reads from memory,
    without it it makes one Python call per opcode (4x slower).
    """
    reader = io.BufferedReader(io.BytesIO(frame), buffer_size=max(len(frame), 1))
    return _Unpickler(reader).load()


def records_into(data: object, batch: Batch) -> None:
    """Add the points of an unpickled frame to `batch`."""
    if type(data) is not list:
        batch.reject(BAD_FRAME)
        return
    if not data:
        return
    # whole-frame type checks and transposes in C (a strict zip fails on any record that is
    # not a pair); any surprise goes record by record
    try:
        if set(map(type, data)) <= _SEQUENCES:
            names, pairs = zip(*data, strict=True)
            if set(map(type, names)) == {str} and set(map(type, pairs)) <= _SEQUENCES:
                stamps, values = zip(*pairs, strict=True)
                if set(map(type, stamps)) | set(map(type, values)) <= _NUMBERS:
                    batch.extend(list(names), np.array(stamps, dtype=np.float64),
                                 np.array(values, dtype=np.float64))
                    return
    except (TypeError, ValueError, OverflowError):
        pass
    for record in data:
        _record_into(record, batch)


def _number(x: Any) -> float:
    # carbon takes what float() takes; bools and containers are refused here
    if type(x) in (int, float, str, bytes):
        return float(x)
    raise TypeError


def _record_into(record: Any, batch: Batch) -> None:
    try:
        if type(record) not in _SEQUENCES or len(record) != 2:
            raise TypeError
        name, pair = record[0], record[1]
        if type(name) is bytes:
            name = name.decode()
        if type(name) is not str or type(pair) not in _SEQUENCES or len(pair) != 2:
            raise TypeError
        stamp, value = _number(pair[0]), _number(pair[1])
    except (TypeError, ValueError, OverflowError):
        batch.reject(BAD_RECORD)
        return
    batch.add(name, stamp, value)


class FrameReader:
    """One TCP connection's framing. `feed` returns False when the connection must close:
    a frame named a global or exceeded `max_frame` (`refusal` says which)."""

    def __init__(self, max_frame: int):
        self.max_frame = max_frame
        self._buf = bytearray()
        self.refusal: str | None = None

    def feed(self, data: bytes, batch: Batch) -> bool:
        buf = self._buf
        buf += data
        pos, end = 0, len(buf)
        keep_open = True
        while end - pos >= HEADER.size:
            (size,) = HEADER.unpack_from(buf, pos)
            if size > self.max_frame:
                batch.reject(FRAME_TOO_LARGE)
                self.refusal = f"a frame of {size} bytes is over horizon.max_frame_bytes"
                keep_open = False
                break
            if end - pos - HEADER.size < size:
                break
            start = pos + HEADER.size
            frame = bytes(buf[start : start + size])
            pos = start + size
            batch.units += 1
            try:
                data_ = safe_loads(frame)
            except ForbiddenGlobal as e:
                batch.reject(FORBIDDEN_GLOBAL)
                self.refusal = f"a frame names the global {e.qualname}, which is never loaded"
                keep_open = False
                break
            except UNPICKLE_ERRORS:
                batch.reject(BAD_FRAME)
                continue
            records_into(data_, batch)
        if keep_open:
            del buf[:pos]
        else:
            buf.clear()
        return keep_open

    def finish(self, batch: Batch) -> None:
        if self._buf:
            batch.reject(INCOMPLETE_FRAME)
            self._buf.clear()
