"""Request bodies: read with a size limit, and decompress without letting a small compressed
body expand past that limit (a gzip or snappy bomb)."""

from __future__ import annotations

import zlib

import cramjam
from starlette.requests import Request


class BodyTooLarge(Exception):
    """The body, as sent or decompressed, is over flux.max_body_bytes."""


class BadEncoding(Exception):
    """The body does not decompress; `reason` is the counter name (bad_gzip, bad_snappy)."""

    def __init__(self, reason: str, message: str):
        self.reason = reason
        super().__init__(message)


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refusing it as soon as it passes `limit` bytes, so a client cannot make
    us hold more than that in memory however long it streams."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


# bytes of compressed input handed to a decompressor at a time: what is left over when a
# member ends is at most this much, so walking many members costs linear time, not a copy of
# the rest of the body per member
_GZIP_STEP = 16 * 1024


def gunzip(data: bytes, limit: int, max_members: int = 64) -> bytes:
    """Decompress gzip (every member, as `gzip -c a b` makes) up to `limit` bytes of output
    and `max_members` members, walking the members by offset."""
    out: list[bytes] = []
    size = 0
    view = memoryview(data)
    pos, end = 0, len(data)
    members = 0
    try:
        while pos < end:
            members += 1
            if members > max_members:
                raise BadEncoding("bad_gzip", f"the gzip body has more than {max_members} "
                                  "members (flux.max_gzip_members)")
            d = zlib.decompressobj(wbits=31)
            while not d.eof:
                if pos >= end:
                    raise BadEncoding("bad_gzip", "the gzip body is truncated")
                step = view[pos:pos + _GZIP_STEP]
                pos += len(step)
                chunk = d.decompress(step, limit - size + 1)
                size += len(chunk)
                if size > limit or d.unconsumed_tail:
                    raise BodyTooLarge
                out.append(chunk)
            pos -= len(d.unused_data)  # the next member starts there
    except zlib.error as e:
        raise BadEncoding("bad_gzip", f"the body is not valid gzip: {e}") from None
    return b"".join(out)


def _snappy_length(data: bytes) -> int:
    """The uncompressed length a raw snappy block declares in its leading varint."""
    result = shift = 0
    for i, byte in enumerate(data[:5]):
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result
        shift += 7
        if i == 4:
            break
    raise BadEncoding("bad_snappy", "the body is not snappy block format")


def unsnappy(data: bytes, limit: int) -> bytes:
    """Decompress a raw snappy block (what Prometheus remote_write sends), checking the length
    it declares before allocating anything."""
    if _snappy_length(data) > limit:
        raise BodyTooLarge
    try:
        return bytes(cramjam.snappy.decompress_raw(data))
    except cramjam.DecompressionError as e:
        raise BadEncoding("bad_snappy", f"the body is not valid snappy: {e}") from None


def decode(data: bytes, content_encoding: str | None, limit: int,
           max_members: int = 64) -> bytes:
    """The body after its Content-Encoding (identity, gzip or snappy)."""
    enc = (content_encoding or "identity").strip().lower()
    if enc in ("", "identity"):
        return data
    if enc in ("gzip", "x-gzip"):
        return gunzip(data, limit, max_members)
    if enc == "snappy":
        return unsnappy(data, limit)
    raise BadEncoding("bad_encoding", f"unsupported Content-Encoding {content_encoding!r}: "
                      "use gzip, snappy or none")
