"""What every protocol's parser produces, and how it is submitted to the shared write path.

`Points` are the points a request carries, each with the number of the item it came from
(a JSON metric, a remote_write series, an Influx line, an OTLP data point), so a refusal can be
reported against what the client sent; `errors` are items refused while parsing, `ignored`
what is dropped on purpose and only counted (Prometheus staleness markers, Influx string
fields).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from skyline.ingest import Ingest

FloatSeq = Sequence[float] | npt.NDArray[np.float64]
#: refusals listed in a 207/400 body; the counters have them all
MAX_REPORTED = 100


@dataclass
class Points:
    total: int = 0
    index: list[int] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    timestamps: FloatSeq = field(default_factory=list)
    values: FloatSeq = field(default_factory=list)
    errors: list[tuple[int, str]] = field(default_factory=list)  # (item, reason)
    ignored: Counter[str] = field(default_factory=Counter)


@dataclass
class Refusal:
    item: int
    reason: str
    metric: str | None = None

    def as_json(self) -> dict[str, object]:
        out: dict[str, object] = {"item": self.item, "reason": self.reason}
        if self.metric is not None:
            out["metric"] = self.metric
        return out


@dataclass
class Outcome:
    received: int  # points offered to the write path plus items refused while parsing
    accepted: int
    refused: list[Refusal]
    buffer_full: bool

    @property
    def reasons(self) -> Counter[str]:
        return Counter(r.reason for r in self.refused)


def submit(ingest: Ingest, protocol: str, points: Points, prefix: str, now: float) -> Outcome:
    """Hand the points to the write path under the request's namespace and gather what was
    refused, in item order. Parse-time refusals and ignored inputs are counted here; the write
    path counts its own."""
    for reason, n in Counter(r for _, r in points.errors).items():
        ingest.reject(protocol, reason, n)
    for reason, n in points.ignored.items():
        ingest.reject(protocol, reason, n)
    names = [prefix + n for n in points.names] if prefix else points.names
    result = ingest.submit(protocol, names, points.timestamps, points.values, now=now,
                           with_reasons=True)
    refused = [Refusal(i, r) for i, r in points.errors]
    buffer_full = False
    if result.accepted < result.received:
        reasons = result.reasons or []
        for item, name, why in zip(points.index, names, reasons, strict=True):
            if why is not None:
                refused.append(Refusal(item, why, name))
        buffer_full = "buffer_full" in result.rejected
        refused.sort(key=lambda r: r.item)
    return Outcome(result.received + len(points.errors), result.accepted, refused, buffer_full)


def summary(outcome: Outcome, limit: int = MAX_REPORTED) -> dict[str, object]:
    """The body of a 207 or 400: counts, then the first refusals."""
    return {
        "accepted": outcome.accepted,
        "rejected": len(outcome.refused),
        "reasons": dict(outcome.reasons),
        "errors": [r.as_json() for r in outcome.refused[:limit]],
    }
