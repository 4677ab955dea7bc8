"""`skyline bench ...`: benchmarks on labelled data. The file handling of SNAB lives here (the
CLI is the layer that reads and writes files); replay and scoring are skyline.snab."""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Mapping
from dataclasses import replace as dataclasses_replace
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Protocol

import click

from skyline.cli.lazy import LazyChoice
from skyline.core.errors import InvalidInput

if TYPE_CHECKING:
    from skyline.settings import Settings
    from skyline.snab.corpus import Rows, Windows
    from skyline.snab.scorer import CorpusScore, ScoredFile


class _HasSettings(Protocol):
    def settings(self) -> Settings: ...


@click.group()
def bench() -> None:
    """Benchmarks on labelled data."""


def _variant_names() -> list[str]:
    from skyline.snab.variants import VARIANTS

    return list(VARIANTS)


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError as e:
        raise InvalidInput(f"cannot read {path}: {e.strerror or e}") from None


def _data_files(data_dir: Path) -> dict[str, Path]:
    """'<category>/<file>.csv' -> path, for every CSV one level below data_dir."""
    if not data_dir.is_dir():
        raise InvalidInput(f"{data_dir} is not a directory")
    found = {f"{p.parent.name}/{p.name}": p for p in sorted(data_dir.glob("*/*.csv"))}
    if not found:
        raise InvalidInput(f"{data_dir}: no <category>/<file>.csv files")
    return found


def _detector_dirs(results_dir: Path) -> list[Path]:
    """A detector's directory (holding <category>/<detector>_<file>.csv), or a directory of
    them (NAB's results/ layout)."""
    if not results_dir.is_dir():
        raise InvalidInput(f"{results_dir} is not a directory")
    if any(results_dir.glob(f"*/{results_dir.name}_*.csv")):
        return [results_dir]
    dirs = [d for d in sorted(results_dir.iterdir())
            if d.is_dir() and any(d.glob(f"*/{d.name}_*.csv"))]
    if not dirs:
        raise InvalidInput(f"{results_dir}: no NAB results (<detector>/<category>/"
                           "<detector>_<file>.csv)")
    return dirs


def _scored_file(key: str, rows: Rows, scores: Any, windows: Windows) -> ScoredFile:
    from skyline.snab.scorer import ScoredFile, locate_windows

    return ScoredFile(key, scores, locate_windows(key, rows.micros, windows[key]))


def _load_thresholds(path: Path, detector: str) -> dict[str, float]:
    """Thresholds per profile from an earlier `--json` output (by detector name, or its only
    detector), or from a plain {"profile": threshold} object. null means no detections."""
    try:
        raw = json.loads(_read(path))
    except json.JSONDecodeError as e:
        raise InvalidInput(f"{path}: not JSON ({e})") from None
    key = "variants" if isinstance(raw, dict) and "variants" in raw else "detectors"
    if isinstance(raw, dict) and key in raw:
        dets = raw[key]
        if detector in dets:
            raw = dets[detector]
        elif len(dets) == 1:
            raw = next(iter(dets.values()))
        else:
            raise InvalidInput(f"{path}: no thresholds for {detector} "
                               f"(it has {', '.join(dets)})")
    if isinstance(raw, dict) and "profiles" in raw:
        raw = {name: p.get("threshold") for name, p in raw["profiles"].items()}
    if not isinstance(raw, dict):
        raise InvalidInput(f"{path}: expected thresholds per profile")
    out = {}
    for name, value in raw.items():
        if value is not None and not isinstance(value, int | float):
            raise InvalidInput(f"{path}: threshold for {name} is not a number: {value!r}")
        out[str(name)] = math.inf if value is None else float(value)
    return out


def _score(files: list[ScoredFile], thresholds_from: Path | None,
           detector: str) -> CorpusScore:
    from skyline.snab.scorer import score_corpus

    thresholds = _load_thresholds(thresholds_from, detector) if thresholds_from else None
    return score_corpus(files, thresholds=thresholds)


def _fmt_threshold(x: float) -> str:
    return "none" if math.isinf(x) else f"{x:.6g}"


