"""The Ionosphere stage: operators teach what is not anomalous (or is), and a candidate that
looks like what they taught is vetoed (or confirmed).

A profile is an anomaly's stored window (the analysis points the detector saw), labelled by an
operator "not anomalous" or "real anomaly" (docs/ionosphere.md). The stage is consulted for
every candidate but does work only when the candidate's metric has enabled profiles: it reads
the profile cache's version and the metric's membership in one Redis round trip, and keeps
each metric's ProfileBank (analysis.motifs) until the version changes. Then it searches the
candidate's last 3, 6 and 12 hours in the profiles (MASS, shape AND range AND area) and:

- a match with a "real anomaly" profile: confirm (a real incident is never silenced by a
  look-alike not-anomalous profile);
- else a match with a "not anomalous" profile: veto (mode on), or abstain saying it would have
  vetoed (mode shadow); the match's figures travel on the verdict and panorama records the
  match in SQL;
- else abstain.

It fails open: over its budget (ionosphere.budget, within the chain's), without a Redis
client, or on any error (the chain turns an exception into an abstention), the candidate
goes on to alert.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from skyline.analysis.motifs import MotifMatch, MotifRules, ProfileBank
from skyline.analysis.stages import Candidate, StageContext
from skyline.core.errors import InvalidInput
from skyline.core.events import StageVerdict
from skyline.core.ionosphere import Profile
from skyline.core.timeutil import iso
from skyline.core.types import FloatArray
from skyline.store import ionosphere_cache as cache
from skyline.store import keys

NAME = "ionosphere"
MODES = ("off", "shadow", "on")


@dataclass(frozen=True)
class IonosphereConfig:
    """The stage's settings, resolved (picklable: it travels to the analyzer's workers)."""

    mode: str = "on"
    rules: MotifRules = field(default_factory=MotifRules)
    budget: float = 0.25

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise InvalidInput(f"ionosphere mode must be one of {', '.join(MODES)}")
        if not self.budget > 0:
            raise InvalidInput("ionosphere budget must be positive")

    @staticmethod
    def from_settings(s: Any) -> IonosphereConfig:
        return IonosphereConfig.from_table(s.ionosphere)

    @staticmethod
    def from_table(i: Any) -> IonosphereConfig:
        """From an [ionosphere] table (settings.ionosphere.IonosphereSettings)."""
        return IonosphereConfig(
            mode=i.mode, budget=i.budget,
            rules=MotifRules(windows_hours=tuple(float(h) for h in i.windows_hours),
                             min_correlation=i.min_correlation, range_padding=i.range_padding,
                             area_tolerance=i.area_tolerance, smooth=i.smooth_points,
                             time_of_day=i.time_of_day_hours or None, tail=i.tail,
                             anchor=i.anchor_hours or None, min_points=i.min_points))


class ProfileSource(Protocol):
    def bank(self, metric: str, at: float) -> ProfileBank | None:
        """The metric's enabled profiles in force at `at`, ready to search; None: it has
        none."""
        ...


class RedisProfiles:
    """Profiles from the hot store's cache, reloaded when its version changes."""

    def __init__(self, client: Any, rules: MotifRules) -> None:
        self.client = client
        self.rules = rules
        self._version: int | None = None
        self._banks: dict[str, ProfileBank] = {}

    def bank(self, metric: str, at: float) -> ProfileBank | None:
        pipe = self.client.pipeline(transaction=False)
        pipe.get(keys.IONOSPHERE_VERSION)
        pipe.sismember(keys.IONOSPHERE_METRICS, metric)
        raw, member = pipe.execute()
        v = int(raw) if raw is not None else 0
        if v != self._version:
            self._banks.clear()
            self._version = v
        if not member:
            return None
        bank = self._banks.get(metric)
        if bank is None:
            bank = self._banks[metric] = ProfileBank(cache.load(self.client, metric),
                                                     self.rules)
        return bank


