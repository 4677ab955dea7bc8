"""NAB corpus files as data: label windows, data rows and detector result rows.

Everything here parses or formats text; the CLI reads and writes the files, so this layer
does no I/O. NAB's contract is positional: a result file has exactly one row per data row, in
data-file order, and windows are found by exact timestamp match. Timestamps are therefore kept
twice: as the text written in the file (echoed unchanged into results, so windows keep
matching) and as integer microseconds (exact comparison, no float rounding).
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath

import numpy as np
import numpy.typing as npt
import pandas as pd

from skyline.core.errors import InvalidInput
from skyline.core.types import FloatArray

MicroArray = npt.NDArray[np.int64]
StrArray = npt.NDArray[np.str_]


def parse_timestamps(text: npt.ArrayLike, where: str) -> MicroArray:
    """NAB's 'YYYY-MM-DD HH:MM:SS[.ffffff]' (no zone; read as UTC) to integer microseconds."""
    try:
        return np.asarray(np.asarray(text, dtype="datetime64[us]").astype(np.int64))
    except ValueError as e:
        raise InvalidInput(f"{where}: unreadable timestamp ({e})") from None


@dataclass(frozen=True)
class Rows:
    """One NAB CSV (data or results) in file order."""

    timestamp_text: StrArray
    micros: MicroArray
    value_text: StrArray
    values: FloatArray
    scores: FloatArray | None = None  # results files only

    def __len__(self) -> int:
        return int(self.micros.shape[0])

    @property
    def seconds(self) -> FloatArray:
        return self.micros / 1e6


def _read_table(text: str, where: str, need: tuple[str, ...]) -> pd.DataFrame:
    try:
        frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except (ValueError, pd.errors.ParserError) as e:
        raise InvalidInput(f"{where}: not a CSV file ({e})") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    missing = [c for c in need if c not in frame.columns]
    if missing:
        raise InvalidInput(f"{where}: missing column(s) {', '.join(missing)} "
                           f"(found {', '.join(frame.columns) or 'none'})")
    return frame


def _floats(column: pd.Series, where: str, name: str) -> FloatArray:
    values = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64)
    bad = np.flatnonzero(np.isnan(values))
    if len(bad):
        row = int(bad[0])
        raise InvalidInput(f"{where}: row {row + 2}: {name} {column.iloc[row]!r} is not a number")
    return values


def parse_rows(text: str, where: str, *, results: bool = False) -> Rows:
    """A data file (timestamp,value) or, with results=True, a detector's output
    (timestamp,value,anomaly_score[,...]). Rows stay in file order, duplicates and all."""
    need = ("timestamp", "value", "anomaly_score") if results else ("timestamp", "value")
    frame = _read_table(text, where, need)
    ts = frame["timestamp"].to_numpy(dtype=str)
    value_text = frame["value"].to_numpy(dtype=str)
    scores = _floats(frame["anomaly_score"], where, "anomaly_score") if results else None
    # data values may legitimately be missing in other corpora; the analyzer drops NaN points
    values = pd.to_numeric(frame["value"], errors="coerce").to_numpy(dtype=np.float64)
    if not results and np.isnan(values).all() and len(values):
        raise InvalidInput(f"{where}: no numeric value in column 'value'")
    return Rows(ts, parse_timestamps(ts, where), value_text, values, scores)


def format_results(rows: Rows, scores: FloatArray) -> str:
    """NAB's raw results CSV: the data rows echoed verbatim, plus the score. repr() keeps every
    float's exact value, so a threshold read back from a sweep selects the same rows."""
    if len(scores) != len(rows):
        raise InvalidInput(f"{len(scores)} scores for {len(rows)} rows")
    lines = ["timestamp,value,anomaly_score"]
    lines += [f"{t},{v},{s!r}" for t, v, s in zip(rows.timestamp_text.tolist(),
                                                   rows.value_text.tolist(),
                                                   scores.tolist(), strict=True)]
    return "\n".join(lines) + "\n"


Windows = dict[str, list[tuple[int, int]]]  # file key -> [(start, end)] in microseconds


def parse_windows(text: str, where: str = "windows") -> Windows:
    """NAB's combined_windows.json: {"<category>/<file>.csv": [[start, end], ...]}."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as e:
        raise InvalidInput(f"{where}: not JSON ({e})") from None
    if not isinstance(raw, dict):
        raise InvalidInput(f"{where}: expected an object keyed by '<category>/<file>.csv'")
    out: Windows = {}
    for key, pairs in raw.items():
        if not isinstance(pairs, list) or not all(
                isinstance(p, list) and len(p) == 2 for p in pairs):
            raise InvalidInput(f"{where}: {key}: expected a list of [start, end] pairs")
        micros = parse_timestamps([str(x) for p in pairs for x in p] or np.empty(0, dtype=str),
                                  f"{where}: {key}").reshape(-1, 2)
        out[str(key)] = [(int(a), int(b)) for a, b in micros.tolist()]
    return out


def result_path(detector: str, key: str) -> PurePosixPath:
    """NAB's layout: '<category>/<file>.csv' -> '<detector>/<category>/<detector>_<file>.csv'."""
    key_path = PurePosixPath(key)
    return PurePosixPath(detector, *key_path.parent.parts, f"{detector}_{key_path.name}")


def result_key(detector: str, relative: PurePosixPath) -> str | None:
    """The inverse of result_path, for a path relative to the detector's directory; None when
    the file name is not '<detector>_<file>.csv'."""
    prefix = f"{detector}_"
    if not relative.name.startswith(prefix) or relative.suffix != ".csv":
        return None
    return str(PurePosixPath(*relative.parent.parts, relative.name[len(prefix):]))


def require_same_files(labelled: Mapping[str, object], found: Mapping[str, object],
                       what: str) -> None:
    """Scores are normalised by the corpus' windows, so a labelled file without output would
    silently change the number; refuse instead."""
    missing = sorted(set(labelled) - set(found))
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise InvalidInput(f"{what}: no file for {len(missing)} labelled file(s): "
                           f"{', '.join(missing[:3])}{more}")
