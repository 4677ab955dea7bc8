"""Ingest.submit judges each distinct name once and caches admitted names; it must decide
exactly as a plain loop over the points does (the reference below), whatever mix of bad
numbers, bad or skipped names, cardinality limits, quotas, index reloads and a full buffer."""

from __future__ import annotations

import math
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from skyline.ingest import Ingest
from skyline.ingest.guard import KnownMetrics
from skyline.settings import load_settings
from skyline.telemetry import Telemetry

NOW = 1_800_000_000.0
POOL = ["a", "b", "c", "d", "e", "f", "skip.x", "skip.keep", "bad name", ""]


class ListBuffer:
    def __init__(self, cap: int):
        self.cap, self.items = cap, []

    def __len__(self) -> int:
        return len(self.items)

    def add_many(self, names, ts, vs) -> int:
        n = min(max(0, self.cap - len(self.items)), len(names))
        self.items += list(zip(list(names)[:n], list(map(float, ts))[:n],
                               list(map(float, vs))[:n], strict=True))
        return n


def reference(ing: Ingest, names, ts, vs, quota):
    """The per-point loop Ingest.submit replaced."""
    s = ing.settings
    reasons: list[str | None] = []
    for t, v in zip(ts, vs, strict=True):
        reasons.append("bad_timestamp" if not math.isfinite(t) else "timestamp_too_old"
                       if t < NOW - s.ingest_max_age else "timestamp_in_future"
                       if t > NOW + s.ingest.max_future else "bad_value"
                       if not math.isfinite(v) else None)
    for i, name in enumerate(names):
        if reasons[i] is None:
            r = ing._name_verdict(name)
            if r is None:
                r = ing.known.admit(name, NOW)
                if r is None and quota is not None:
                    r = quota.admit(name, NOW)
            reasons[i] = r
    keep = [i for i, r in enumerate(reasons) if r is None]
    accepted = ing.buffer.add_many([names[i] for i in keep], [ts[i] for i in keep],
                                   [vs[i] for i in keep])
    for i in keep[accepted:]:
        reasons[i] = "buffer_full"
    return accepted, Counter(r for r in reasons if r is not None), reasons


_batch = st.lists(st.tuples(st.sampled_from(POOL),
                            st.sampled_from([NOW, NOW - 5, NOW - 1e6, NOW + 1e4, math.nan]),
                            st.sampled_from([1.0, 2.0, math.inf, math.nan])), max_size=12)


@settings(max_examples=400)
@given(st.lists(st.tuples(_batch, st.none() | st.lists(st.sampled_from(POOL[:6]), max_size=4)),
                min_size=1, max_size=5),
       st.sampled_from([0, 3, 6]), st.sampled_from([0, 2, 4]), st.sampled_from([1000, 0, 5]),
       st.booleans())
def test_submit_decides_as_the_per_point_loop(batches, max_metrics, max_new, cap, with_quota):
    s = load_settings(SKIP_LIST=["skip.**"], DO_NOT_SKIP_LIST=["skip.keep"],
                      MAX_METRICS=max_metrics, MAX_NEW_METRICS_PER_MINUTE=max_new)
    fast = Ingest(s, ListBuffer(cap), Telemetry("ingest", "t"))  # type: ignore[arg-type]
    slow = Ingest(s, ListBuffer(cap), Telemetry("ingest", "t"))  # type: ignore[arg-type]
    quotas = (KnownMetrics(2, 0), KnownMetrics(2, 0)) if with_quota else (None, None)
    for batch, reload in batches:
        if reload is not None:  # the runner reloads the metric index now and then
            fast.known.replace(reload)
            slow.known.replace(reload)
        names = [n for n, _, _ in batch]
        ts = [t for _, t, _ in batch]
        vs = [v for _, _, v in batch]
        got = fast.submit("p", names, ts, vs, now=NOW, with_reasons=True, quota=quotas[0])
        accepted, rejected, reasons = reference(slow, names, ts, vs, quotas[1])
        assert (got.accepted, got.rejected, got.reasons) == (accepted, rejected, reasons)
    assert fast.buffer.items == slow.buffer.items  # type: ignore[attr-defined]


def test_a_name_the_index_no_longer_holds_is_judged_again():
    """Once reloads have dropped a name (the roomba deleted its series), its next points
    spend the cardinality budget again, as if the name were new."""
    ing = Ingest(load_settings(MAX_METRICS=1), ListBuffer(1000),  # type: ignore[arg-type]
                 Telemetry("ingest", "t"))
    assert ing.submit("p", ["a"], [NOW], [1.0], now=NOW).accepted == 1
    ing.known.replace([])  # "a" was admitted since the last reload: kept
    assert ing.submit("p", ["a"], [NOW], [1.0], now=NOW).accepted == 1
    ing.known.replace([])
    ing.known.replace([])  # now gone from the index
    assert ing.submit("p", ["b"], [NOW], [1.0], now=NOW).accepted == 1
    assert ing.submit("p", ["a"], [NOW], [1.0], now=NOW).rejected == {"max_metrics": 1}
