"""`skyline crucible`: one series (a CSV or JSON file, or a stored metric) through every
algorithm, with explanations, a replay and a plot. Reading the file and writing the PNG
happen here (the CLI is the layer that touches files); the analysis is
skyline.analysis.crucible."""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import click

from skyline.core.errors import InvalidInput, NotFound
from skyline.core.timeutil import iso

if TYPE_CHECKING:
    from skyline.analysis.crucible import Examination, Replay
    from skyline.analysis.pipeline import Pipeline
    from skyline.core.types import FloatArray
    from skyline.settings import Settings


class _HasSettings(Protocol):
    def settings(self) -> Settings: ...

    def data_settings(self) -> Settings: ...


def _read_file(path: Path, min_points: int) -> tuple[FloatArray, FloatArray]:
    from skyline.analysis.series_text import parse_series

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidInput(f"{path}: no such file") from None
    except UnicodeDecodeError:
        raise InvalidInput(f"{path}: not CSV or JSON (not text)") from None
    except OSError as e:
        raise InvalidInput(f"{path}: cannot read: {e.strerror or e}") from None
    kind = {".json": "json", ".csv": "csv"}.get(path.suffix.lower())
    return parse_series(text, str(path), min_points=min_points, kind=kind)


def _read_metric(settings: Settings, name: str, min_points: int
                 ) -> tuple[FloatArray, FloatArray]:
    from skyline.analysis.series_text import check_series
    from skyline.store import keys
    from skyline.store.hotstore import HotStore
    from skyline.store.redis_client import redis_session

    with redis_session(settings) as h:
        series = HotStore(h.client).read_one(name)
        if not len(series) and not h.client.sismember(keys.METRIC_INDEX, name):
            raise NotFound(f"no metric named {name!r} (see `skyline metrics list`)")
    check_series(series.timestamps, name, min_points)
    return series.timestamps, series.values


def _replay(pipeline: Pipeline, metric: str, t: FloatArray, v: FloatArray, expiration: float,
            show_progress: bool) -> Replay:
    from skyline.analysis.crucible import replay_series

    if not show_progress:
        return replay_series(pipeline, metric, t, v, expiration=expiration)
    with click.progressbar(length=len(t), label="replay", file=sys.stderr,
                           show_pos=True) as bar:
        return replay_series(pipeline, metric, t, v, expiration=expiration,
                             progress=bar.update)


def _as_json(source: str, ex: Examination, rp: Replay | None, plot: str | None,
             expiration: float) -> dict[str, Any]:
    out: dict[str, Any] = {
        "source": source, "points": ex.points, "status": ex.status, "detector": ex.detector,
        "timestamp": ex.timestamp, "value": ex.value, "anomalous": ex.anomalous,
        "candidate": ex.candidate, "event": ex.event or None,
        "score": ex.score, "judged": ex.judged,
        "band": [_finite(ex.band_low), _finite(ex.band_high)],
        "stages": [dataclasses.asdict(s) for s in ex.stages],
        "triggered": list(ex.triggered),
        "algorithms": [dataclasses.asdict(r) for r in ex.results],
    }
    if ex.consensus:
        out.update(votes=ex.votes, opinions=ex.opinions, consensus=ex.consensus)
    if rp is not None:
        out["replay"] = {
            "expiration": expiration, "points_judged": rp.judged,
            "anomalous_points": rp.anomalous_count,
            "events": [dataclasses.asdict(e) | {"triggered": list(e.triggered)}
                       for e in rp.events],
            "alerts": [e.timestamp for e in rp.alerts],
        }
    if plot:
        out["plot"] = plot
    return out


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _verdict_line(ex: Examination) -> str:
    at = f"at {iso(ex.timestamp)} (value {ex.value:.6g}, score {ex.score:.2f})"
    if not ex.judged:
        return f"{ex.detector}: not judged ({ex.status}) {at}"
    if ex.event == "vetoed":
        veto = next((s for s in ex.stages if s.verdict == "veto"), None)
        why = f" by {veto.stage}: {veto.reason}" if veto is not None else ""
        return f"{ex.detector}: ANOMALOUS candidate, VETOED{why} {at}"
    if ex.consensus:
        head = (f"consensus: {ex.votes} of {ex.opinions} algorithms with an opinion said "
                f"anomalous (CONSENSUS {ex.consensus}): ")
    else:
        head = f"{ex.detector}: "
    if ex.anomalous:
        return head + f"ANOMALOUS {at}"
    if ex.event in ("recovered", "new_level"):
        return head + f"not anomalous ({ex.event.replace('_', ' ')}) {at}"
    return head + f"not anomalous {at}"


