"""Boundary: hard threshold and drop-off-cliff rules (BOUNDARY_METRICS) on the metrics they
name, every BOUNDARY_OPTIMUM_RUN_DURATION, alerting on their own channels (docs/boundary.md)."""

from skyline.services.boundary.service import Boundary, BoundaryReport, run

__all__ = ["Boundary", "BoundaryReport", "run"]
