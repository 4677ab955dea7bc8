"""Graphs of series and anomalies, shared by the alerters and the web API."""

from skyline.plots.anomaly import anomaly_png

__all__ = ["anomaly_png"]