def _text(source: str, ex: Examination, rp: Replay | None, plot: str | None,
          expiration: float, t: FloatArray) -> list[str]:
    lines = [f"{source}: {ex.points} points, {iso(float(t[0]))} to {iso(float(t[-1]))}; "
             f"{len(ex.window_values)} analysed (status: {ex.status})"]
    width = max((len(r.algorithm) for r in ex.results), default=10)
    for r in ex.results:
        verdict = {True: "ANOMALOUS", False: "normal", None: "-"}[r.verdict]
        lines.append(f"  {r.algorithm:<{width}}  {verdict:<9}  {r.text}")
    for st in ex.stages:
        lines.append(f"  stage {st.stage}: {st.verdict}: {st.reason}")
    lines.append(_verdict_line(ex))
    if rp is not None:
        anomalous = [e for e in rp.events if e.status == "anomalous"]
        vetoed = [e for e in rp.events if e.status == "vetoed"]
        lines.append(f"replay: {rp.judged} points judged, {rp.anomalous_count} anomalous; "
                     f"{len(anomalous)} anomaly events ({len(vetoed)} more vetoed), "
                     f"{len(rp.alerts)} alerts (EXPIRATION_TIME {expiration:g} s)")
        for e in rp.events:
            if e.status == "anomalous":
                what = ("ALERT  " if e.alert else "event  ") + \
                    f"score {e.score:.2f}  {', '.join(e.triggered)}"
            elif e.status == "vetoed":
                what = f"vetoed  score {e.score:.2f}  {e.reason}"
            else:
                what = e.status.replace("_", " ")
            lines.append(f"  {iso(e.timestamp)} ({e.timestamp:.0f})  value {e.value:.6g}  {what}")
    if plot:
        lines.append(f"plot: {plot}")
    return lines


@click.command()
@click.argument("path", required=False, type=click.Path(path_type=Path, dir_okay=False))
@click.option("--metric", help="Analyse this metric from the hot store instead of a file.")
@click.option("--algorithms", help="Comma-separated algorithms to vote (CONSENSUS of them) "
              "instead of the analyzer's own judgement (its detector, custom algorithms used "
              "with crucible, and stages).")
@click.option("--replay", "do_replay", is_flag=True,
              help="Run every point through the pipeline in order, as the analyzer would "
              "have, and list its events and where it would have alerted.")
@click.option("--plot", type=click.Path(path_type=Path, dir_okay=False),
              help="Write a PNG of the series with the anomalous points marked.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_obj
def crucible(obj: _HasSettings, path: Path | None, metric: str | None, algorithms: str | None,
             do_replay: bool, plot: Path | None, as_json: bool) -> None:
    """Analyse one series: a CSV (timestamp,value; header optional) or JSON ([[t, v], ...]
    or {"points": ...}) file, or --metric NAME from the hot store. Prints what the analyzer
    would say about its newest point (the detector, each opinion's explanation, the stages)."""
    from skyline.analysis.crucible import crucible_pipeline, examine

    if (path is None) == (metric is None):
        raise click.UsageError("give a PATH or --metric NAME (one of them)")
    settings = obj.settings()
    min_points = settings.MIN_TOLERABLE_LENGTH
    if path is not None:
        t, v = _read_file(path, min_points)
        source, name, now = str(path), path.stem, None
    else:
        assert metric is not None
        settings = obj.data_settings()
        t, v = _read_metric(settings, metric, min_points)
        source, name, now = metric, metric, time.time()
    expiration = float(settings.EXPIRATION_TIME)
    rp = None
    with crucible_pipeline(settings, algorithms) as pipeline:
        ex = examine(pipeline, name, t, v, now=now,
                     detector="algorithms" if algorithms else None)
        if do_replay or plot is not None:
            # a progress bar only for a person watching: piped, click would print a bare label
            rp = _replay(pipeline, name, t, v, expiration, show_progress=sys.stderr.isatty())
    plot_path = None
    if plot is not None:
        from skyline.plots.series import series_png

        assert rp is not None
        png = series_png(t, v, title=f"{source}: {rp.anomalous_count} anomalous points",
                         anomalous=rp.anomalous, alerts=[e.timestamp for e in rp.alerts],
                         recovered=[e.timestamp for e in rp.events
                                    if e.status in ("recovered", "new_level")])
        try:
            plot.write_bytes(png)
        except OSError as e:
            raise InvalidInput(f"{plot}: cannot write: {e.strerror or e}") from None
        plot_path = str(plot)
    shown = rp if do_replay else None
    if as_json:
        click.echo(json.dumps(_as_json(source, ex, shown, plot_path, expiration),
                              allow_nan=False))
    else:
        for line in _text(source, ex, shown, plot_path, expiration, t):
            click.echo(line)
