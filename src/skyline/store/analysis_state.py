"""Analysis state records in the hot store: one opaque binary value per metric
(keys.analysis_state), read and written a chunk of metrics at a time (one MGET / MSET per
`batch` metrics, not a round trip per metric). The record's layout is skyline.analysis.state;
this module only moves bytes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import redis

from skyline.store import keys


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
        for lo in range(0, len(names), self.batch):
            mapping = {keys.analysis_state(n): b
                       for n, b in zip(names[lo:lo + self.batch], blobs[lo:lo + self.batch],
                                       strict=True)}
            self.client.mset(mapping)
