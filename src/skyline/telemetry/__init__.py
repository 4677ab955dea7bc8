"""Self-metrics: every component's own counters and gauges, and heartbeats."""

from skyline.telemetry.counters import Telemetry

__all__ = ["Telemetry"]
