"""Counters and gauges kept by each component.

`incr`/`gauge` are cheap in-memory updates. `flush` (every telemetry.flush_interval) adds the
counter deltas to a Redis hash per component and instance, which /metrics serves in Prometheus
format; `series_points` (every telemetry.series_interval) gives the increase of each counter
since the last call (0 included), and each gauge, as points for skyline.<component>.<counter> series, so
Skyline analyses itself. A delta that could not be flushed stays pending: nothing is lost while
Redis is down.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections import defaultdict
from typing import Any, cast

import redis

from skyline.store import keys

_NAME_OK = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


def check_name(name: str) -> str:
    if not _NAME_OK.match(name):
        raise ValueError(f"self-metric names are [a-zA-Z_][a-zA-Z0-9_]*: {name!r}")
    return name


class Telemetry:
    def __init__(self, component: str, instance: str):
        self.component = check_name(component)
        self.instance = instance
        self._lock = threading.Lock()
        self._pending: dict[str, float] = defaultdict(float)  # not yet in Redis
        self._since_series: dict[str, float] = defaultdict(float)  # not yet in a series
        self._gauges: dict[str, float] = {}

    def incr(self, name: str, n: float = 1) -> None:
        with self._lock:
            self._pending[name] += n
            self._since_series[name] += n

    def gauge(self, name: str, value: float) -> None:
        with self._lock:
            self._gauges[name] = float(value)

    def snapshot(self) -> tuple[dict[str, float], dict[str, float]]:
        with self._lock:
            return dict(self._pending), dict(self._gauges)

    def flush(self, client: redis.Redis, heartbeat_ttl: int) -> None:
        """Push counter deltas and gauges to Redis, and refresh the heartbeat."""
        with self._lock:
            pending, self._pending = self._pending, defaultdict(float)
            gauges = dict(self._gauges)
        try:
            pipe = client.pipeline(transaction=False)
            hkey = keys.telemetry(self.component, self.instance)
            for name, delta in pending.items():
                if delta:
                    pipe.hincrbyfloat(hkey, name, delta)
            if gauges:
                pipe.hset(keys.telemetry_gauges(self.component, self.instance),
                         mapping=cast(Any, gauges))
            pipe.sadd(keys.TELEMETRY_INDEX, f"{self.component}:{self.instance}")
            t = time.time()
            beat = {"instance": self.instance, "pid": os.getpid(), "time": t}
            pipe.set(keys.heartbeat(f"{self.component}.{self.instance}"), json.dumps(beat),
                     ex=heartbeat_ttl)
            pipe.hset(keys.HEARTBEATS_SEEN, f"{self.component}.{self.instance}", t)
            pipe.execute()
        except Exception:
            with self._lock:
                for name, delta in pending.items():
                    self._pending[name] += delta
            raise

    def series_points(self, prefix: str, now: float) -> list[tuple[str, float, float]]:
        """(name, timestamp, value) for each counter's increase since the last call and each
        gauge's value."""
        with self._lock:
            counters = dict(self._since_series)
            # every counter ever seen gets a point each interval, 0 when it did not move:
            # "no work done" is a value worth analysing
            for name in self._since_series:
                self._since_series[name] = 0.0
            gauges = dict(self._gauges)
        base = f"{prefix}.{self.component}"
        out = [(f"{base}.{name}", now, value) for name, value in sorted(counters.items())]
        out += [(f"{base}.{name}", now, value) for name, value in sorted(gauges.items())]
        return out


def _num(raw: bytes) -> float:
    return float(raw.decode() if isinstance(raw, bytes) else raw)


def collect(client: redis.Redis) -> list[tuple[str, str, str, str, float]]:
    """Every published self-metric: (component, instance, name, kind, value)."""
    out: list[tuple[str, str, str, str, float]] = []
    members = sorted(m.decode() if isinstance(m, bytes) else m
                     for m in client.smembers(keys.TELEMETRY_INDEX))
    pipe = client.pipeline(transaction=False)
    pairs = [tuple(m.split(":", 1)) for m in members if ":" in m]
    for component, instance in pairs:
        pipe.hgetall(keys.telemetry(component, instance))
        pipe.hgetall(keys.telemetry_gauges(component, instance))
    replies = pipe.execute()
    for i, (component, instance) in enumerate(pairs):
        for kind, data in (("counter", replies[2 * i]), ("gauge", replies[2 * i + 1])):
            for name, value in sorted(data.items()):
                n = name.decode() if isinstance(name, bytes) else name
                out.append((component, instance, n, kind, _num(value)))
    return out


def _escape_label(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def prometheus_text(samples: list[tuple[str, str, str, str, float]],
                    version: str | None = None) -> str:
    """Prometheus text exposition, as its conventions ask (`promtool check metrics` passes):
    counters as skyline_<component>_<counter>_total, gauges as skyline_<component>_<gauge>,
    each with HELP and TYPE lines and an `instance` label. With `version`, also
    skyline_build_info{version="..."} 1, so the exposition is never empty (before the first
    flush of any counter, a scraper still sees that Skyline answers)."""
    by_metric: dict[str, list[tuple[str, str, float]]] = defaultdict(list)
    help_of: dict[str, str] = {}
    for component, instance, name, kind, value in samples:
        metric = f"skyline_{component}_{name}"
        if kind == "counter" and not metric.endswith("_total"):
            metric += "_total"
        by_metric[metric].append((kind, instance, value))
        help_of.setdefault(metric, f"Skyline {component} {kind}: {name}")
    lines = []
    if version is not None:
        lines += ["# HELP skyline_build_info Skyline's version; always 1.",
                  "# TYPE skyline_build_info gauge",
                  f'skyline_build_info{{version="{_escape_label(version)}"}} 1']
    for metric in sorted(by_metric):
        rows = by_metric[metric]
        lines.append(f"# HELP {metric} {help_of[metric]}")
        lines.append(f"# TYPE {metric} {rows[0][0]}")
        for _kind, instance, value in rows:
            lines.append(f'{metric}{{instance="{_escape_label(instance)}"}} {value!r}')
    return "\n".join(lines) + ("\n" if lines else "")
