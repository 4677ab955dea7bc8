"""PNG graphs of values at the edge of float range: a valid metric may hold them, and the
graph endpoint answered 500 for them (matplotlib cannot scale an axis whose span overflows)."""

from __future__ import annotations

import numpy as np
import pytest

from skyline.core.events import AnomalyEvent
from skyline.plots import anomaly_png
from skyline.plots.series import series_png

PNG = b"\x89PNG\r\n\x1a\n"
NOW = 1_700_000_000.0


def _event(value: float, window: list[float] | None) -> AnomalyEvent:
    t = NOW - 60.0 * np.arange(len(window or []) + 1)[::-1]
    return AnomalyEvent.build(
        metric="edge.values", timestamp=NOW, value=value, score=0.9, source="analyzer",
        status="anomalous", triggered=(), results=(), created=NOW,
        window_timestamps=t if window else None,
        window_values=np.array([*window, value]) if window else None)


@pytest.mark.parametrize(("value", "window"), [
    (-1e308, None),  # one point near -max: the axis around it overflows
    (1.7e308, [-1.7e308, 5.0, 0.0]),  # a span of more than the largest float
    (100.0, [1.0, 2.0, 3.0]),
])
def test_anomaly_png_draws_values_near_float_max(value: float, window: list[float] | None
                                                 ) -> None:
    assert anomaly_png(_event(value, window)).startswith(PNG)


def test_series_png_draws_values_near_float_max() -> None:
    t = NOW - 60.0 * np.arange(4)[::-1]
    v = np.array([-1.7e308, 5.0, 0.0, 1.7e308])
    png = series_png(t, v, title="edge", anomalous=np.array([False, False, False, True]),
                     alerts=[float(t[-1])])
    assert png.startswith(PNG)
