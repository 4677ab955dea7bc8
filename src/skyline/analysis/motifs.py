"""Ionosphere's matcher: motif search of a candidate's recent shape in a metric's profiles.

For each window (default the last 3, 6 and 12 hours before and including the candidate), the
candidate's points are put on each profile's grid and searched for in every profile's series
with MASS (Mueen's algorithm for similarity search): the z-normalised correlation of the window
with every subsequence of the same length, for all profiles at once, by one FFT product
(numpy; no JIT, nothing to warm up). A subsequence matches when all three hold:

- shape: correlation >= min_correlation (0.8; z-normalised Euclidean distance
  d = sqrt(2 m (1 - correlation)));
- range: the window's min and max lie within the subsequence's min and max widened by
  range_padding (10 %) of their magnitude (upstream's IONOSPHERE_INFERENCE_MOTIFS_RANGE_PADDING):
  an outage to zero never "matches" a profile that never went near zero, whatever its shape;
- area: the window's area under the curve within area_tolerance (20 %) of the subsequence's.

The best match (highest correlation) per label wins. Everything here is pure: no I/O, no clock.
A ProfileBank precomputes the profiles' transforms and rolling statistics once (per profile
version); a check then costs one small FFT per window and resolution, and a product.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from skyline.core.errors import InvalidInput
from skyline.core.ionosphere import Profile
from skyline.core.types import FloatArray

EPS = 1e-12


@dataclass(frozen=True)
class MotifRules:
    windows_hours: tuple[float, ...] = (3.0, 6.0, 12.0)
    min_correlation: float = 0.8
    range_padding: float = 0.1
    area_tolerance: float = 0.2
    max_gap: float = 0.25  # the longest gap in the window, as a fraction of the window
    top: int = 16  # shape matches per window checked for range, best first
    smooth: int = 1  # points of the trailing moving mean taken before comparing shapes
    time_of_day: float | None = None  # hours: the match must end this near the same time of day
    tail: float = 0.0  # fraction of the window: the candidate must lie within the tail's range
    anchor: float | None = None  # hours: the match must end this near the taught point
    min_points: int = 4  # a window of fewer points (at a profile's resolution) is not compared

    def __post_init__(self) -> None:
        if not self.windows_hours or any(not h > 0 for h in self.windows_hours):
            raise InvalidInput("motif windows must be positive hours")
        if not 0 < self.min_correlation <= 1:
            raise InvalidInput("min_correlation must be in (0, 1]")
        if self.range_padding < 0 or self.area_tolerance < 0:
            raise InvalidInput("range_padding and area_tolerance must not be negative")
        if self.smooth < 1:
            raise InvalidInput("smooth must be at least 1 point")
        if self.time_of_day is not None and not 0 <= self.time_of_day <= 12:
            raise InvalidInput("time_of_day must be 0 to 12 hours, or None")


@dataclass(frozen=True)
class MotifMatch:
    profile_id: int
    label: str
    window_hours: float
    correlation: float
    distance: float
    offset: float  # seconds from the profile's start to the matched subsequence's start
    points: int
    area_diff: float  # |area - profile's area| / |profile's area|
    low: float  # the padded range the window had to lie in
    high: float

    def figures(self) -> dict[str, float]:
        return {"profile_id": float(self.profile_id), "window_hours": self.window_hours,
                "correlation": round(self.correlation, 6), "distance": round(self.distance, 6),
                "offset": self.offset, "points": float(self.points),
                "area_diff": round(self.area_diff, 6), "low": self.low, "high": self.high}


@dataclass
class _Window:
    m: int
    hours: float
    raw: FloatArray  # k x width: each profile's part this window can match (zero-padded)
    crop: np.ndarray  # k: where that part starts in the profile
    nfft: int
    spectrum: np.ndarray  # k x (nfft/2+1): FFT of the smoothed, mean-shifted part
    sigma: FloatArray  # k x positions: rolling std of each (mean-shifted) profile row
    sums: FloatArray  # k x positions: rolling sums, raw values
    valid: np.ndarray  # k x positions
    end_tod: FloatArray  # k x positions: time of day of each subsequence's last point
    from_anchor: FloatArray  # k x positions: seconds from each subsequence's end to the anchor


def moving_mean(x: FloatArray, n: int) -> FloatArray:
    """Trailing moving mean over n points along the last axis (fewer at the start)."""
    if n <= 1:
        return x
    c = np.cumsum(x, axis=-1)
    out = c.copy()
    out[..., n:] = c[..., n:] - c[..., :-n]
    counts = np.minimum(np.arange(1, x.shape[-1] + 1), n)
    return out / counts


class _Group:
    """The profiles of one resolution, and per window the part of each that window can match
    (all of it; with the anchor rule only the stretch ending near the taught point, so the
    FFTs are short), stacked zero-padded with their FFTs."""

    def __init__(self, profiles: Sequence[Profile], resolution: float, rules: MotifRules):
        self.resolution = resolution
        self.profiles = list(profiles)
        k = len(self.profiles)
        self.lengths = np.array([len(p.values) for p in self.profiles], dtype=np.int64)
        L = int(self.lengths.max())
        self.shift = np.array([float(np.mean(p.values)) for p in self.profiles])
        starts = np.array([p.start for p in self.profiles])
        anchors = np.array([p.anchor for p in self.profiles])
        self.labels = np.array([p.label for p in self.profiles])
        smoothed = [moving_mean(np.asarray(p.values, dtype=np.float64), rules.smooth)
                    for p in self.profiles]
        at = np.clip(np.round((anchors - starts) / resolution).astype(np.int64), 0,
                     self.lengths - 1)
        slack = -1 if rules.anchor is None else int(math.ceil(rules.anchor * 3600.0
                                                              / resolution))
        scale = np.maximum(np.abs(self.shift), 1.0)[:, None]
        self.windows: list[_Window] = []
        for hours in rules.windows_hours:
            m = int(round(hours * 3600.0 / resolution))
            if m < max(4, rules.min_points) or m > L:
                continue
            if slack < 0:
                lo = np.zeros(k, dtype=np.int64)
                hi = self.lengths.copy()
            else:
                lo = np.maximum(at - m + 1 - slack, 0)
                hi = np.minimum(at + slack + 1, self.lengths)
            n = hi - lo
            W = int(n.max())
            if W < m:
                continue
            raw = np.zeros((k, W))
            shifted = np.zeros((k, W))
            for i, p in enumerate(self.profiles):
                a, b = int(lo[i]), int(hi[i])
                raw[i, :b - a] = p.values[a:b]
                shifted[i, :b - a] = smoothed[i][a:b] - self.shift[i]
            nfft = 1 << max(1, int(math.ceil(math.log2(W))))
            cs = np.zeros((k, W + 1))
            cs2 = np.zeros((k, W + 1))
            rcs = np.zeros((k, W + 1))
            np.cumsum(shifted, axis=1, out=cs[:, 1:])
            np.cumsum(shifted * shifted, axis=1, out=cs2[:, 1:])
            np.cumsum(raw, axis=1, out=rcs[:, 1:])
            s1 = cs[:, m:] - cs[:, :-m]
            s2 = cs2[:, m:] - cs2[:, :-m]
            mu = s1 / m
            sigma = np.sqrt(np.maximum(s2 / m - mu * mu, 0.0))
            pos = np.arange(W - m + 1)
            valid = pos[None, :] <= (n - m)[:, None]
            valid &= sigma > 1e-9 * scale  # a flat stretch has no shape to match
            ends = starts[:, None] + (lo[:, None] + pos[None, :] + m - 1) * resolution
            self.windows.append(_Window(
                m=m, hours=float(hours), raw=raw, crop=lo, nfft=nfft,
                spectrum=np.fft.rfft(shifted, nfft, axis=1), sigma=sigma,
                sums=rcs[:, m:] - rcs[:, :-m], valid=valid, end_tod=ends % 86400.0,
                from_anchor=np.abs(anchors[:, None] - ends)))


class ProfileBank:
    """One metric's enabled profiles, ready to be searched."""

    def __init__(self, profiles: Sequence[Profile], rules: MotifRules | None = None):
        self.rules = rules or MotifRules()
        self.profiles = [p for p in profiles if p.enabled and len(p.values) >= 4]
        by_res: dict[float, list[Profile]] = {}
        for p in self.profiles:
            by_res.setdefault(float(p.resolution), []).append(p)
        self.groups = [_Group(ps, r, self.rules) for r, ps in sorted(by_res.items())]

    def __len__(self) -> int:
        return len(self.profiles)

    def match(self, timestamps: FloatArray, values: FloatArray, at: float,
              stop: Callable[[], bool] | None = None) -> dict[str, MotifMatch] | None:
        """The best match per label ("not_anomalous", "anomalous") of the points up to and
        including `at`; a label without a match is absent. stop(): asked before each window
        search; when it says True the search is abandoned and None returned (a budget)."""
        t = np.asarray(timestamps, dtype=np.float64)
        v = np.asarray(values, dtype=np.float64)
        ok = np.isfinite(t) & np.isfinite(v) & (t <= at)
        t, v = t[ok], v[ok]
        best: dict[str, MotifMatch] = {}
        if len(t) < 4:
            return best
        for g in self.groups:
            for w in g.windows:
                if stop is not None and stop():
                    return None
                q = self._query(t, v, at, g.resolution, w.m)
                if q is None:
                    continue
                for found in self._search(g, w, q, at):
                    old = best.get(found.label)
                    if old is None or found.correlation > old.correlation:
                        best[found.label] = found
        return best

    def _query(self, t: FloatArray, v: FloatArray, at: float, res: float, m: int
               ) -> FloatArray | None:
        span = res * (m - 1)
        start = at - span
        if t[0] > start + 1e-9 or t[-1] < at - res:
            return None  # the window is not covered by the candidate's points
        inside = (t >= start) & (t <= at)
        tin = t[inside]
        if len(tin) < 4:
            return None
        edges = np.concatenate(([start], tin, [at]))
        if float(np.max(np.diff(edges))) > self.rules.max_gap * span:
            return None
        grid = at - res * np.arange(m - 1, -1, -1, dtype=np.float64)
        return np.interp(grid, t, v)

    def _search(self, g: _Group, w: _Window, q: FloatArray, at: float) -> list[MotifMatch]:
        r = self.rules
        m = w.m
        qs = moving_mean(q, r.smooth)
        sq = float(qs.std())
        mq = float(qs.mean())
        if not sq > 1e-9 * max(abs(mq), 1.0):
            return []  # a flat window has no shape
        qz = (qs - mq) / sq
        qt = np.fft.irfft(w.spectrum * np.fft.rfft(qz[::-1], w.nfft), w.nfft, axis=1)
        npos = w.sigma.shape[1]
        qt = qt[:, m - 1:m - 1 + npos]
        with np.errstate(divide="ignore", invalid="ignore"):
            corr = qt / (m * w.sigma)
        valid = w.valid
        if r.time_of_day is not None:
            d = np.abs(w.end_tod - at % 86400.0)
            valid = valid & (np.minimum(d, 86400.0 - d) <= r.time_of_day * 3600.0 + 1e-6)
        if r.anchor is not None:
            valid = valid & (w.from_anchor <= r.anchor * 3600.0 + 1e-6)
        corr = np.where(valid, corr, -np.inf)
        area_q = float(q.sum())
        area_diff = np.abs(area_q - w.sums) / np.maximum(np.abs(w.sums), EPS)
        keep = (corr >= r.min_correlation) & (area_diff <= r.area_tolerance)
        if not keep.any():
            return []
        rows, cols = np.nonzero(keep)
        order = np.argsort(-corr[rows, cols], kind="stable")
        qlo, qhi = float(q.min()), float(q.max())
        out: dict[str, MotifMatch] = {}
        checked = 0
        for o in order.tolist():
            i, j = int(rows[o]), int(cols[o])
            label = str(g.labels[i])
            if label in out:
                continue
            checked += 1
            seg = w.raw[i, j:j + m]
            lo, hi = float(seg.min()), float(seg.max())
            plo = lo - r.range_padding * abs(lo)
            phi = hi + r.range_padding * abs(hi)
            ok = plo - 1e-12 <= qlo and qhi <= phi + 1e-12
            if ok and r.tail > 0:
                k = max(2, int(round(m * r.tail)))
                tail = seg[-k:]
                pad = r.range_padding * (hi - lo)
                ok = float(tail.min()) - pad <= float(q[-1]) <= float(tail.max()) + pad
            if ok:
                c = float(min(corr[i, j], 1.0))
                out[label] = MotifMatch(
                    profile_id=g.profiles[i].id, label=label, window_hours=w.hours,
                    correlation=c, distance=math.sqrt(max(2.0 * m * (1.0 - c), 0.0)),
                    offset=(int(w.crop[i]) + j) * g.resolution, points=m,
                    area_diff=float(area_diff[i, j]),
                    low=plo, high=phi)
                if len(out) == 2:
                    break
            if checked >= r.top * 2:
                break
        return list(out.values())
