"""The anomaly event contract and the Redis stream that carries it."""

from skyline.events.anomaly import AlgorithmResult, AnomalyEvent, event_id

__all__ = ["AlgorithmResult", "AnomalyEvent", "event_id"]
