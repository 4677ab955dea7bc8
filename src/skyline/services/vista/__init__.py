"""Vista: pulls metrics Skyline is not sent from remote Graphite and Prometheus servers
(docs/vista.md)."""

from skyline.services.vista.service import run

__all__ = ["run"]
