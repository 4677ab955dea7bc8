"""Luminosity: which other metrics moved with each anomaly, and incidents that group
several metrics' incidents (docs/luminosity.md)."""

from skyline.services.luminosity.service import run

__all__ = ["run"]