class MemoryProfiles:
    """Profiles held in memory, each in force from a given time (replay and the benchmark:
    an operator's label takes effect after a delay)."""

    def __init__(self, rules: MotifRules) -> None:
        self.rules = rules
        self._profiles: dict[str, list[tuple[float, Profile]]] = {}
        self._banks: dict[tuple[str, int], ProfileBank] = {}

    def add(self, profile: Profile, effective: float = -np.inf) -> None:
        self._profiles.setdefault(profile.metric, []).append((float(effective), profile))

    def disable(self, metric: str, profile_id: int) -> None:
        self._profiles[metric] = [(e, p) for e, p in self._profiles.get(metric, [])
                                  if p.id != profile_id]
        self._banks = {k: b for k, b in self._banks.items() if k[0] != metric}

    def count(self, metric: str | None = None) -> int:
        if metric is not None:
            return len(self._profiles.get(metric, ()))
        return sum(len(v) for v in self._profiles.values())

    def bank(self, metric: str, at: float) -> ProfileBank | None:
        ps = [p for e, p in self._profiles.get(metric, ()) if e <= at]
        if not ps:
            return None
        key = (metric, len(ps))
        bank = self._banks.get(key)
        if bank is None:
            bank = self._banks[key] = ProfileBank(ps, self.rules)
        return bank


def _describe(m: MotifMatch, profiles: Sequence[Profile]) -> str:
    p = next((x for x in profiles if x.id == m.profile_id), None)
    taught = f" (taught by {p.who or 'someone'} from {iso(p.anchor)})" if p is not None else ""
    return (f"profile #{m.profile_id}{taught}: shape {m.correlation:.2f} over the last "
            f"{m.window_hours:g} h, within its range [{m.low:.6g}, {m.high:.6g}], area "
            f"{m.area_diff:.0%} off")


@dataclass
class IonosphereStage:
    config: IonosphereConfig
    source: ProfileSource | None = None
    clock: Callable[[], float] = time.monotonic
    name: str = NAME

    def check(self, candidate: Candidate, deadline: float) -> StageVerdict:
        mode = self.config.mode
        if mode == "off":
            return StageVerdict(self.name, "abstain", "ionosphere is off")
        if self.source is None:
            return StageVerdict(self.name, "abstain", "no profile store here")
        bank = self.source.bank(candidate.metric, candidate.timestamp)
        if bank is None or not len(bank):
            return StageVerdict(self.name, "abstain", "no profiles for this metric")
        # the budget is the search's: a metric's bank is built once per profile version (the
        # chain's own deadline still bounds it all)
        limit = min(deadline, self.clock() + self.config.budget)
        found = bank.match(candidate.window_timestamps, candidate.window_values,
                           candidate.timestamp, stop=lambda: self.clock() > limit)
        figures: dict[str, float] = {"profiles": float(len(bank))}
        if found is None:
            return StageVerdict(self.name, "abstain",
                                f"abstained: over its {self.config.budget * 1000:g} ms budget "
                                f"({len(bank)} profiles)", figures)
        real = found.get("anomalous")
        if real is not None:
            figures.update(real.figures())
            figures["label_anomalous"] = 1.0
            return StageVerdict(self.name, "confirm",
                                f"looks like a real anomaly taught before: "
                                f"{_describe(real, bank.profiles)}", figures)
        benign = found.get("not_anomalous")
        if benign is None:
            return StageVerdict(self.name, "abstain",
                                f"matches none of {len(bank)} profiles", figures)
        figures.update(benign.figures())
        figures["label_anomalous"] = 0.0
        if mode == "shadow":
            figures["shadow"] = 1.0
            return StageVerdict(self.name, "abstain",
                                f"shadow mode, would veto: not anomalous, like "
                                f"{_describe(benign, bank.profiles)}", figures)
        return StageVerdict(self.name, "veto",
                            f"not anomalous, like {_describe(benign, bank.profiles)}", figures)


def factory(options: Mapping[str, Any], context: StageContext) -> IonosphereStage:
    """The stage from its resolved configuration (StageContext.configs), else from the
    Settings in the context, else the [ionosphere] defaults. Option: `mode` (off, shadow, on) overrides
    ionosphere.mode."""
    config = context.configs.get(NAME)
    if not isinstance(config, IonosphereConfig):
        if context.settings is not None:
            config = IonosphereConfig.from_settings(context.settings)
        else:  # the settings' defaults, not the bare matcher's
            from skyline.settings.ionosphere import IonosphereSettings

            config = IonosphereConfig.from_table(IonosphereSettings())
    unknown = sorted(set(options) - {"mode"})
    if unknown:
        raise InvalidInput(f"ionosphere stage options: unknown {', '.join(unknown)}")
    if "mode" in options:
        config = IonosphereConfig(mode=str(options["mode"]), rules=config.rules,
                                  budget=config.budget)
    source = RedisProfiles(context.client, config.rules) if context.client is not None else None
    return IonosphereStage(config=config, source=source)


