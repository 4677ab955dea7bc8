"""Panorama: the one writer of anomaly events into SQL. The queries over them
(skyline.store.sql.queries) are served by the web app's /api/v1/anomalies and pages."""

from skyline.services.panorama.service import run

__all__ = ["run"]
