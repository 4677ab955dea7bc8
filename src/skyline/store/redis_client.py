"""Connecting to the hot store: external Redis from REDIS_URL, else the embedded server."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import cast

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from skyline.core.errors import ClusterUnsupported, StoreUnavailable
from skyline.settings import Settings
from skyline.settings.show import mask_url
from skyline.store.cluster import ClusterStore, is_cluster
from skyline.store.embedded import EmbeddedRedis

log = logging.getLogger(__name__)

# Redis unreachable, for now: the caller backs off and tries again. On a cluster, also a
# cluster that is down or re-mapping slots during a failover (redis-py's cluster client)
CONNECTION_ERRORS = (redis.ConnectionError, redis.TimeoutError, OSError,
                     redis.exceptions.ClusterDownError, redis.exceptions.TryAgainError,
                     redis.exceptions.SlotNotCoveredError)


@dataclass
class RedisHandle:
    client: redis.Redis
    url: str  # password masked
    embedded: EmbeddedRedis | None
    #: set when REDIS_URL names a node of a Redis Cluster: the bulk reads and writes of the
    #: hot store go through it (grouped by master); `client` is then a redis-py RedisCluster,
    #: which routes each single-key command and pipeline by slot
    cluster: ClusterStore | None = None

    def close(self, *, stop_embedded: bool) -> None:
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()
        if self.embedded is not None and stop_embedded:
            self.embedded.shutdown()


def make_client(url: str, timeout: float) -> redis.Redis:
    return redis.Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        health_check_interval=30,
        # a blip is retried here; a real outage surfaces fast to the caller's own backoff
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 2),
    )


def make_cluster_client(url: str, timeout: float,
                        seeds: Sequence[tuple[str, int]] = ()) -> redis.Redis:
    """redis-py's cluster client for the single-key commands (streams, hashes, heartbeats):
    it learns the slot map from the node `url` names (or any of `seeds`) and follows
    MOVED/ASK. Typed as a Redis: it answers the commands the cluster-ready components send
    (a multi-key command across slots is refused by the cluster, never half done)."""
    from redis.cluster import ClusterNode

    startup = [ClusterNode(h, p) for h, p in seeds]
    return cast(redis.Redis, redis.RedisCluster.from_url(
        url, socket_timeout=timeout, socket_connect_timeout=timeout,
        **({"startup_nodes": startup} if startup else {})))


def get_many(client: redis.Redis, names: list[str]) -> list[bytes | None]:
    """The values of several keys in one round trip: MGET on one Redis; on a cluster, where
    MGET needs every key in one slot, pipelined GETs (the cluster client sends each master
    its share at once)."""
    if not names:
        return []
    if isinstance(client, redis.RedisCluster):
        pipe = client.pipeline(transaction=False)
        for name in names:
            pipe.get(name)
        return cast(list[bytes | None], pipe.execute())
    return cast(list[bytes | None], client.mget(names))


def connect_url(url: str, timeout: float) -> tuple[redis.Redis, ClusterStore | None]:
    """A client for `url` and, when it names a cluster node, the cluster store beside it
    (an analyzer worker process connects with this)."""
    client = make_client(url, timeout)
    if not is_cluster(client):
        return client, None
    client.close()
    return make_cluster_client(url, timeout), ClusterStore.from_url(url, timeout)


def open_redis(settings: Settings, *, wait: bool = False) -> RedisHandle:
    """Connect, starting the embedded server when no REDIS_URL is set.

    With `wait` the first PING is not required to succeed (long-running services retry with
    backoff); otherwise an unreachable server raises StoreUnavailable naming the URL.
    """
    embedded = None
    if settings.REDIS_URL is not None:
        url = settings.REDIS_URL.get_secret_value()
    else:
        embedded = EmbeddedRedis(settings.data_dir, settings.redis.socket_name)
        embedded.start()
        url = embedded.url
    client = make_client(url, settings.redis.connect_timeout)
    handle = RedisHandle(client, mask_url(url), embedded)
    try:
        client.ping()
    except CONNECTION_ERRORS as e:
        if wait:  # the service's own backoff retries; the flat reader refuses MOVED later
            return handle
        client.close()
        raise StoreUnavailable("Redis", handle.url, str(e) or type(e).__name__) from None
    if is_cluster(client):
        client.close()
        timeout = settings.redis.connect_timeout
        try:
            handle.client = make_cluster_client(url, timeout)
        except (*CONNECTION_ERRORS, redis.exceptions.RedisClusterException) as e:
            raise StoreUnavailable("Redis Cluster", handle.url, str(e) or type(e).__name__
                                   ) from None
        handle.cluster = ClusterStore.from_url(url, timeout)
        log.info("the hot store is a Redis Cluster (%d masters)",
                 len(handle.cluster.refresh().masters))
    return handle


def refuse_on_cluster(handle: RedisHandle, who: str) -> None:
    """Raise ClusterUnsupported when the hot store is a cluster and `who` cannot work on one
    (it would read only the slots of one node)."""
    if handle.cluster is not None:
        raise ClusterUnsupported(handle.url, "its keys are spread over the masters", who)


@contextmanager
def redis_session(settings: Settings) -> Iterator[RedisHandle]:
    """For short commands: attach (or start and later stop) the hot store."""
    handle = open_redis(settings)
    started = handle.embedded is not None and handle.embedded.started_here
    try:
        yield handle
    finally:
        handle.close(stop_embedded=started)
