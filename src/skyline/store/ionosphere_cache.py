"""Ionosphere's profile cache in the hot store: SQL holds the profiles, Redis a copy of each
metric's enabled ones for the analyzer's workers (which never wait on SQL), a set of the
metrics that have any, and a version counter bumped on every change. The stage reads the
version at each candidate: a profile taught now is live at the next candidate, not in an hour
(upstream's memcached lag)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Sequence
from typing import Any

from skyline.core.ionosphere import Profile, pack_values, unpack_values
from skyline.store import keys

FORMAT = 1


def encode(profiles: Sequence[Profile]) -> bytes:
    rows = []
    for p in profiles:
        rows.append({"id": p.id, "label": p.label, "start": p.start,
                     "resolution": p.resolution, "anchor": p.anchor, "who": p.who,
                     "event_id": p.event_id,
                     "values": base64.b64encode(pack_values(p.values)).decode()})
    return json.dumps({"v": FORMAT, "profiles": rows}, separators=(",", ":")).encode()


def decode(metric: str, blob: bytes | str | None) -> list[Profile]:
    """The profiles of a cache entry; empty for none or an entry of an unknown format."""
    if not blob:
        return []
    d: dict[str, Any] = json.loads(blob)
    if d.get("v") != FORMAT:
        return []
    return [Profile(id=int(r["id"]), metric=metric, label=r["label"], start=float(r["start"]),
                    resolution=float(r["resolution"]), anchor=float(r["anchor"]),
                    who=r.get("who", ""), event_id=r.get("event_id"),
                    values=unpack_values(base64.b64decode(r["values"])))
            for r in d["profiles"]]


def publish(client: Any, metric: str, profiles: Sequence[Profile]) -> int:
    """Replace a metric's cache entry with its enabled `profiles` and bump the version (the
    new version)."""
    enabled = [p for p in profiles if p.enabled]
    pipe = client.pipeline(transaction=False)
    if enabled:
        pipe.set(keys.ionosphere_profiles(metric), encode(enabled))
        pipe.sadd(keys.IONOSPHERE_METRICS, metric)
    else:
        pipe.delete(keys.ionosphere_profiles(metric))
        pipe.srem(keys.IONOSPHERE_METRICS, metric)
    pipe.incr(keys.IONOSPHERE_VERSION)
    return int(pipe.execute()[-1])


def forget(client: Any, metrics: Iterable[str]) -> None:
    """Drop cache entries (metrics that no longer have enabled profiles); bumps the version."""
    names = list(metrics)
    pipe = client.pipeline(transaction=False)
    for m in names:
        pipe.delete(keys.ionosphere_profiles(m))
    if names:
        pipe.srem(keys.IONOSPHERE_METRICS, *names)
    pipe.incr(keys.IONOSPHERE_VERSION)
    pipe.execute()


def version(client: Any) -> int:
    raw = client.get(keys.IONOSPHERE_VERSION)
    return int(raw) if raw is not None else 0


def metrics(client: Any) -> set[str]:
    return {m if isinstance(m, str) else m.decode() for m in
            client.smembers(keys.IONOSPHERE_METRICS)}


def load(client: Any, metric: str) -> list[Profile]:
    return decode(metric, client.get(keys.ionosphere_profiles(metric)))
