"""msgpack over UDP, as upstream Horizon's UDP_PORT: each datagram holds `[name, [timestamp,
value]]` (upstream sent exactly one; several packed one after another are accepted too)."""

from __future__ import annotations

from typing import Any

import msgpack

from skyline.ingest.batch import Batch

# rejection reasons (counted as rejected_msgpack_<reason>)
BAD_DATAGRAM = "bad_datagram"  # not msgpack
BAD_RECORD = "bad_record"  # msgpack, but not [name, [timestamp, value]]

_SEQUENCES = (list, tuple)
_NUMBERS = (int, float)
# what malformed input can raise from the C unpacker besides its own ValueErrors
_UNPACK_ERRORS = (ValueError, TypeError, OverflowError, MemoryError, RecursionError)


def _record_into(obj: Any, batch: Batch) -> None:
    if type(obj) in _SEQUENCES and len(obj) == 2:
        name, pair = obj[0], obj[1]
        if type(name) is bytes:
            try:
                name = name.decode()
            except UnicodeDecodeError:
                name = None
        if type(name) is str and type(pair) in _SEQUENCES and len(pair) == 2:
            stamp, value = pair[0], pair[1]
            if type(stamp) in _NUMBERS and type(value) in _NUMBERS:
                try:
                    batch.add(name, float(stamp), float(value))
                    return
                except OverflowError:  # an integer beyond float range
                    pass
    batch.reject(BAD_RECORD)


def parse_datagram(data: bytes, batch: Batch) -> None:
    try:
        obj = msgpack.unpackb(data, raw=False)
    except msgpack.ExtraData as e:
        _record_into(e.unpacked, batch)
        unpacker = msgpack.Unpacker(raw=False, max_buffer_size=max(len(e.extra), 1))
        unpacker.feed(e.extra)
        whole = 0  # bytes of the complete objects
        try:
            for obj in unpacker:
                _record_into(obj, batch)
                whole = unpacker.tell()
        except _UNPACK_ERRORS:
            batch.reject(BAD_DATAGRAM)
            return
        if whole < len(e.extra):  # an object cut off at the end
            batch.reject(BAD_DATAGRAM)
        return
    except _UNPACK_ERRORS:
        batch.reject(BAD_DATAGRAM)
        return
    _record_into(obj, batch)
