"""Connecting to the hot store: external Redis from REDIS_URL, else the embedded server."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from skyline.core.errors import ClusterUnsupported, StoreUnavailable
from skyline.settings import Settings
from skyline.settings.show import mask_url
from skyline.store.embedded import EmbeddedRedis

log = logging.getLogger(__name__)

CONNECTION_ERRORS = (redis.ConnectionError, redis.TimeoutError, OSError)


@dataclass
class RedisHandle:
    client: redis.Redis
    url: str  # password masked
    embedded: EmbeddedRedis | None

    def close(self, *, stop_embedded: bool) -> None:
        self.client.close()
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
    try:
        refuse_cluster(client, handle.url)
    except ClusterUnsupported:
        client.close()
        raise
    return handle


def refuse_cluster(client: redis.Redis, url: str) -> None:
    """Raise ClusterUnsupported when the server is a cluster node (INFO cluster says so)."""
    try:
        info = client.info("cluster")
    except redis.ResponseError:  # INFO restricted by an ACL: MOVED replies are caught later
        return
    if int(info.get("cluster_enabled", 0) or 0):
        raise ClusterUnsupported(url, "INFO cluster: cluster_enabled:1")


@contextmanager
def redis_session(settings: Settings) -> Iterator[RedisHandle]:
    """For short commands: attach (or start and later stop) the hot store."""
    handle = open_redis(settings)
    started = handle.embedded is not None and handle.embedded.started_here
    try:
        yield handle
    finally:
        handle.close(stop_embedded=started)
