"""`skyline bench ionosphere`: what teaching removes and what it costs, on a labelled corpus.

Each file is replayed (skyline.analysis.replay, the analyzer's detector and incident rules at
their fixed settings: an open incident re-alerts once per EXPIRATION_TIME) twice:

- baseline: the pipeline as configured, without Ionosphere;
- taught: the same plus the Ionosphere stage and, last in the chain, a simulated operator. The
  operator sees every alert that fires (a candidate no stage vetoed) and labels it "not
  anomalous" only when it lies outside every labelled window, under a policy: every such alert
  or only the first k per metric; the profile (the alert's window, as the product stores it) is
  in force `delay` seconds after the alert. Profiles come only from alerts that fired; the
  matcher never sees a label.

Figures per policy: false alerts (outside every window) before -> after, the share removed with
a bootstrap 95 % interval over files, real alerts (inside a window) the stage vetoed as a share
of the baseline's real alerts, labelled windows lost (alerted before, not after) and gained, NAB
scores of both runs at the fixed threshold (an alert is a detection), labels used, and the
stage's cost per candidate of a metric with profiles (p50/p99 ms). A separate timing checks the
target case: 50 profiles of 1,440 points.

The synthetic corpus (generate()) is seeded: metrics with recurring benign jobs (weekly, or
every 2 or 3 days: longer than the detector's day-long window, so each repeat alerts) and
injected anomalies of other shapes (spike, outage to zero, level shift, a larger job).
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from skyline.analysis.ionosphere import IonosphereConfig, IonosphereStage, MemoryProfiles
from skyline.analysis.motifs import MotifRules
from skyline.analysis.pipeline import Pipeline
from skyline.analysis.stages import Candidate, Stages
from skyline.core.events import StageVerdict
from skyline.core.ionosphere import Profile, regularise
from skyline.core.types import FloatArray

HOUR = 3600.0
DAY = 86400.0


@dataclass(frozen=True)
class Policy:
    delay: float  # seconds from the alert to the profile being in force
    first_k: int | None = None  # None: every false alert

    @property
    def name(self) -> str:
        who = "every" if self.first_k is None else f"first{self.first_k}"
        return f"{who}-{self.delay / HOUR:g}h"


POLICIES = (Policy(HOUR), Policy(DAY), Policy(HOUR, 1), Policy(HOUR, 3), Policy(DAY, 1),
            Policy(DAY, 3))
HEADLINE = Policy(HOUR)


@dataclass
class Operator:
    """The last stage: abstains always, and labels what alerts as the policy says."""

    windows: Mapping[str, Sequence[tuple[float, float]]]
    policy: Policy
    profiles: MemoryProfiles
    name: str = "operator"
    labels: int = 0
    _per_metric: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    first_effective: dict[str, float] = field(default_factory=dict)

    def check(self, c: Candidate, deadline: float) -> StageVerdict:
        inside = any(a <= c.timestamp <= b for a, b in self.windows.get(c.metric, ()))
        k = self.policy.first_k
        if not inside and (k is None or self._per_metric[c.metric] < k):
            try:
                start, res, values = regularise(c.window_timestamps, c.window_values)
            except ValueError:
                return StageVerdict(self.name, "abstain", "")
            self.labels += 1
            self._per_metric[c.metric] += 1
            self.first_effective.setdefault(c.metric, c.timestamp + self.policy.delay)
            self.profiles.add(Profile(id=self.labels, metric=c.metric, label="not_anomalous",
                                      start=start, resolution=res, values=values,
                                      anchor=c.timestamp, who="operator"),
                              effective=c.timestamp + self.policy.delay)
        return StageVerdict(self.name, "abstain", "")


@dataclass
class FileOutcome:
    key: str
    alerts: list[float]  # alerted timestamps
    vetoed: list[float]
    stage_ms: list[float]


def outcomes(keys: Sequence[str], replays: Sequence[Any]) -> list[FileOutcome]:
    out = []
    for key, r in zip(keys, replays, strict=True):
        alerts, vetoed, ms = [], [], []
        for e in r.events:
            if e.status == "anomalous":
                alerts.append(e.timestamp)
            elif e.status == "vetoed":
                vetoed.append(e.timestamp)
            for v in e.stages:
                if v.stage == "ionosphere" and "profiles" in v.figures:
                    ms.append(v.ms)
        out.append(FileOutcome(key, alerts, vetoed, ms))
    return out


def taught_pipeline(base: Pipeline, windows: Mapping[str, Sequence[tuple[float, float]]],
                    policy: Policy, rules: MotifRules) -> tuple[Pipeline, Operator]:
    """`base` with the Ionosphere stage and the operator appended (budgets lifted: the
    benchmark measures what matches, and times the stage separately)."""
    profiles = MemoryProfiles(rules)
    stage = IonosphereStage(IonosphereConfig(mode="on", rules=rules, budget=1e9), profiles)
    op = Operator(windows, policy, profiles)
    return base.with_stages(Stages([*base.stages.stages, stage, op], budget=1e9)), op


def _inside(ts: Sequence[float], windows: Sequence[tuple[float, float]]) -> np.ndarray:
    t = np.asarray(ts, dtype=np.float64)
    hit = np.zeros(len(t), dtype=bool)
    for a, b in windows:
        hit |= (t >= a) & (t <= b)
    return hit


def _window_hits(ts: Sequence[float], windows: Sequence[tuple[float, float]]) -> list[bool]:
    t = np.asarray(ts, dtype=np.float64)
    return [bool(((t >= a) & (t <= b)).any()) for a, b in windows]


def bootstrap_removed(before: np.ndarray, after: np.ndarray, n: int = 2000,
                      seed: int = 0) -> tuple[float, float]:
    """95 % interval of the share of false alerts removed, resampling files."""
    if before.sum() <= 0:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(before), size=(n, len(before)))
    b = before[idx].sum(axis=1)
    a = after[idx].sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(b > 0, 100.0 * (b - a) / b, np.nan)
    share = share[np.isfinite(share)]
    if not len(share):
        return (math.nan, math.nan)
    lo, hi = np.percentile(share, [2.5, 97.5])
    return (round(float(lo), 2), round(float(hi), 2))


def compare(windows: Mapping[str, Sequence[tuple[float, float]]],
            base: Sequence[FileOutcome], taught: Sequence[FileOutcome],
            first_effective: Mapping[str, float] | None = None) -> dict[str, Any]:
    """The figures of one policy. first_effective: per metric, when its first profile came
    into force; false alerts after it are repeats (what teaching can remove)."""
    fa_b, fa_a, real_b, real_vetoed = [], [], 0, 0
    repeats = repeats_removed = 0
    lost = gained = total_windows = 0
    ms: list[float] = []
    for b, a in zip(base, taught, strict=True):
        w = windows.get(b.key, ())
        ib = _inside(b.alerts, w)
        ia = _inside(a.alerts, w)
        fa_b.append(int((~ib).sum()))
        fa_a.append(int((~ia).sum()))
        real_b += int(ib.sum())
        real_vetoed += int(_inside(a.vetoed, w).sum())
        since = (first_effective or {}).get(b.key)
        if since is not None:
            fv = np.asarray(a.vetoed)[~_inside(a.vetoed, w)] if a.vetoed else np.empty(0)
            fl = np.asarray(a.alerts)[~ia] if a.alerts else np.empty(0)
            gone = int((fv >= since).sum())
            repeats_removed += gone
            repeats += gone + int((fl >= since).sum())
        hb, ha = _window_hits(b.alerts, w), _window_hits(a.alerts, w)
        total_windows += len(w)
        lost += sum(x and not y for x, y in zip(hb, ha, strict=True))
        gained += sum(y and not x for x, y in zip(hb, ha, strict=True))
        ms += a.stage_ms
    before, after = np.array(fa_b), np.array(fa_a)
    removed = 100.0 * (before.sum() - after.sum()) / before.sum() if before.sum() else math.nan
    return {
        "false_alerts_before": int(before.sum()), "false_alerts_after": int(after.sum()),
        "false_alerts_removed_pct": round(float(removed), 2),
        "false_alerts_removed_ci95": list(bootstrap_removed(before, after)),
        "repeat_false_alerts": repeats,
        "repeat_false_alerts_removed_pct": round(100.0 * repeats_removed / repeats, 2)
        if repeats else None,
        "real_alerts_before": real_b, "real_alerts_suppressed": real_vetoed,
        "real_alerts_suppressed_pct": round(100.0 * real_vetoed / real_b, 2) if real_b else 0.0,
        "windows": total_windows, "windows_lost": lost, "windows_gained": gained,
        "stage_calls": len(ms),
        "stage_p50_ms": round(float(np.percentile(ms, 50)), 3) if ms else None,
        "stage_p99_ms": round(float(np.percentile(ms, 99)), 3) if ms else None,
    }


def time_stage(n_profiles: int = 50, points: int = 1440, candidates: int = 300,
               seed: int = 1, rules: MotifRules | None = None) -> dict[str, float]:
    """The stage's cost per candidate against n_profiles profiles of `points` points each
    (60-s steps), on random-walk candidates that mostly do not match: every window is
    searched. The first call builds the metric's bank (once per profile version live) and
    is reported apart."""
    rng = np.random.default_rng(seed)
    rules = rules or MotifRules()
    profiles = MemoryProfiles(rules)
    t0 = 1_700_000_000.0
    for i in range(n_profiles):
        v = 100 + rng.normal(0, 1, points).cumsum()
        profiles.add(Profile(id=i + 1, metric="m", label="not_anomalous", start=t0,
                             resolution=60.0, values=v, anchor=t0 + 60.0 * (points - 1)))
    stage = IonosphereStage(IonosphereConfig(rules=rules, budget=1e9), profiles)
    t = np.asarray(t0 + 86400 * 30 + 60.0 * np.arange(points), dtype=np.float64)
    cands = [Candidate("m", float(t[-1]), 0.0, 1.0, 0.0, 1.0, t,
                       100 + rng.normal(0, 1, points).cumsum()) for _ in range(candidates)]
    s0 = time.perf_counter()
    stage.check(cands[0], math.inf)
    build = (time.perf_counter() - s0) * 1000.0
    ms, cpu = [], []
    for c in cands[1:]:
        s, p = time.perf_counter(), time.process_time()
        stage.check(c, math.inf)
        ms.append((time.perf_counter() - s) * 1000.0)
        cpu.append((time.process_time() - p) * 1000.0)
    return {"profiles": float(n_profiles), "points": float(points),
            "first_call_ms": round(build, 3),
            "p50_ms": round(float(np.percentile(ms, 50)), 3),
            "p99_ms": round(float(np.percentile(ms, 99)), 3),
            # CPU time: what the stage costs, without the waits of a loaded machine
            "cpu_p50_ms": round(float(np.percentile(cpu, 50)), 3),
            "cpu_p99_ms": round(float(np.percentile(cpu, 99)), 3)}


# -- the synthetic corpus ----------------------------------------------------------------------

@dataclass(frozen=True)
class SyntheticSpec:
    metrics: int = 24
    days: int = 35
    step: float = 300.0
    seed: int = 1
    anomalies: int = 2  # injected per metric, after the first week


@dataclass
class SyntheticFile:
    key: str
    timestamps: FloatArray
    values: FloatArray
    windows: list[tuple[float, float]]
    kinds: list[str]


def generate(spec: SyntheticSpec = SyntheticSpec()) -> list[SyntheticFile]:
    """Seeded metrics with a daily wave, noise, a recurring benign job, and injected anomalies
    (labelled windows: one hour either side) away from the jobs."""
    rng = np.random.default_rng(spec.seed)
    n = int(spec.days * DAY / spec.step)
    t0 = 1_704_067_200.0  # 2024-01-01, a Monday
    t = np.asarray(t0 + spec.step * np.arange(n), dtype=np.float64)
    tod = (t - t0) % DAY
    out = []
    periods = (7 * DAY, 2 * DAY, 3 * DAY)
    for m in range(spec.metrics):
        level = float(rng.choice([0.5, 10.0, 100.0, 1e4, 1e5]))
        noise = 0.02 + 0.03 * rng.random()
        v = level * (1 + 0.15 * np.sin(2 * np.pi * tod / DAY + rng.random() * 6)
                     + noise * rng.normal(size=n))
        period = periods[m % len(periods)]
        job_at = float(rng.integers(0, 24)) * HOUR
        job_len = float(rng.choice([20, 30, 45, 60])) * 60
        job_h = float(rng.uniform(0.4, 1.0))
        starts = np.arange(t0 + job_at, t[-1], period)
        busy = np.zeros(n, dtype=bool)
        for s in starts:
            sel = (t >= s) & (t < s + job_len)
            ramp = np.minimum(1.0, (t[sel] - s) / 600.0 + 0.3)  # the job's own shape
            v[sel] += level * job_h * ramp * (1 + 0.05 * rng.normal(size=int(sel.sum())))
            busy |= (t >= s - 3 * HOUR) & (t < s + job_len + 3 * HOUR)
        windows, kinds = [], []
        free = np.flatnonzero(~busy & (t > t0 + 7 * DAY) & (t < t[-1] - 6 * HOUR))
        for _ in range(spec.anomalies):
            if not len(free):
                break
            i = int(rng.choice(free))
            kind = str(rng.choice(["spike", "outage", "shift", "bigjob"]))
            at = float(t[i])
            if kind == "spike":
                v[i:i + 3] += level * rng.uniform(1.0, 2.0)
                end = at + 3 * spec.step
            elif kind == "outage":
                k = int(HOUR / spec.step)
                v[i:i + k] = 0.0
                end = at + HOUR
            elif kind == "shift":
                k = int(4 * HOUR / spec.step)
                v[i:i + k] += level * 0.8
                end = at + 4 * HOUR
            else:
                k = int(job_len / spec.step)
                v[i:i + k] += level * job_h * 3
                end = at + job_len
            windows.append((at - HOUR, end + HOUR))
            kinds.append(kind)
            free = free[np.abs(t[free] - at) > 2 * DAY]
        order = sorted(range(len(windows)), key=lambda j: windows[j][0])
        out.append(SyntheticFile(f"synthetic/metric_{m:02d}.csv", t.copy(), v,
                                 [windows[j] for j in order], [kinds[j] for j in order]))
    return out
