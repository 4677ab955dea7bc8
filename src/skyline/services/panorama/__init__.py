"""Panorama: the one writer of anomaly events into SQL (and, later, queries over them)."""

from skyline.services.panorama.service import run

__all__ = ["run"]
