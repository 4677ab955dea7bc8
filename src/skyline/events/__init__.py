"""The anomaly event contract (its type lives in core, so the store can persist it) and the
Redis stream that carries it."""

from skyline.core.events import AlgorithmResult, AnomalyEvent, event_id, pack_window, unpack_window

__all__ = ["AlgorithmResult", "AnomalyEvent", "event_id", "pack_window", "unpack_window"]
