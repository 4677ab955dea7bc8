"""Planted incidents through the analysis pipeline with a detector (default: learning):
200 seeded minute series per class, two and a half days each (the learning detector's warm-up
is a day), side by side through Pipeline.advance, the same per-point stepping the live
analyzer and replay run (detector, incident machine, learning).

Classes (a third each noise, a daily sine, heavy-tailed noise; sigma is the series' standard
deviation over its first day, as tests/algorithm_data.py measures it):
- normal: nothing planted; a false positive is an anomalous event in the last 2 h (where the
  other classes plant theirs); also counted: series with any anomalous event in the 1.5 days
  after the warm-up;
- spike / drop: 3 points 5-10 sigma up / down, 2 h before the end;
- shift: the level moves 3-6 sigma up (or down) 2 h before the end and stays;
- repeat: a 3-point spike of 6-10 sigma, then the same again 15-60 minutes after it ended;
  found when both are reported;
- drift: from 2 h before the end, +1.5 % a minute until 10 % above the history's maximum;
- outage: a ~900/s series drops to 0 6 h before the end and stays: counted when it is ever
  reported `recovered` while still at 0 (must be 0), and whether it was found.

    .venv/bin/python bench/planted.py [--detector learning|score|consensus] [--per-class 200]

Human lines on stdout, the last one JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from skyline.analysis.config import from_settings
from skyline.analysis.pipeline import Points, RunResult
from skyline.settings import load_settings

STEP = 60.0
DAYS = 2.5
T0 = 1_700_000_000.0


def base(rng: np.random.Generator, kind: int, n: int) -> tuple[np.ndarray, float]:
    """A normal series as tests/algorithm_data.py's days, over several days: 0 noise around a
    level, 1 a daily sine, 2 heavy-tailed (Laplace) noise; and sigma, its standard deviation
    over the first day (what the planted anomalies are measured in, as that suite)."""
    i = np.arange(n)
    scale = rng.uniform(1, 5)
    level = rng.uniform(50, 500)
    if kind == 2:
        v = level + rng.laplace(0, scale, n)
    else:
        v = level + rng.normal(0, scale, n)
    if kind == 1:
        v += rng.uniform(5, 30) * np.sin(2 * np.pi * (i / 1440 + rng.uniform()))
    return v, float(np.std(v[:1440]))


def planted(cls: str, rng: np.random.Generator, kind: int, n: int
            ) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Values and the [start, end] index ranges where the anomaly must be reported."""
    v, sigma = base(rng, kind, n)
    a = n - 120
    if cls == "normal":
        return v, []
    if cls in ("spike", "drop"):
        k = rng.uniform(5, 10) * sigma * (1 if cls == "spike" else -1)
        v[a:a + 3] += k
        return v, [(a, a + 2)]
    if cls == "shift":
        k = rng.uniform(3, 6) * sigma * rng.choice([-1, 1])
        v[a:] += k
        return v, [(a, a + 10)]
    if cls == "repeat":
        k = rng.uniform(6, 10) * sigma
        b = a + 3 + int(rng.integers(15, 61))
        v[a:a + 3] += k
        v[b:b + 3] += k
        return v, [(a, a + 2), (b, b + 2)]
    if cls == "drift":
        top = v[:a].max()
        start = v[a - 1]
        ramp = start * 1.015 ** np.arange(1, n - a + 1)
        v[a:] = np.minimum(ramp, top * 1.1)
        return v, [(a, n - 1)]
    if cls == "outage":
        v = v * 9
        a = n - 360
        v[a:] = 0.0
        return v, [(a, a + 5)]
    raise ValueError(cls)


CLASSES = ("normal", "spike", "drop", "shift", "repeat", "drift", "outage")


def run_class(pipeline, cls: str, per: int, seed: int) -> dict[str, object]:
    rng = np.random.default_rng(seed)
    n = int(DAYS * 86400 / STEP)
    t = T0 + STEP * np.arange(n)
    values, wants = [], []
    for j in range(per):
        v, want = planted(cls, rng, j % 3, n)
        values.append(v)
        wants.append(want)
    metric = np.repeat(np.arange(per, dtype=np.int64), n)
    newest = np.zeros(per * n, dtype=bool)
    newest[n - 1::n] = True
    points = Points(metric=metric, t=np.tile(t, per), v=np.concatenate(values),
                    bootstrap=np.zeros(per * n, dtype=bool), newest=newest,
                    batch=np.full(per * n, -1, dtype=np.int64),
                    column=np.zeros(per * n, dtype=np.int64))
    names = [f"planted.{cls}.{j}" for j in range(per)]
    states = pipeline.fresh(per)
    result = RunResult(points=points)
    started = time.perf_counter()
    pipeline.advance(names, points, states, result,
                     window_of=lambda i: (np.empty(0), np.empty(0)))
    took = time.perf_counter() - started
    by_metric: dict[int, list[tuple[int, str]]] = {}
    for ev in result.events:
        by_metric.setdefault(ev.row, []).append((int(ev.point) - ev.row * n, ev.status))
    found = fp = fp_days = recovered_broken = 0
    for j in range(per):
        evs = by_metric.get(j, [])
        anomalous = [i for i, s in evs if s == "anomalous"]
        if cls == "normal":
            fp += any(i >= n - 120 for i in anomalous)
            fp_days += any(i >= 1440 for i in anomalous)
            continue
        if all(any(lo <= i <= hi for i in anomalous) for lo, hi in wants[j]):
            found += 1
        if cls == "outage":
            a = wants[j][0][0]
            recovered_broken += any(s == "recovered" and i >= a for i, s in evs)
    out: dict[str, object] = {"class": cls, "series": per, "steps_s": round(took, 2)}
    if cls == "normal":
        out["false_positives"] = fp
        out["false_positives_1.5_days"] = fp_days
    else:
        out["found"] = found
    if cls == "outage":
        out["recovered_while_broken"] = recovered_broken
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--detector", default="learning", choices=("learning", "score",
                                                                 "consensus"))
    ap.add_argument("--per-class", type=int, default=200)
    ap.add_argument("--class", dest="classes", action="append", choices=CLASSES)
    args = ap.parse_args()
    if args.detector != "learning":
        print("window detectors need their windows: this bench steps a detector with state",
              file=sys.stderr)
        return 2
    config = from_settings(load_settings(LOG_LEVEL="WARNING",
                                         analyzer={"detector": args.detector}))
    rows = []
    for k, cls in enumerate(args.classes or CLASSES):
        r = run_class(config.pipeline(), cls, args.per_class, 200 + k)
        rows.append(r)
        extra = ", ".join(f"{key} {val}" for key, val in r.items()
                          if key not in ("class", "series"))
        print(f"  {cls:<8} {extra}", flush=True)
    print(json.dumps({"bench": "planted", "detector": args.detector, "classes": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
