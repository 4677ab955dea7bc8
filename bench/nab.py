"""NAB scores and replay times of SNAB variants on a NAB corpus (default: the nab-dev subset
beside the repository, ../shared/nab-dev), replayed through the analysis pipeline.

For each variant (`default` is the product with the default settings): replay time, the three profiles' scores with thresholds optimised
in-sample (NAB's way), and an out-of-sample figure: the files are split into two folds
(alternately within each category, in name order) and each fold is scored with the thresholds
tuned on the other; the reported figure normalises the summed raw scores of both folds.

    .venv/bin/python bench/nab.py [--variant NAME ...] [--data DIR --labels FILE]

Ends with one line of JSON holding the headline figures.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from skyline.analysis.crucible import crucible_config
from skyline.settings import load_settings
from skyline.snab.corpus import parse_rows, parse_windows
from skyline.snab.scorer import PROFILES, ScoredFile, locate_windows, normalise, score_corpus
from skyline.snab.variants import VARIANTS, get, pipeline_for, replay_variant_many

NAB_DEV = Path(__file__).resolve().parents[1].parent / "shared" / "nab-dev"


def _folds(keys: list[str]) -> tuple[list[str], list[str]]:
    a, b = [], []
    by_category: dict[str, list[str]] = {}
    for key in sorted(keys):
        by_category.setdefault(key.split("/")[0], []).append(key)
    for members in by_category.values():
        a += members[0::2]
        b += members[1::2]
    return a, b


def out_of_sample(files: list[ScoredFile]) -> dict[str, float]:
    by_key = {f.key: f for f in files}
    fold_a, fold_b = _folds(list(by_key))
    raw = dict.fromkeys((p.name for p in PROFILES), 0.0)
    for tune, test in ((fold_a, fold_b), (fold_b, fold_a)):
        tuned = score_corpus([by_key[k] for k in tune])
        given = {name: p.threshold for name, p in tuned.profiles.items()}
        scored = score_corpus([by_key[k] for k in test], thresholds=given)
        for name, p in scored.profiles.items():
            raw[name] += p.raw
    n_windows = sum(len(f.windows) for f in files)
    return {p.name: normalise(raw[p.name], p, n_windows) for p in PROFILES}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=NAB_DEV / "data")
    ap.add_argument("--labels", type=Path, default=NAB_DEV / "labels" / "combined_windows.json")
    ap.add_argument("--variant", action="append", choices=list(VARIANTS),
                    help="repeatable; default: default, classic-9, classic-7")
    args = ap.parse_args()
    if not args.labels.is_file():
        print(f"no NAB corpus at {args.data} (labels {args.labels})", file=sys.stderr)
        return 1
    windows = parse_windows(args.labels.read_text())
    data = {key: parse_rows((args.data / key).read_text(), key) for key in windows}
    n_rows = sum(len(r) for r in data.values())
    print(f"nab bench: {len(data)} files, {n_rows} rows, "
          f"{sum(len(w) for w in windows.values())} windows ({args.data})")
    headline: dict[str, object] = {"bench": "nab", "files": len(data), "rows": n_rows}
    config = crucible_config(load_settings(LOG_LEVEL="WARNING"))  # the defaults
    for name in args.variant or ["default", "classic-9", "classic-7"]:
        variant = get(name)
        pipeline = pipeline_for(variant, config)
        start = time.perf_counter()
        done = replay_variant_many(variant, pipeline, [(key, rows.seconds, rows.values)
                                                       for key, rows in data.items()])
        files = [ScoredFile(key, scores, locate_windows(key, rows.micros, windows[key]))
                 for (key, rows), (scores, _) in zip(data.items(), done, strict=True)]
        took = time.perf_counter() - start
        scored = score_corpus(files)
        oos = out_of_sample(files)
        ins = {p: s.score for p, s in scored.profiles.items()}
        thr = {p: s.threshold for p, s in scored.profiles.items()}
        print(f"  {name:<28} replay {took:6.1f} s  in-sample "
              + " / ".join(f"{ins[p.name]:6.2f}" for p in PROFILES)
              + "  out-of-sample " + " / ".join(f"{oos[p.name]:6.2f}" for p in PROFILES)
              + "  thresholds " + " / ".join(f"{thr[p.name]:.4g}" for p in PROFILES))
        headline[name] = {"replay_s": round(took, 2),
                          "in_sample": {k: round(v, 2) for k, v in ins.items()},
                          "out_of_sample": {k: round(v, 2) for k, v in oos.items()
                                            if np.isfinite(v)}}
    print(json.dumps(headline))
    return 0


if __name__ == "__main__":
    sys.exit(main())
