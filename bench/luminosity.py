"""Luminosity bench: quality of related metrics and incident grouping on the synthetic corpus
(skyline.snab.luminosity, fixed seed), and the speed of correlating anomalies against every
metric of a hot store.

Quality (in memory, the same functions the service runs after its hot-store read):
- related metrics: for each incident's root anomaly, the top 10 related metrics; precision@10
  is the share of returned metrics that are the incident's dependents (averaged over the
  anomalies that returned any), recall the share of min(10, dependents) found;
- grouping: every planted anomaly event (roots, dependents, unrelated metrics' own anomalies)
  in time order through the Grouper, correlation as the relation; pairwise precision and
  recall of "same incident" (an unrelated metric's anomaly is an incident of its own);
- alerts per incident: with grouping off, one alert per metric's incident; with grouping on,
  one per incident it landed in (updates as members join are edits of that alert).

Speed: SPEED_METRICS series in a throwaway embedded Redis; the last points of every series
read with one pipelined GETRANGE each (FlatReader(tail=...)), resampled and correlated
against one anomaly, then against 100 anomalies in one run.

Usage: .venv/bin/python bench/luminosity.py [--speed-metrics 100000] [--unrelated 10000]
The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from skyline.analysis.correlation import (
    Anomaly,
    CorrelationParams,
    Grid,
    correlate,
    correlate_flat,
    counter_rows,
    derive_counters,
    groupable,
    resample,
    top_related,
    window_columns,
)
from skyline.analysis.grouping import Grouper, GroupingRules
from skyline.settings import load_settings
from skyline.snab.luminosity import STEP, CorpusSpec, generate
from skyline.store import keys
from skyline.store.flatread import FlatReader
from skyline.store.redis_client import make_client, redis_session
from skyline.store.series import POINT_DTYPE


def progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def pairwise(pred: np.ndarray, true: np.ndarray) -> tuple[float, float]:
    """Pairwise precision and recall of "same group" between two labelings."""
    def pairs(labels: np.ndarray) -> float:
        _, n = np.unique(labels, return_counts=True, axis=0)
        return float((n * (n - 1) // 2).sum())

    both = pairs(np.stack([pred, true], axis=1))
    p, t = pairs(pred), pairs(true)
    return (both / p if p else 1.0), (both / t if t else 1.0)


def quality(spec: CorpusSpec, params: CorrelationParams, rules: GroupingRules) -> dict[str, float]:
    t0 = time.perf_counter()
    corpus = generate(spec)
    progress(f"corpus: {corpus.values.shape[0]:,} metrics x {corpus.values.shape[1]} points, "
             f"{len(corpus.event_rows):,} anomaly events ({time.perf_counter() - t0:.1f} s)")
    t, v, counts = corpus.flat()
    grid = resample(t, v, counts, float(corpus.timestamps[0]), STEP, len(corpus.timestamps))
    derive_counters(grid, counter_rows(grid.values))
    t0 = time.perf_counter()
    corr = correlate(grid, corpus.roots, corpus.root_columns, params)
    progress(f"correlated {len(corpus.roots)} roots against every metric: "
             f"{time.perf_counter() - t0:.2f} s")
    precisions, recalls = [], []
    for i, root in enumerate(corpus.roots):
        got = {r.row for r in top_related(corr, i, params.top)}
        deps = set(np.flatnonzero(corpus.incident == i).tolist()) - {int(root)}
        hit = len(got & deps)
        if got:
            precisions.append(hit / len(got))
        recalls.append(hit / min(len(deps), params.top))

    # grouping: the relation is the same correlation, on the rows in question only
    group_params = rules.params(params)

    def relate(metric: str, since: float, others: Sequence[str]) -> dict[str, tuple[float, float]]:
        rows = np.array([int(metric)] + [int(o) for o in others])
        col = int(round((since - float(corpus.timestamps[0])) / STEP))
        if col < group_params.margin_before or col + group_params.margin_after >= grid.columns:
            return {}
        sub = Grid(grid.start, grid.step, grid.values[rows], grid.coverage[rows])
        c = correlate(sub, np.array([0]), np.array([col]), group_params)
        return {others[k - 1]: (float(c.shifted_coefficient[0, k]),
                                float(c.lag[0, k]) * STEP)
                for k in np.flatnonzero(groupable(c, rules.min_baseline)[0])}

    grouper = Grouper(rules, relate)

    t0 = time.perf_counter()
    pred = np.empty(len(corpus.event_rows), dtype=np.int64)
    ids: dict[str, int] = {}
    for k, (row, col) in enumerate(zip(corpus.event_rows.tolist(),
                                       corpus.event_columns.tolist(), strict=True)):
        since = float(corpus.timestamps[0]) + col * STEP
        placed = grouper.anomalous(str(row), since, f"e{k}")
        pred[k] = ids.setdefault(placed.incident.id, len(ids))
    progress(f"grouped {len(pred):,} events into {len(ids):,} incidents: "
             f"{time.perf_counter() - t0:.2f} s")
    truth = corpus.incident[corpus.event_rows]
    truth = np.where(truth >= 0, truth, spec.incidents + np.arange(len(truth)))
    precision, recall = pairwise(pred, truth)
    mine = truth < spec.incidents
    per_incident_on = [len(np.unique(pred[mine & (truth == i)])) for i in range(spec.incidents)]
    per_incident_off = [int((mine & (truth == i)).sum()) for i in range(spec.incidents)]
    return {
        "precision_at_10": round(float(np.mean(precisions)), 4),
        "recall_at_10": round(float(np.mean(recalls)), 4),
        "no_related": spec.incidents - len(precisions),
        "grouping_precision": round(precision, 4),
        "grouping_recall": round(recall, 4),
        "alerts_per_incident": round(float(np.mean(per_incident_on)), 3),
        "alerts_per_incident_ungrouped": round(float(np.mean(per_incident_off)), 3),
        "incidents_formed": len(ids),
        "events": len(pred),
    }


def speed(metrics: int, params: CorrelationParams, repeats: int) -> dict[str, float]:
    data_dir = Path(tempfile.mkdtemp(prefix="skyline-bench-luminosity-"))
    try:
        settings = load_settings(DATA_DIR=data_dir, REDIS_URL=None, LOG_LEVEL="WARNING")
        with redis_session(settings) as handle:
            assert handle.embedded is not None
            client = make_client(handle.embedded.url, 300.0)
            client.config_set("appendonly", "no")
            client.config_set("save", "")
            client.flushdb()
            rng = np.random.default_rng(7)
            points = params.before + params.after + 2 * params.max_lag + 20
            end = float(int(time.time()) // 60 * 60)
            ts = end - STEP * np.arange(points)[::-1]
            names = [f"bench.host{i % 1000:03d}.metric{i:06d}" for i in range(metrics)]
            progress(f"loading {metrics:,} series x {points} points ...")
            t0 = time.perf_counter()
            pts = np.empty(points, dtype=POINT_DTYPE)
            pts["t"] = ts
            for lo in range(0, metrics, 5000):
                pipe = client.pipeline(transaction=False)
                vals = rng.standard_normal((min(5000, metrics - lo), points)).cumsum(axis=1)
                for k, name in enumerate(names[lo:lo + 5000]):
                    pts["v"] = vals[k]
                    pipe.set(keys.series(name), pts.tobytes())
                pipe.execute()
            progress(f"loaded in {time.perf_counter() - t0:.1f} s")
            anomaly_t = end - params.margin_after * STEP
            reader = FlatReader(client)
            results: dict[str, list[float]] = {"one": [], "one_read": [], "hundred": [],
                                               "hundred_read": []}
            for _ in range(repeats):
                for label, count in (("one", 1), ("hundred", 100)):
                    anomalies = [Anomaly(names[k * 997 % metrics], anomaly_t - (k % 10) * STEP)
                                 for k in range(count)]
                    _, columns = window_columns(np.array([a.timestamp for a in anomalies]),
                                                STEP, params)
                    t0 = time.perf_counter()
                    flat = reader.read(names, tail=columns + 5)
                    t1 = time.perf_counter()
                    related = correlate_flat(names, flat.timestamps, flat.values, flat.counts,
                                             anomalies, STEP, params)
                    t2 = time.perf_counter()
                    assert len(related) == count
                    results[label].append(t2 - t0)
                    results[label + "_read"].append(t1 - t0)
                    progress(f"{label}: read {t1 - t0:.2f} s, correlate {t2 - t1:.2f} s")
            best = {k: min(v) for k, v in results.items()}
            return {
                "one_vs_100k_s" if metrics == 100_000 else "one_vs_all_s": round(best["one"], 3),
                "one_read_s": round(best["one_read"], 3),
                "hundred_s": round(best["hundred"], 3),
                "hundred_read_s": round(best["hundred_read"], 3),
                "speed_metrics": metrics,
            }
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=19)
    ap.add_argument("--incidents", type=int, default=200)
    ap.add_argument("--unrelated", type=int, default=10_000)
    ap.add_argument("--speed-metrics", type=int, default=100_000, help="0: no speed run")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    params = CorrelationParams()
    rules = GroupingRules()
    out: dict[str, object] = {"bench": "luminosity"}
    out.update(quality(CorpusSpec(seed=args.seed, incidents=args.incidents,
                                  unrelated=args.unrelated), params, rules))
    if args.speed_metrics:
        out.update(speed(args.speed_metrics, params, args.repeats))
    out["load_avg_1m"] = round(os.getloadavg()[0], 2)
    for k, v in out.items():
        if k != "bench":
            print(f"{k:32} {v}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
