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
from skyline.store.cluster import ClusterStore


def _bulk(b: bytes) -> bytes:
    return b"$%d\r\n%b\r\n" % (len(b), b)


class StateStore:
    """`cluster`: on a Redis Cluster the states are SET on each metric's own master (a
    state shares its metric's hash tag; MSET across slots is refused there)."""

    def __init__(self, client: redis.Redis, *, batch: int = 2000,
                 cluster: ClusterStore | None = None) -> None:
        self.client = client
        self.batch = batch
        self.cluster = cluster

    def read(self, names: Sequence[str]) -> list[bytes | None]:
        if self.cluster is not None:
            return self.cluster.read(names, keys.analysis_state, tail=1).beside
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
        if self.cluster is not None:
            stored = self.cluster.set(names, blobs, keys.analysis_state)
            if stored != len(names):  # pragma: no cover - SET replaces any type
                raise redis.ResponseError(f"{len(names) - stored} states not stored")
            return
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
