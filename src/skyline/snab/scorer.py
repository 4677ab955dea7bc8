"""A NAB-compatible scorer, written from the benchmark's rules (docs/benchmarks.md).

Per file of N rows: the first P = min(floor(0.15 N), 750) rows are probationary and ignored.
A row at or after P is a detection when its anomaly_score >= threshold. Each label window
(rows a..b, width w) adds A_TP * S(-(b - i + 1) / w) / S(-1) for its earliest detection i, or
-A_FN when it has none; a detection outside every window adds A_FP * S((i - b) / (w - 1)) for
the most recent window before it (end b, width w), or -A_FP before the first window. S is the
scaled sigmoid 2 / (1 + exp(5y)) - 1, and -1 beyond y = 3. The corpus raw score is the sum
over files; one threshold per profile, shared by every file, maximises it; the normalised
score is 100 (raw - null) / (perfect - null) with perfect = A_TP W and null = -A_FN W.

The sweep is exact and vectorised: each scorable row is an event (threshold = its score,
change of the raw score when it becomes a detection). A false positive's change does not
depend on any other detection. A window's value is the best credit among its detected rows,
which (credit falling along the window) is its earliest detection; ordered by descending score
the window's running best only rises, so each row's change is the rise it causes. The raw
score at threshold u is then the null score plus the sum of the changes of events >= u.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from skyline.core.errors import InvalidInput
from skyline.core.types import FloatArray
from skyline.snab.corpus import MicroArray

IntArray = npt.NDArray[np.int64]

PROBATION_FRACTION = 0.15
PROBATION_CAP = 750
NO_DETECTIONS = math.inf  # the threshold "above every score"


@dataclass(frozen=True)
class Profile:
    """Application profile: weights as magnitudes (NAB's config/profiles.json)."""

    name: str
    tp: float
    fp: float
    fn: float
    tn: float = 1.0  # part of NAB's profiles; it does not enter the score


PROFILES: tuple[Profile, ...] = (
    Profile("standard", tp=1.0, fp=0.11, fn=1.0),
    Profile("reward_low_FP_rate", tp=1.0, fp=0.22, fn=1.0),
    Profile("reward_low_FN_rate", tp=1.0, fp=0.11, fn=2.0),
)


def scaled_sigmoid(y: npt.ArrayLike) -> FloatArray:
    y = np.asarray(y, dtype=np.float64)
    with np.errstate(over="ignore"):  # exp overflows to inf for large y: S -> -1, as intended
        s = 2.0 / (1.0 + np.exp(5.0 * y)) - 1.0
    return np.asarray(np.where(y > 3.0, -1.0, s), dtype=np.float64)


S_MINUS_ONE = float(scaled_sigmoid(-1.0))


def probationary_rows(n: int) -> int:
    return min(math.floor(PROBATION_FRACTION * n), PROBATION_CAP)


def locate_windows(key: str, micros: MicroArray,
                   windows: Sequence[tuple[int, int]]) -> IntArray:
    """Windows as inclusive (start row, end row), found by the first exact timestamp match in
    file order (files repeat timestamps and may step back in time, so no search by order)."""
    out = np.zeros((len(windows), 2), dtype=np.int64)
    first: dict[int, int] = {}
    wanted = {t for pair in windows for t in pair}
    for i in np.flatnonzero(np.isin(micros, list(wanted))).tolist():
        first.setdefault(int(micros[i]), i)
    for k, (start, end) in enumerate(windows):
        for j, t in enumerate((start, end)):
            if t not in first:
                stamp = np.datetime64(int(t), "us")
                raise InvalidInput(f"{key}: window {'end' if j else 'start'} {stamp} is not a "
                                   "timestamp of any row")
            out[k, j] = first[t]
    if len(out) and bool(np.any(out[:, 1] < out[:, 0])):
        raise InvalidInput(f"{key}: a window ends before it starts")
    if len(out) > 1 and bool(np.any(out[1:, 0] <= out[:-1, 1])):
        raise InvalidInput(f"{key}: windows overlap or are out of order (NAB merges them)")
    return out


@dataclass(frozen=True)
class ScoredFile:
    """What the scorer needs of one file: its anomaly scores and located windows."""

    key: str
    scores: FloatArray
    windows: IntArray  # (k, 2) inclusive row indices

    def __post_init__(self) -> None:
        if not np.isfinite(self.scores).all():
            raise InvalidInput(f"{self.key}: anomaly scores must be finite numbers")


@dataclass(frozen=True)
class _Events:
    """Every scorable row of the corpus, flattened (profile-independent parts)."""

    score: FloatArray
    file: IntArray
    window: IntArray  # global window id, -1 outside every window
    unit: FloatArray  # S(y)/S(-1) in a window (credit per A_TP); S(y) outside (per A_FP)
    n_windows: int
    window_file: IntArray  # file of each global window


def _file_events(n: int, windows: IntArray) -> tuple[IntArray, IntArray, FloatArray]:
    """Rows P..n-1 with their window (local id or -1) and unit credit or cost."""
    rows = np.arange(probationary_rows(n), n, dtype=np.int64)
    window = np.full(len(rows), -1, dtype=np.int64)
    unit = np.full(len(rows), -1.0)  # before the first window: a full false positive
    if len(windows) == 0:
        return rows, window, unit
    starts, ends = windows[:, 0], windows[:, 1]
    # the last window starting at or before each row; the row is inside it unless past its end
    k = np.searchsorted(starts, rows, side="right") - 1
    has = k >= 0
    kk = np.maximum(k, 0)
    inside = has & (rows <= ends[kk])
    width = (ends - starts + 1).astype(np.float64)
    y_in = -(ends[kk] - rows + 1) / width[kk]
    window[inside] = k[inside]
    unit[inside] = scaled_sigmoid(y_in[inside]) / S_MINUS_ONE
    after = has & ~inside
    with np.errstate(divide="ignore", invalid="ignore"):
        # a one-row window has no width to scale by: anything after it is a full FP
        y_out = np.where(width[kk] > 1, (rows - ends[kk]) / (width[kk] - 1), np.inf)
    unit[after] = scaled_sigmoid(y_out[after])
    return rows, window, unit


def _events(files: Sequence[ScoredFile]) -> _Events:
    scores, file_ids, windows, units, window_file = [], [], [], [], []
    offset = 0
    for f_id, f in enumerate(files):
        rows, window, unit = _file_events(len(f.scores), f.windows)
        scores.append(f.scores[rows])
        file_ids.append(np.full(len(rows), f_id, dtype=np.int64))
        windows.append(np.where(window >= 0, window + offset, -1))
        units.append(unit)
        window_file.append(np.full(len(f.windows), f_id, dtype=np.int64))
        offset += len(f.windows)
    cat = np.concatenate
    return _Events(cat(scores) if scores else np.empty(0),
                   cat(file_ids) if file_ids else np.empty(0, dtype=np.int64),
                   cat(windows) if windows else np.empty(0, dtype=np.int64),
                   cat(units) if units else np.empty(0), offset,
                   cat(window_file) if window_file else np.empty(0, dtype=np.int64))


@dataclass(frozen=True)
class ProfileScore:
    profile: str
    threshold: float  # NO_DETECTIONS (inf) when the best is to detect nothing
    raw: float
    score: float  # normalised; NaN when the corpus has no window
    tp: int  # windows detected
    fn: int  # windows missed
    fp: int  # detections outside every window
    detections: int
    per_file_raw: tuple[float, ...] = field(default=(), repr=False)

    def as_dict(self) -> dict[str, object]:
        return {"threshold": None if math.isinf(self.threshold) else self.threshold,
                "score": None if math.isnan(self.score) else round(self.score, 6),
                "raw": round(self.raw, 6), "tp": self.tp, "fn": self.fn, "fp": self.fp,
                "detections": self.detections}


def normalise(raw: float, profile: Profile, n_windows: int) -> float:
    perfect = profile.tp * n_windows
    null = -profile.fn * n_windows
    if perfect == null:
        return math.nan
    return 100.0 * (raw - null) / (perfect - null)


def _at(ev: _Events, profile: Profile, threshold: float, n_files: int) -> ProfileScore:
    """Direct evaluation at one threshold (also the check on the sweep)."""
    det = ev.score >= threshold
    fp_rows = det & (ev.window < 0)
    best = np.full(ev.n_windows, -np.inf)
    in_win = det & (ev.window >= 0)
    np.maximum.at(best, ev.window[in_win], ev.unit[in_win])
    hit = np.isfinite(best)
    window_value = np.where(hit, profile.tp * best, -profile.fn)
    per_file = (np.bincount(ev.file[fp_rows], weights=profile.fp * ev.unit[fp_rows],
                            minlength=n_files)
                + np.bincount(ev.window_file, weights=window_value, minlength=n_files))
    raw = float(per_file.sum())
    return ProfileScore(profile.name, threshold, raw, normalise(raw, profile, ev.n_windows),
                        tp=int(hit.sum()), fn=int((~hit).sum()), fp=int(fp_rows.sum()),
                        detections=int(det.sum()), per_file_raw=tuple(per_file.tolist()))


def _sweep(ev: _Events, profile: Profile) -> float:
    """The threshold maximising the corpus raw score; the highest one among equals."""
    in_win = ev.window >= 0
    # false positives: each costs the same whatever else is detected
    fp_thr = ev.score[~in_win]
    fp_gain = profile.fp * ev.unit[~in_win]
    # windows: rows of each window by descending score; the running best credit only rises
    w_rows = np.flatnonzero(in_win)
    order = w_rows[np.lexsort((-ev.score[w_rows], ev.window[w_rows]))]
    wid = ev.window[order]
    credit = ev.unit[order]  # in (0, 1]
    # a per-window running maximum with one global accumulate: window g's values are
    # shifted into (2g, 2g + 1], above every earlier window's, so each group restarts
    running = np.maximum.accumulate(credit + 2.0 * wid) - 2.0 * wid
    first = np.ones(len(order), dtype=bool)
    first[1:] = wid[1:] != wid[:-1]
    previous = np.empty(len(order))
    previous[1:] = running[:-1]
    win_gain = np.where(first, profile.tp * running + profile.fn,
                        profile.tp * (running - previous))
    thr = np.concatenate([fp_thr, ev.score[order]])
    gain = np.concatenate([fp_gain, win_gain])
    if len(thr) == 0:
        return NO_DETECTIONS
    by = np.argsort(-thr, kind="stable")
    thr, total = thr[by], np.cumsum(gain[by])
    # the raw score at a distinct threshold includes every event tied with it
    last_of_tie = np.ones(len(thr), dtype=bool)
    last_of_tie[:-1] = thr[1:] != thr[:-1]
    candidates = np.concatenate([[NO_DETECTIONS], thr[last_of_tie]])
    gains = np.concatenate([[0.0], total[last_of_tie]])
    return float(candidates[int(np.argmax(gains))])  # argmax: the first (highest) of equals


@dataclass(frozen=True)
class CorpusScore:
    files: tuple[str, ...]
    n_windows: int
    profiles: dict[str, ProfileScore]

    def as_dict(self, per_file: bool = False) -> dict[str, object]:
        out: dict[str, object] = {
            "files": len(self.files), "windows": self.n_windows,
            "profiles": {name: p.as_dict() for name, p in self.profiles.items()},
        }
        if per_file:
            out["per_file_raw"] = {
                key: {name: round(p.per_file_raw[i], 6) for name, p in self.profiles.items()}
                for i, key in enumerate(self.files)}
        return out


def score_corpus(files: Iterable[ScoredFile], *, profiles: Sequence[Profile] = PROFILES,
                 thresholds: Mapping[str, float] | None = None) -> CorpusScore:
    """Score a corpus per profile: with the optimised threshold (NAB's in-sample sweep over
    every distinct scorable score), or with thresholds given per profile name (tuned on other
    data, for out-of-sample figures)."""
    files = list(files)
    ev = _events(files)
    out = {}
    for p in profiles:
        if thresholds is not None:
            if p.name not in thresholds:
                raise InvalidInput(f"no threshold given for profile {p.name}")
            thr = float(thresholds[p.name])
        else:
            thr = _sweep(ev, p)
        out[p.name] = _at(ev, p, thr, len(files))
    return CorpusScore(tuple(f.key for f in files), ev.n_windows, out)