def check_series(profiles: Sequence[Profile], timestamps: FloatArray, values: FloatArray,
                 at: float | None = None, rules: MotifRules | None = None
                 ) -> dict[str, MotifMatch]:
    """A dry run: the best match per label of a series (its last point the candidate, or
    `at`) against `profiles`."""
    t = np.asarray(timestamps, dtype=np.float64)
    if not len(t):
        return {}
    bank = ProfileBank(profiles, rules)
    got = bank.match(t, np.asarray(values, dtype=np.float64),
                     float(t[-1]) if at is None else float(at))
    return got or {}


# -- teaching (the web app and the CLI) ------------------------------------------------------

def sync(engine: Any, client: Any, metric: str | None = None) -> int:
    """Copy a metric's enabled profiles (or every metric's, when None) from SQL into the hot
    store's cache and bump its version; how many profiles were published. Without a Redis
    client nothing is published (the stage's cache is rebuilt by `skyline ionosphere sync`)."""
    from skyline.store.sql import ionosphere as q

    if client is None:
        return 0
    if metric is not None:
        ps = q.list_profiles(engine, metric, enabled=True, limit=100_000)
        cache.publish(client, metric, ps)
        return len(ps)
    names = q.profile_metrics(engine)
    n = 0
    for name in names:
        ps = q.list_profiles(engine, name, enabled=True, limit=100_000)
        cache.publish(client, name, ps)
        n += len(ps)
    stale = cache.metrics(client) - set(names)
    cache.forget(client, stale)
    return n


def teach(engine: Any, client: Any, event_id: str, label: str, who: str, note: str = ""
          ) -> Profile:
    """An operator's feedback on anomaly `event_id`: a profile of its stored window with
    `label` (not_anomalous or anomalous), the feedback row, and the cache refreshed so the
    stage uses it at its next candidate. NotFound for an unknown anomaly, InvalidInput for one
    without a stored window."""
    from skyline.store.sql import get_anomaly
    from skyline.store.sql import ionosphere as q

    ev = get_anomaly(engine, event_id)
    t, v = ev.window_arrays()
    if len(t) < 2:
        raise InvalidInput(f"anomaly {event_id} has no stored window to learn from")
    profile = q.create_profile(engine, ev.metric, label, t, v, anchor=ev.timestamp,
                               event_id=ev.id, who=who, note=note)
    q.add_feedback(engine, ev.id, ev.metric, label, who, note, profile_id=profile.id)
    sync(engine, client, ev.metric)
    return profile


def disable(engine: Any, client: Any, profile_id: int, reason: str = "",
            enabled: bool = False) -> list[int]:
    """Disable (or enable) a profile, and with it those learnt from it; cache refreshed."""
    from skyline.store.sql import ionosphere as q

    ids = q.set_enabled(engine, profile_id, enabled, reason)
    sync(engine, client, q.get_profile(engine, profile_id).metric)
    return ids


def review(engine: Any, client: Any, match_id: int, valid: bool, who: str) -> list[int]:
    """An operator says a match was right or wrong; a wrong one disables its profile (and
    what was learnt from it), cache refreshed. The profile ids disabled."""
    from skyline.store.sql import ionosphere as q

    match, disabled = q.review_match(engine, match_id, valid, who)
    if disabled:
        sync(engine, client, match.metric)
    return disabled


def delete(engine: Any, client: Any, profile_id: int) -> None:
    from skyline.store.sql import ionosphere as q

    metric = q.get_profile(engine, profile_id).metric
    q.delete_profile(engine, profile_id)
    sync(engine, client, metric)


def dry_run(profiles: Sequence[Profile], timestamps: Any, values: Any, at: float | None,
            rules: MotifRules | None = None) -> dict[str, Any]:
    """What the stage would answer (mode on) for a series whose last point (or `at`) is the
    candidate, as a JSON-ready dict: verdict confirm / veto / none and the best matches."""
    t = np.asarray(timestamps, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    if t.shape != v.shape or t.ndim != 1:
        raise InvalidInput("timestamps and values must be two lists of the same length")
    enabled = [p for p in profiles if p.enabled]
    found = check_series(enabled, t, v, at, rules)
    verdict = "confirm" if "anomalous" in found else "veto" if found else "none"
    return {"profiles": len(enabled), "verdict": verdict,
            "matches": [{"label": m.label, "profile_id": m.profile_id,
                         "correlation": m.correlation, "window_hours": m.window_hours,
                         "area_diff": m.area_diff, "low": m.low, "high": m.high}
                        for m in found.values()]}