def _print_tables(report: Mapping[str, Mapping[str, Any]], tuned: bool) -> None:
    from skyline.snab.scorer import PROFILES

    how = "thresholds given" if not tuned else "threshold optimised in-sample"
    for profile in PROFILES:
        click.echo(f"\n{profile.name}  ({how})")
        click.echo(f"  {'variant':<22} {'score':>7} {'raw':>9} {'threshold':>10} "
                   f"{'TP':>4} {'FN':>4} {'FP':>5}")
        for name, entry in report.items():
            p = entry["score"].profiles[profile.name]
            score = "n/a" if math.isnan(p.score) else f"{p.score:.2f}"
            click.echo(f"  {name:<22} {score:>7} {p.raw:>9.3f} "
                       f"{_fmt_threshold(p.threshold):>10} {p.tp:>4} {p.fn:>4} {p.fp:>5}")


def _print_abstentions(name: str, per_file: Mapping[str, Mapping[str, int]],
                       rows: Mapping[str, int]) -> None:
    labels = sorted({label for counts in per_file.values() for label in counts})
    total = sum(rows.values())
    if not labels:
        click.echo(f"{name}: every one of {total} rows analysed")
        return
    sums = {label: sum(c.get(label, 0) for c in per_file.values()) for label in labels}
    click.echo(f"{name}: rows not analysed (score 0) of {total}: "
               + ", ".join(f"{label} {n}" for label, n in sums.items()))
    click.echo(f"  {'file':<58} {'rows':>6} " + " ".join(f"{label:>9}" for label in labels))
    for key, counts in per_file.items():
        if counts:
            click.echo(f"  {key:<58} {rows[key]:>6} "
                       + " ".join(f"{counts.get(label, 0):>9}" for label in labels))


