"""Thunder: Skyline watching itself, alerting straight to the channels (docs/thunder.md)."""

from skyline.services.thunder.service import Thunder, run

__all__ = ["Thunder", "run"]
