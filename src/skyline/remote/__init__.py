"""Pulling series from a remote Graphite or Prometheus: one client, with its limits, counting
and backoff, for every component that needs history it was not sent (Vista, Mirage)."""

from skyline.remote.client import Remote, RemoteClient, fetch_blocking, one_series
from skyline.remote.parse import BadBody, RemoteSeries, graphite_render, prometheus_matrix

__all__ = ["BadBody", "Remote", "RemoteClient", "RemoteSeries", "fetch_blocking",
           "graphite_render", "one_series", "prometheus_matrix"]