def _replay_corpus(data_dir: Path, windows: Windows, variant_name: str, out_dir: Path,
                   show_progress: bool, settings: Settings) -> dict[str, Any]:
    from skyline.analysis.crucible import crucible_config
    from skyline.snab.corpus import format_results, parse_rows, require_same_files, result_path
    from skyline.snab.variants import get, pipeline_for, replay_variant_many

    variant = get(variant_name)
    paths = _data_files(data_dir)
    unlabelled = sorted(set(paths) - set(windows))
    if unlabelled:
        raise InvalidInput(f"no label windows for {len(unlabelled)} data file(s): "
                           f"{', '.join(unlabelled[:3])} (every CSV in DATA_DIR is replayed "
                           "and scored)")
    require_same_files(windows, paths, str(data_dir))
    data = {key: parse_rows(_read(path), key) for key, path in paths.items()}
    total = sum(len(r) for r in data.values())
    config = crucible_config(settings)
    pipeline = pipeline_for(variant, config)
    files, abstained, row_counts = [], {}, {}
    replay_s = 0.0
    with click.progressbar(length=total, label=f"{variant.name:<20}", file=sys.stderr,
                           width=30, show_eta=True, hidden=not show_progress) as bar:
        start = time.perf_counter()
        done = replay_variant_many(variant, pipeline,
                                   [(key, rows.seconds, rows.values) for key, rows in
                                    data.items()], progress=bar.update)
        replay_s = time.perf_counter() - start
        for (key, rows), (scores, result) in zip(data.items(), done, strict=True):
            target = out_dir / Path(*result_path(variant.name, key).parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(format_results(rows, scores))
            files.append(_scored_file(key, rows, scores, windows))
            abstained[key] = result.abstained()
            row_counts[key] = len(rows)
    return {"files": files, "abstained": abstained, "rows": row_counts, "replay_s": replay_s,
            "variant": variant, "params": pipeline.params}


def _scored_results(detector_dir: Path, windows: Windows) -> list[ScoredFile]:
    from skyline.snab.corpus import parse_rows, require_same_files, result_key

    name = detector_dir.name
    found = {}
    for path in sorted(detector_dir.glob("*/*.csv")):
        key = result_key(name, PurePosixPath(path.relative_to(detector_dir).as_posix()))
        if key is not None:
            found[key] = path
    require_same_files(windows, found, str(detector_dir))
    files = []
    for key in windows:
        rows = parse_rows(_read(found[key]), str(found[key]), results=True)
        files.append(_scored_file(key, rows, rows.scores, windows))
    return files


@bench.command("nab")
@click.argument("data_dir", required=False, type=click.Path(file_okay=False, path_type=Path))
@click.option("--labels", "labels", required=True,
              type=click.Path(dir_okay=False, path_type=Path),
              help="NAB label windows (labels/combined_windows.json).")
@click.option("--variant", "variants", multiple=True, type=LazyChoice(_variant_names),
              help="What to replay (repeatable; default: default, the product with the "
              "settings in force).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("var/nab-results"), show_default=True,
              help="Where replay writes NAB-layout results (var/ is git-ignored: NAB data "
                   "stays out of the repository).")
@click.option("--score-only", "score_only", type=click.Path(file_okay=False, path_type=Path),
              help="Score existing results (a detector's directory or a directory of them) "
                   "instead of replaying DATA_DIR.")
@click.option("--thresholds-from", "thresholds_from",
              type=click.Path(dir_okay=False, path_type=Path),
              help="Apply thresholds tuned elsewhere (an earlier --json output) instead of "
                   "optimising them on these labels.")
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
@click.pass_obj
def bench_nab(obj: _HasSettings, data_dir: Path | None, labels: Path,
              variants: tuple[str, ...], out_dir: Path, score_only: Path | None,
              thresholds_from: Path | None, as_json: bool) -> None:
    """Replay a NAB corpus through the analyzer's algorithms and score it as NAB does.

    DATA_DIR holds <category>/<file>.csv. Each detector's results (one row per
    data row) go to OUT/<detector>/<category>/<detector>_<file>.csv and are
    scored per profile: standard, reward_low_FP_rate, reward_low_FN_rate.
    See docs/benchmarks.md.
    """
    from skyline.snab.corpus import parse_windows

    if (data_dir is None) == (score_only is None):
        raise click.UsageError("give DATA_DIR to replay, or --score-only RESULTS_DIR")
    if score_only is not None and variants:
        raise click.UsageError("--variant chooses what to replay; --score-only scores the "
                               "results as they are")
    windows = parse_windows(_read(labels), str(labels))
    report: dict[str, dict[str, Any]] = {}
    if score_only is not None:
        for d in _detector_dirs(score_only):
            start = time.perf_counter()
            files = _scored_results(d, windows)
            score = _score(files, thresholds_from, d.name)
            report[d.name] = {"score": score, "score_s": time.perf_counter() - start}
    else:
        assert data_dir is not None
        settings = obj.settings()
        for name in variants or ("default",):
            run = _replay_corpus(data_dir, windows, name, out_dir,
                                 show_progress=sys.stderr.isatty(), settings=settings)
            start = time.perf_counter()
            run["score"] = _score(run["files"], thresholds_from, name)
            run["score_s"] = time.perf_counter() - start
            report[name] = run
    tuned = thresholds_from is None
    if as_json:
        click.echo(json.dumps(_as_json(report, tuned, out_dir if score_only is None else None),
                              indent=2))
        return
    for name, entry in report.items():
        if "replay_s" in entry:
            n = sum(entry["rows"].values())
            click.echo(f"{name}: replayed {n} rows of {len(entry['rows'])} files in "
                       f"{entry['replay_s']:.1f} s ({n / max(entry['replay_s'], 1e-9):,.0f} "
                       f"rows/s); results in {out_dir / name}")
            _print_abstentions(name, entry["abstained"], entry["rows"])
    first = next(iter(report.values()))["score"]
    click.echo(f"\n{len(first.files)} files, {first.n_windows} windows")
    _print_tables(report, tuned)


def _as_json(report: Mapping[str, Mapping[str, Any]], tuned: bool,
             out_dir: Path | None) -> dict[str, Any]:
    dets: dict[str, Any] = {}
    for name, entry in report.items():
        item: dict[str, Any] = entry["score"].as_dict(per_file=True)
        item["score_s"] = round(entry["score_s"], 3)
        if "replay_s" in entry:
            item["variant"] = entry["variant"].describe(entry["params"])
            item["replay_s"] = round(entry["replay_s"], 3)
            item["rows"] = sum(entry["rows"].values())
            item["abstained"] = {k: v for k, v in entry["abstained"].items() if v}
            item["results"] = str(out_dir / name) if out_dir is not None else None
        dets[name] = item
    return {"bench": "nab", "thresholds": "optimised" if tuned else "given",
            "variants": dets}


# -- ionosphere ---------------------------------------------------------------------------------

def _policy_names() -> list[str]:
    from skyline.snab.ionosphere import POLICIES

    return [p.name for p in POLICIES]


@bench.command("ionosphere")
@click.argument("data_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--labels", "labels", required=True,
              type=click.Path(dir_okay=False, path_type=Path),
              help="Label windows, NAB's combined_windows.json format.")
@click.option("--policy", "policies", multiple=True, type=LazyChoice(_policy_names),
              help="Operator policies to replay (repeatable; default: all). every-1h is the "
              "headline.")
@click.option("--timing-profiles", default=50, show_default=True, type=click.IntRange(1, 1000),
              help="Profiles of 1,440 points in the stage timing.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout.")
@click.pass_obj
def bench_ionosphere(obj: _HasSettings, data_dir: Path, labels: Path,
                     policies: tuple[str, ...], timing_profiles: int, as_json: bool) -> None:
    """Replay a labelled corpus without and with Ionosphere taught by a simulated operator.

    The operator labels an alert "not anomalous" only when it lies outside every labelled
    window (every such alert, or the first k per metric), in force after a delay. Prints false
    alerts before -> after, real alerts suppressed, windows lost and gained, NAB scores at the
    fixed threshold, labels used and the stage's cost. See docs/ionosphere.md.
    """
    import numpy as np

    from skyline.analysis.crucible import crucible_config
    from skyline.analysis.ionosphere import IonosphereConfig
    from skyline.snab import ionosphere as sim
    from skyline.snab.corpus import parse_rows, parse_windows, require_same_files
    from skyline.snab.scorer import PROFILES, ScoredFile, locate_windows, score_corpus
    from skyline.snab.variants import get, replay_variant_many

    windows = parse_windows(_read(labels), str(labels))
    paths = _data_files(data_dir)
    require_same_files(windows, paths, str(data_dir))
    data = {key: parse_rows(_read(path), key) for key, path in paths.items()}
    seconds = {k: [(a / 1e6, b / 1e6) for a, b in w] for k, w in windows.items()}
    settings = obj.settings()
    config = crucible_config(settings)
    config = dataclasses_replace(config, stages=tuple(s for s in config.stages
                                                      if s != "ionosphere"))
    rules = IonosphereConfig.from_settings(settings).rules
    variant = get("default")
    keys = list(data)
    series = [(k, data[k].seconds, data[k].values) for k in keys]
    fixed = {p.name: 0.5 for p in PROFILES}

    def nab(replays: list[Any]) -> dict[str, Any]:
        files = [ScoredFile(k, np.where(r.alerted, 1.0, 0.0),
                            locate_windows(k, data[k].micros, windows[k]))
                 for k, r in zip(keys, replays, strict=True)]
        score = score_corpus(files, thresholds=fixed)
        return {name: (None if math.isnan(p.score) else round(p.score, 2))
                for name, p in score.profiles.items()}

    t0 = time.perf_counter()
    base_runs = [r for _, r in replay_variant_many(variant, config.pipeline(), series)]
    base_s = time.perf_counter() - t0
    base = sim.outcomes(keys, base_runs)
    chosen = [p for p in sim.POLICIES if not policies or p.name in policies]
    report: dict[str, Any] = {}
    for policy in chosen:
        pipe, op = sim.taught_pipeline(config.pipeline(), seconds, policy, rules)
        t0 = time.perf_counter()
        runs = [r for _, r in replay_variant_many(variant, pipe, series)]
        took = time.perf_counter() - t0
        fig = sim.compare(seconds, base, sim.outcomes(keys, runs), op.first_effective)
        fig["labels_used"] = op.labels
        fig["nab_before"] = nab(base_runs)
        fig["nab_after"] = nab(runs)
        fig["replay_s"] = round(took, 1)
        report[policy.name] = fig
    timing = sim.time_stage(n_profiles=timing_profiles, rules=rules)
    head = report.get(sim.HEADLINE.name) or next(iter(report.values()))
    out = {"bench": "ionosphere", "data": str(data_dir), "files": len(keys),
           "rows": sum(len(r) for r in data.values()),
           "policy": sim.HEADLINE.name if sim.HEADLINE.name in report else next(iter(report)),
           **{k: head[k] for k in ("false_alerts_before", "false_alerts_after",
                                   "false_alerts_removed_pct", "false_alerts_removed_ci95",
                                   "repeat_false_alerts_removed_pct",
                                   "real_alerts_suppressed_pct", "windows_lost",
                                   "windows_gained", "labels_used")},
           "stage_p50_ms": timing["p50_ms"], "stage_p99_ms": timing["p99_ms"],
           "stage_timing": timing, "baseline_replay_s": round(base_s, 1),
           "policies": report}
    if as_json:
        click.echo(json.dumps(out))
        return
    click.echo(f"{len(keys)} files, {out['rows']} rows; baseline replay {base_s:.1f} s")
    for name, f in report.items():
        lo, hi = f["false_alerts_removed_ci95"]
        click.echo(
            f"{name:>10}: false alerts {f['false_alerts_before']} -> {f['false_alerts_after']}"
            f" ({f['false_alerts_removed_pct']:.1f} % removed, 95 % CI {lo} to {hi}; repeats "
            f"after the first label {f['repeat_false_alerts_removed_pct']} % removed); real "
            f"alerts suppressed {f['real_alerts_suppressed']}/{f['real_alerts_before']} "
            f"({f['real_alerts_suppressed_pct']:.1f} %); windows lost {f['windows_lost']}, "
            f"gained {f['windows_gained']} of {f['windows']}; labels {f['labels_used']}; "
            f"NAB standard {f['nab_before']['standard']} -> {f['nab_after']['standard']}; "
            f"stage p50/p99 {f['stage_p50_ms']}/{f['stage_p99_ms']} ms over "
            f"{f['stage_calls']} calls")
    click.echo(f"stage with {timing_profiles} profiles x 1440 points: p50 {timing['p50_ms']} "
               f"ms, p99 {timing['p99_ms']} ms wall; CPU p50 {timing['cpu_p50_ms']} ms, p99 "
               f"{timing['cpu_p99_ms']} ms (first call, building the bank: "
               f"{timing['first_call_ms']} ms)")
    click.echo(json.dumps({k: v for k, v in out.items() if k != "policies"}))


@bench.command("ionosphere-corpus")
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--seed", default=1, show_default=True, type=int)
@click.option("--metrics", default=24, show_default=True, type=click.IntRange(1, 1000))
@click.option("--days", default=35, show_default=True, type=click.IntRange(8, 365))
def bench_ionosphere_corpus(out_dir: Path, seed: int, metrics: int, days: int) -> None:
    """Write the seeded synthetic corpus for `bench ionosphere`: OUT_DIR/data/synthetic/*.csv
    and OUT_DIR/labels/combined_windows.json (recurring benign jobs, injected anomalies)."""
    import numpy as np

    from skyline.snab import ionosphere as sim

    files = sim.generate(sim.SyntheticSpec(metrics=metrics, days=days, seed=seed))
    labels: dict[str, list[list[str]]] = {}

    def stamp(x: float) -> str:
        return str(np.datetime64(int(round(x * 1e6)), "us")).replace("T", " ")

    for f in files:
        target = out_dir / "data" / f.key
        target.parent.mkdir(parents=True, exist_ok=True)
        lines = ["timestamp,value"] + [f"{stamp(t)[:19]},{v!r}" for t, v in
                                       zip(f.timestamps.tolist(), f.values.tolist(),
                                           strict=True)]
        target.write_text("\n".join(lines) + "\n")
        labels[f.key] = [[stamp(a), stamp(b)] for a, b in f.windows]
    (out_dir / "labels").mkdir(parents=True, exist_ok=True)
    (out_dir / "labels" / "combined_windows.json").write_text(json.dumps(labels, indent=1))
    n = sum(len(f.windows) for f in files)
    click.echo(f"{len(files)} files, {n} injected anomalies -> {out_dir}")
