"""A PNG of an anomaly event's window snapshot with the anomalous point marked.

matplotlib's object API (Figure + the Agg canvas) rather than pyplot: pyplot keeps global
state that is not safe across threads, and callers render in worker threads so the event
loop never waits on drawing. A lock serialises drawing anyway, because matplotlib's font
and text caches are shared.
"""

from __future__ import annotations

import io
import threading
from datetime import UTC, datetime
from typing import Any

import numpy as np

from skyline.core.events import AnomalyEvent

_LOCK = threading.Lock()
DPI = 100
# matplotlib cannot scale an axis whose span overflows a float (values near +-1.8e308 are
# valid points): such values are drawn at this bound (the API and pages show the real one)
PLOT_LIMIT = 1e300


def drawable(values: Any) -> Any:
    """`values` clipped to what an axis can span."""
    return np.clip(np.asarray(values, dtype=float), -PLOT_LIMIT, PLOT_LIMIT)


def anomaly_png(event: AnomalyEvent, *, width: int = 800, height: int = 300) -> bytes:
    """The graph as PNG bytes: the window as a line, mean and +-3 sigma bands (as upstream's
    PLOT_REDIS_DATA), the anomalous point in red. An event without a window gets a graph of
    its one point."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.dates import date2num
    from matplotlib.figure import Figure

    ts, vs = event.window_arrays()
    finite = np.isfinite(ts) & np.isfinite(vs)
    ts, vs = ts[finite], drawable(vs[finite])
    with _LOCK:
        fig = Figure(figsize=(width / DPI, height / DPI), dpi=DPI)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot(1, 1, 1)
        when = date2num([datetime.fromtimestamp(float(t), UTC) for t in ts])
        if len(vs):
            ax.plot(when, vs, color="#1f77b4", linewidth=1.0, label="value")
            with np.errstate(over="ignore", invalid="ignore"):
                mean = float(np.mean(vs))
                sigma = float(np.std(vs))
            if np.isfinite(mean):
                ax.axhline(mean, color="#888888", linewidth=0.8, linestyle="--", label="mean")
            if np.isfinite(mean) and np.isfinite(sigma) and sigma > 0:
                ax.axhspan(mean - 3 * sigma, mean + 3 * sigma, color="#cccccc", alpha=0.3,
                           label="±3σ")
        at = float(date2num(datetime.fromtimestamp(float(event.timestamp), UTC)))
        colour = "#d62728" if event.status == "anomalous" else "#2ca02c"
        ax.scatter([at], [float(drawable(event.value))], color=colour, s=40, zorder=5,
                   label=event.status)
        ax.axvline(at, color=colour, linewidth=0.8, alpha=0.6)
        title = event.metric if len(event.metric) <= 90 else event.metric[:87] + "..."
        return finish_png(fig, ax, title)


def finish_png(fig: Any, ax: Any, title: str) -> bytes:
    """Time axis in UTC, title, legend, and the PNG bytes: what every Skyline graph shares.
    Call it holding _LOCK."""
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter

    ax.xaxis_date(tz=UTC)
    locator = AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    # A title is drawn as text, never parsed: matplotlib's mathtext would read `$` in a
    # metric name as markup, so it is turned off for this text.
    ax.set_title(title, fontsize=9, usetex=False, parse_math=False)
    ax.set_xlabel("UTC", fontsize=8)
    ax.tick_params(labelsize=8)
    ax.grid(True, linewidth=0.3)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
