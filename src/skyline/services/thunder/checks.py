"""Thunder's bookkeeping: each check's state in memory, one event when it trips and one when
it recovers (never a storm), and the measures that need memory (ingest volume, heartbeats).
No I/O here: the service reads Redis and SQL and feeds the observations in."""

from __future__ import annotations

import bisect
import re
from collections import deque
from dataclasses import dataclass, field

from skyline.core.events import AlgorithmResult, AnomalyEvent

SOURCE = "thunder"
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


def metric_name(app: str, check: str, detail: str = "") -> str:
    """The name a check's events carry: skyline.thunder.<app>.<check>[.<detail>]."""
    base = f"skyline.thunder.{app}.{check}"
    if not detail:
        return base
    return f"{base}.{_UNSAFE.sub('_', detail).strip('_') or 'x'}"


@dataclass(frozen=True)
class Observation:
    """What one check found this round: `bad` is True (tripped), False (fine) or None (it
    cannot tell now: nothing changes)."""

    app: str
    check: str
    bad: bool | None
    value: float = 0.0
    limit: float | None = None
    text: str = ""
    detail: str = ""  # one check watching several things (a namespace, a channel)

    @property
    def key(self) -> str:
        return metric_name(self.app, self.check, self.detail)


@dataclass
class _State:
    since: float
    alerted: bool  # the trip was sent to the channels (not suppressed by expiry)


@dataclass
class Transition:
    event: AnomalyEvent
    obs: Observation
    alert: bool  # send it to the channels


@dataclass
class Tripwires:
    """Open (tripped) checks by key, and when each check last alerted (for expiry)."""

    open: dict[str, _State] = field(default_factory=dict)
    last_alert: dict[str, float] = field(default_factory=dict)

    def observe(self, obs: Observation, now: float, expiry: float) -> Transition | None:
        key = obs.key
        st = self.open.get(key)
        if obs.bad is None:
            return None
        if obs.bad and st is None:
            recent = now - self.last_alert.get(key, -1e18) < expiry
            self.open[key] = _State(since=now, alerted=not recent)
            if not recent:
                self.last_alert[key] = now
            return Transition(event(obs, "anomalous", now, now), obs, alert=not recent)
        if not obs.bad and st is not None:
            del self.open[key]
            return Transition(event(obs, "recovered", now, st.since), obs, alert=st.alerted)
        return None

    def close_missing(self, app: str, check: str, seen: set[str], now: float
                      ) -> list[Transition]:
        """Checks with details (namespaces, channels) whose detail was not observed this
        round recover (the namespace has no metric left, the channel's queue is empty)."""
        prefix = metric_name(app, check) + "."
        out = []
        for key in [k for k in self.open if k.startswith(prefix) and k not in seen]:
            st = self.open.pop(key)
            obs = Observation(app, check, False, text=f"{key[len(prefix):]}: nothing left to watch",
                              detail=key[len(prefix):])
            out.append(Transition(event(obs, "recovered", now, st.since), obs,
                                  alert=st.alerted))
        return out


def event(obs: Observation, status: str, now: float, since: float) -> AnomalyEvent:
    name = f"{obs.app}.{obs.check}"
    bad = status == "anomalous"
    return AnomalyEvent.build(
        metric=obs.key, timestamp=now, value=obs.value, score=1.0 if bad else 0.0,
        source=SOURCE, status=status, triggered=(name,) if bad else (),
        results=(AlgorithmResult(name, bad, float(obs.value), obs.limit, obs.text),),
        since=since, created=now)


class Volume:
    """Samples of a cumulative counter (time, total), kept long enough to compare the rate
    of the last `window` seconds with the same window `over` seconds earlier."""

    def __init__(self, window: float, over: float):
        self.window = window
        self.over = over
        self._t: deque[float] = deque()
        self._v: deque[float] = deque()

    def add(self, t: float, total: float) -> None:
        if self._v and total < self._v[-1]:  # the counters were reset: start again
            self._t.clear()
            self._v.clear()
        self._t.append(t)
        self._v.append(total)
        horizon = t - self.over - self.window * 2
        while len(self._t) > 2 and self._t[1] < horizon:
            self._t.popleft()
            self._v.popleft()

    def _at(self, t: float) -> float | None:
        """The total at time t (the last sample at or before it), None before the first."""
        ts = list(self._t)
        i = bisect.bisect_right(ts, t) - 1
        return None if i < 0 else self._v[i]

    def rates(self, now: float) -> tuple[float, float] | None:
        """(rate now, rate `over` seconds earlier), per second; None until enough history."""
        if not self._t or self._t[0] > now - self.over - self.window:
            return None
        a, b = self._at(now - self.window), self._at(now)
        c, d = self._at(now - self.over - self.window), self._at(now - self.over)
        if None in (a, b, c, d):
            return None
        assert a is not None and b is not None and c is not None and d is not None
        return (b - a) / self.window, (d - c) / self.window


class Heartbeats:
    """The newest heartbeat seen of each component, remembered after its Redis key expired."""

    def __init__(self) -> None:
        self.last: dict[str, float] = {}

    def seen(self, component: str, t: float) -> None:
        if t > self.last.get(component, -1e18):
            self.last[component] = t

    def forgive(self, until: float) -> None:
        """After a Redis outage no heartbeat could be written: count none as missing
        before `until`."""
        for c, t in self.last.items():
            self.last[c] = max(t, until)
