"""Flux: HTTP ingest on the web app's port (upstream flux's JSON API, Prometheus
remote_write, InfluxDB line protocol, OTLP/HTTP metrics). docs/flux.md describes it."""

from skyline.services.flux.routes import routers
from skyline.services.flux.service import run

__all__ = ["routers", "run"]
