"""Horizon: Graphite plaintext (TCP and UDP) and pickle, msgpack over UDP and StatsD
listeners, all feeding the shared write path (skyline.ingest)."""

from skyline.services.horizon.service import (
    MSGPACK,
    PICKLE,
    PLAINTEXT_TCP,
    PLAINTEXT_UDP,
    STATSD,
    run,
)

__all__ = ["MSGPACK", "PICKLE", "PLAINTEXT_TCP", "PLAINTEXT_UDP", "STATSD", "run"]
