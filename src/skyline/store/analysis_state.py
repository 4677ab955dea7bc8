"""Analysis state records in the hot store: one opaque binary value per metric
(keys.analysis_state). The analyzer reads them with the series, in the same round trips
(FlatReader.read(beside=keys.analysis_state)), and writes a chunk of them with one MSET packed
here (redis-py would spend more Python per key than Redis spends storing it). The record's
layout is skyline.analysis.state; this module only moves bytes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import redis
from redis.connection import AbstractConnection

from skyline.store import keys


def _bulk(b: bytes) -> bytes:
    return b"$%d\r\n%b\r\n" % (len(b), b)


class StateStore:
    def __init__(self, client: redis.Redis, *, batch: int = 2000) -> None:
        self.client = client
        self.batch = batch

    def read(self, names: Sequence[str]) -> list[bytes | None]:
        out: list[bytes | None] = []
        for lo in range(0, len(names), self.batch):
            chunk = [keys.analysis_state(n) for n in names[lo:lo + self.batch]]
            got = cast(list[bytes | None], self.client.mget(chunk))
            # a value that is not a string (WRONGTYPE is per key in MGET: None) is rebuilt
            out += [g if isinstance(g, bytes) else None for g in got]
        return out

    def write(self, names: Sequence[str], blobs: Sequence[bytes]) -> None:
        if len(names) != len(blobs):
            raise ValueError("one blob per name")
        pool = getattr(self.client, "connection_pool", None)
        for lo in range(0, len(names), self.batch):
            part, values = names[lo:lo + self.batch], blobs[lo:lo + self.batch]
            if pool is None:  # pragma: no cover - exotic clients
                self.client.mset({keys.analysis_state(n): b
                                  for n, b in zip(part, values, strict=True)})
                continue
            command = b"*%d\r\n$4\r\nMSET\r\n%b" % (2 * len(part) + 1, b"".join(
                _bulk(keys.analysis_state(n).encode()) + _bulk(b)
                for n, b in zip(part, values, strict=True)))
            conn = pool.get_connection()
            try:
                if not isinstance(conn, AbstractConnection):  # pragma: no cover
                    raise TypeError("StateStore needs a plain redis-py connection")
                conn.send_packed_command([command])
                reply = conn.read_response()
                if isinstance(reply, redis.ResponseError):  # pragma: no cover - MSET only OKs
                    raise reply
            except BaseException:
                conn.disconnect()
                raise
            finally:
                pool.release(conn)
