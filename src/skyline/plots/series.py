"""A PNG of a whole series with the points judged anomalous marked (crucible).

Same approach as anomaly.py: matplotlib's object API on the Agg canvas, under its lock.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt

from skyline.core.types import FloatArray
from skyline.plots.anomaly import _LOCK, DPI, drawable, finish_png


def series_png(timestamps: FloatArray, values: FloatArray, *, title: str,
               anomalous: npt.NDArray[np.bool_] | None = None,
               alerts: Sequence[float] = (), recovered: Sequence[float] = (),
               width: int = 1200, height: int = 400) -> bytes:
    """The series as a line; anomalous points as red dots; the points where an event (an
    alert) would have fired as red triangles pointing down; recoveries as green ones up."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    when = np.array([datetime.fromtimestamp(float(t), UTC) for t in timestamps])
    index = {float(t): i for i, t in enumerate(timestamps)}
    values = drawable(values)
    with _LOCK:
        fig = Figure(figsize=(width / DPI, height / DPI), dpi=DPI)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot(1, 1, 1)
        ax.plot(when, values, color="#1f77b4", linewidth=0.8, label="value")
        if anomalous is not None and anomalous.any():
            ax.scatter(when[anomalous], values[anomalous], color="#d62728", s=12, zorder=4,
                       label=f"anomalous ({int(anomalous.sum())})")
        for marks, colour, marker, label in ((alerts, "#d62728", "v", "event (alert)"),
                                             (recovered, "#2ca02c", "^", "recovered")):
            at = [index[float(t)] for t in marks if float(t) in index]
            if at:
                ax.scatter(when[at], values[at], marker=marker, s=70, color=colour,
                           edgecolors="black", linewidths=0.5, zorder=5,
                           label=f"{label} ({len(at)})")
        shown = title if len(title) <= 120 else title[:117] + "..."
        return finish_png(fig, ax, shown)
