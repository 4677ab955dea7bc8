"""Graphite pickle over TCP, as carbon-relay sends it.

A stream of frames: a 4-byte big-endian length, then a pickle of a list of
`(name, (timestamp, value))`. Input from the network is never given to `pickle.loads`:

- a pre-scan walks the frame's opcodes first (`prescan`): only the opcodes that build
  builtin values, marks and the memo are allowed, and every memo index must be smaller than
  the frame. CPython's unpickler sizes its memo table from the largest index a frame names,
  so without this check a 6-byte frame (`}r` and a 4-byte index) makes it allocate and zero
  up to 64 GiB before anything else happens;
- the unpickler then refuses every global (class or function), which is what would let a
  pickle run code, so a frame can only build builtin values; anything that is not a list of
  such records is refused record by record.

A frame that fails either check, or is over `max_frame` bytes, is counted, logged and ends the
connection: the sender is not one we understand, and the next frame would be the same.
"""

from __future__ import annotations

import io
import pickle
import re
import struct
from typing import Any

import numpy as np

from skyline.ingest.batch import Batch

HEADER = struct.Struct("!I")

# rejection reasons (counted as rejected_pickle_<reason>)
FORBIDDEN_GLOBAL = "forbidden_global"
FORBIDDEN_OPCODE = "forbidden_opcode"  # an opcode outside the allow-list (prescan)
MEMO_INDEX = "memo_index"  # a memo index the frame is too short to need (prescan)
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


# The opcode allow-list: what each allowed opcode is followed by. >0: that many bytes; the
# others below; an opcode absent from the table is refused. At GLOBAL and STACK_GLOBAL the
# scan ends: what comes before has passed, and the unpickler stops there, in find_class,
# which refuses the global by name (for the log).
_LINE, _LEN1, _LEN4, _LEN8 = -1, -3, -4, -5
_ARGS: list[int | None] = [None] * 256
for _code in b"(.012Nadeltsu]})\x85\x86\x87\x88\x89\x8f\x90\x91\x94":
    _ARGS[_code] = 0
_GLOBAL = -6
_ARGS[ord("c")] = _ARGS[0x93] = _GLOBAL
for _opcode, _arg in ((b"G", 8), (b"J", 4), (b"K", 1), (b"M", 2), (b"h", 1), (b"j", 4), (b"q", 1),
                  (b"r", 4), (b"\x80", 1), (b"\x95", 8),
                  (b"F", _LINE), (b"I", _LINE), (b"L", _LINE), (b"S", _LINE), (b"V", _LINE),
                  (b"g", _LINE), (b"p", _LINE),
                  (b"U", _LEN1), (b"C", _LEN1), (b"\x8a", _LEN1), (b"\x8c", _LEN1),
                  (b"T", _LEN4), (b"X", _LEN4), (b"B", _LEN4), (b"\x8b", _LEN4),
                  (b"\x8d", _LEN8), (b"\x8e", _LEN8), (b"\x96", _LEN8)):
    _ARGS[_opcode[0]] = _arg
_LONG_BINPUT, _PUT = ord("r"), ord("p")
_STRINGS = frozenset(b"X\x8c")  # BINUNICODE, SHORT_BINUNICODE: what names are written as
# after a record's name: its memo put, (timestamp, value) as two numbers and a tuple, and the
# record's tuple, each with its memo put (BINPUT, LONG_BINPUT with its index, or MEMOIZE)
_PUT_ANY = rb"(?:q.|r(....)|\x94)"
_NUMBER = rb"(?:G.{8}|J.{4}|M..|K.)"
_RECORD_TAIL = re.compile(_PUT_ANY + _NUMBER + _NUMBER + rb"\x86" + _PUT_ANY + rb"\x86"
                          + _PUT_ANY, re.DOTALL).match
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")


def prescan(frame: bytes) -> str | None:
    """None when every opcode is allowed and every memo index is below the frame's length;
    else why not (a rejection reason). Runs at Python speed: about 0.6 us of CPU per point of
    a carbon frame (protocol 2; 0.4 us for protocol 4), five times what unpickling costs;
    what it saves is unbounded."""
    args = _ARGS
    n = len(frame)
    u32 = _U32.unpack_from
    find = frame.find
    pos = 0
    try:
        while pos < n:
            op = frame[pos]
            arg = args[op]
            pos += 1
            if arg == 0:
                continue
            if arg is None:
                return FORBIDDEN_OPCODE
            if arg > 0:
                if op == _LONG_BINPUT and u32(frame, pos)[0] >= n:
                    return MEMO_INDEX
                pos += arg
            elif arg == _LEN4 or arg == _LEN1:
                pos += 4 + u32(frame, pos)[0] if arg == _LEN4 else 1 + frame[pos]
                if op in _STRINGS:
                    # a string starts most records: the rest of a typical record (memo put,
                    # two numbers, the tuples, their memo puts) is checked in one C-speed
                    # match instead of eight turns of this loop
                    m = _RECORD_TAIL(frame, pos)
                    if m is not None:
                        for idx in m.groups():
                            if idx is not None and u32(idx)[0] >= n:
                                return MEMO_INDEX
                        pos = m.end()
            elif arg == _LINE:
                end = find(b"\n", pos)
                if end < 0:
                    return None  # cut short: the unpickler refuses it (bad_frame)
                if op == _PUT and end - pos > 9 or op == _PUT and int(frame[pos:end]) >= n:
                    return MEMO_INDEX
                pos = end + 1
            elif arg == _GLOBAL:
                return None
            else:
                pos += 8 + _U64.unpack_from(frame, pos)[0]
    except (struct.error, IndexError, ValueError):
        return None  # cut short or malformed: the unpickler refuses it (bad_frame)
    return None


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

    @property
    def buffered(self) -> int:
        return len(self._buf)

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
            refused = prescan(frame)
            if refused is not None:
                batch.reject(refused)
                self.refusal = ("a frame uses a pickle opcode outside the allow-list"
                                if refused == FORBIDDEN_OPCODE else
                                "a frame names a memo index larger than itself (a memo bomb)")
                keep_open = False
                break
            try:
                data_ = safe_loads(frame)
            except ForbiddenGlobal as e:
                batch.reject(FORBIDDEN_GLOBAL)
                self.refusal = f"a frame names the global {e.qualname}, which is never loaded"
                keep_open = False
                break
            except UNPICKLE_ERRORS as e:
                # not a pickle we can read: the stream is not one we understand, and going
                # on would only repeat the work on whatever follows
                batch.reject(BAD_FRAME)
                self.refusal = f"a frame is not a readable pickle ({type(e).__name__})"
                keep_open = False
                break
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
