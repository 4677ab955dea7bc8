"""Analyzers that share a Redis Cluster's metrics: each takes an equal, contiguous run of the
metric index's shards (keys.INDEX_SHARDS, 16 slots each), so every metric is analysed by one
of them per run and reads mostly from the masters that hold its run.

Membership is a lease: at the start of each run an analyzer renews its entry in one sorted
set (keys.ANALYZER_MEMBERS: member id -> expiry), drops expired entries and reads the members
left, all in one script on Redis's own clock (hosts' clocks never compared). A member that
stops renewing (killed, partitioned) expires after `ttl` and the others take its shards at
their next run; one that stops cleanly leaves at once. Two analyzers may both judge a metric,
or neither, only in the run during which the membership changes.
"""

from __future__ import annotations

import os
import socket
import uuid
from typing import cast

import redis

from skyline.store import keys

# KEYS[1] the members; ARGV[1] this member, ARGV[2] its lease in milliseconds
_RENEW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) * 2)
return redis.call('ZRANGE', KEYS[1], 0, -1)
"""


def share(index: int, members: int, shards: int = keys.INDEX_SHARDS) -> range:
    """The run of shards member `index` of `members` takes: equal, contiguous, covering all."""
    return range(index * shards // members, (index + 1) * shards // members)


class Leases:
    def __init__(self, client: redis.Redis, ttl: float, member: str | None = None) -> None:
        self.client = client
        self.ttl = ttl
        self.member = member or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.members: list[str] = []

    def renew(self) -> range:
        """Renew this analyzer's lease; the shards it takes this run."""
        got = cast(list[bytes], self.client.eval(_RENEW, 1, keys.ANALYZER_MEMBERS,
                                                 self.member, int(self.ttl * 1000)))
        self.members = sorted(m.decode() if isinstance(m, bytes) else str(m) for m in got)
        return share(self.members.index(self.member), len(self.members))

    def leave(self) -> None:
        self.client.zrem(keys.ANALYZER_MEMBERS, self.member)
