"""Algorithm bench: the vectorised ensemble on METRICS x POINTS synthetic series, in memory.

Series are 60 s days: noise, a daily sine or a slow trend (a third each), 1 % ending in a
spike. Measured, on one core (numpy runs single-threaded here):

- each algorithm alone over the whole set, in chunks of --chunk-rows (it pays for the shared
  statistics it uses, as it would if run first);
- the ensemble of the nine with CONSENSUS 6, with and without early stop (upstream's
  RUN_OPTIMIZED_WORKFLOW; the analyzer's default);
- prepare(): a list of per-series arrays (what the store's read gives) to bucketed batches;
- the plain per-series reference (tests/reference_algorithms.py: pandas, scipy, statsmodels)
  on --reference metrics, and the speed ratio.

    .venv/bin/python bench/algorithms.py                    # 100k x 1440, reference on 2k
    .venv/bin/python bench/algorithms.py --metrics 20000 --reference 500

Human lines go to stdout, progress to stderr; the last stdout line is JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from skyline.algorithms import DEFAULT_ALGORITHMS, AnalysisParams, Batch, Ensemble, build, prepare

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.reference_algorithms import REFERENCES  # noqa: E402  (the tests' reference, on purpose)

STEP = 60.0
T0 = 1_700_000_000.0


def progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def synthetic(metrics: int, points: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = np.broadcast_to(T0 + STEP * np.arange(points), (metrics, points))
    i = np.arange(points) / points
    v = rng.standard_normal((metrics, points))
    v *= rng.uniform(1, 5, (metrics, 1))
    v += rng.uniform(50, 500, (metrics, 1))
    kind = np.arange(metrics) % 3
    sine = kind == 1
    v[sine] += rng.uniform(5, 30, (int(sine.sum()), 1)) * np.sin(2 * np.pi * (i[None, :] + rng.uniform(0, 1, (int(sine.sum()), 1))))
    trend = kind == 2
    v[trend] += rng.uniform(-20, 20, (int(trend.sum()), 1)) * i[None, :]
    spiked = rng.random(metrics) < 0.01
    v[spiked, -3:] += 10 * v[spiked].std(axis=1, keepdims=True)
    return np.ascontiguousarray(t), v


def chunks(t: np.ndarray, v: np.ndarray, rows: int, full_duration: float):
    counts = np.full(rows, v.shape[1], dtype=np.int64)
    for lo in range(0, len(v), rows):
        hi = min(len(v), lo + rows)
        yield Batch(t[lo:hi], v[lo:hi], counts[:hi - lo], full_duration=full_duration)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--metrics", type=int, default=100_000)
    ap.add_argument("--points", type=int, default=1440)
    ap.add_argument("--reference", type=int, default=2000, help="metrics for the reference run")
    ap.add_argument("--chunk-rows", type=int, default=1024)
    args = ap.parse_args()
    m, n = args.metrics, args.points
    full_duration = n * STEP

    progress(f"generating {m} x {n} ...")
    t, v = synthetic(m, n)
    print(f"algorithms bench: {m} metrics x {n} points (60 s), chunks of {args.chunk_rows} rows")

    per_alg: dict[str, float] = {}
    algs = build(DEFAULT_ALGORITHMS)
    for alg in algs:
        progress(f"timing {alg.name} ...")
        start = time.perf_counter()
        for batch in chunks(t, v, args.chunk_rows, full_duration):
            alg.run(batch)
        per_alg[alg.name] = time.perf_counter() - start
        print(f"  {alg.name:30s} {per_alg[alg.name]:7.2f} s  {m / per_alg[alg.name]:10,.0f} metrics/s")

    ens: dict[str, float] = {}
    anomalies = {}
    for early in (True, False):
        progress(f"timing the ensemble, early_stop={early} ...")
        ensemble = Ensemble(algs, consensus=6, early_stop=early, chunk_rows=args.chunk_rows)
        start = time.perf_counter()
        found = 0
        for batch in chunks(t, v, 50_000, full_duration):
            found += int(ensemble.run(batch).anomalous.sum())
        ens[str(early)] = time.perf_counter() - start
        anomalies[str(early)] = found
    print(f"  ensemble, early stop (analyzer)  {ens['True']:7.2f} s  {m / ens['True']:10,.0f} "
          f"metrics/s  ({anomalies['True']} anomalous)")
    print(f"  ensemble, all nine on every row  {ens['False']:7.2f} s  {m / ens['False']:10,.0f} "
          f"metrics/s  ({anomalies['False']} anomalous)")

    progress("timing prepare() from per-series arrays, then the ensemble on its batches ...")
    series = [(t[i], v[i]) for i in range(m)]
    params = AnalysisParams(full_duration=full_duration, chunk_rows=args.chunk_rows)
    now = float(t[0, -1]) + 30
    prep: list[float] = []
    for _ in range(2):  # the first run also pays the page faults of fresh memory
        start = time.perf_counter()
        prepared = prepare(series, params, now=now)
        prep.append(time.perf_counter() - start)
        if len(prep) == 1:
            del prepared
    ensemble = Ensemble(algs, consensus=6, early_stop=True, chunk_rows=args.chunk_rows)
    passes = []
    for _ in range(2):  # as for prepare: the analyzer's steady state is the second pass
        start = time.perf_counter()
        for batch in prepared.batches:
            ensemble.run(batch)
        passes.append(time.perf_counter() - start)
    on_prepared = passes[1]
    batches = len(prepared.batches)
    del series, prepared
    prep_s = prep[1]
    print(f"  prepare (clean, counters, resampling, exceptions, buckets) {prep_s:7.2f} s  "
          f"{m / prep_s:10,.0f} metrics/s  (first run {prep[0]:.2f} s; {batches} batches)")
    print(f"  ensemble with early stop on the prepared batches {on_prepared:7.2f} s  "
          f"(first pass {passes[0]:.2f} s)")

    k = min(args.reference, m)
    progress(f"timing the per-series reference on {k} metrics ...")
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i in range(k):
            for name in DEFAULT_ALGORITHMS:
                REFERENCES[name](t[i], v[i], full_duration)
    ref_s = time.perf_counter() - start
    ref_rate = k / ref_s
    vec_rate = m / ens["False"]
    print(f"  reference, per series, all nine {ref_s:7.2f} s  {ref_rate:10,.0f} metrics/s "
          f"({k} metrics)")
    print(f"  speed ratio (vectorised all nine / reference): {vec_rate / ref_rate:,.0f}x; "
          f"with early stop: {m / ens['True'] / ref_rate:,.0f}x")
    total = on_prepared + prep_s
    print(f"  analyzer pass estimate, fetching aside (prepare + ensemble with early stop): "
          f"{total:.2f} s for {m} metrics")
    print(json.dumps({
        "bench": "algorithms", "metrics": m, "points": n,
        "per_algorithm_metrics_per_s": {k2: round(m / s) for k2, s in per_alg.items()},
        "ensemble_early_stop_s": round(ens["True"], 3),
        "ensemble_all_s": round(ens["False"], 3),
        "prepare_s": round(prep_s, 3),
        "prepare_plus_ensemble_s": round(total, 3),
        "reference_metrics_per_s": round(ref_rate, 1),
        "speed_ratio": round(vec_rate / ref_rate),
        "anomalous": anomalies["True"],
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
