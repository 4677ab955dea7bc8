"""Health of the stores and components, shared by the status page and /api/v1/health."""

from __future__ import annotations

import json
import time
from typing import Any

import sqlalchemy as sa

from skyline.runtime.context import Context
from skyline.store import keys
from skyline.store.redis_client import CONNECTION_ERRORS, get_many

# a component instance whose heartbeat stopped is shown as stopped for this long, then
# forgotten (an instance that was moved or retired does not haunt the page for ever)
FORGET_STOPPED = 86400.0


def _text(b: bytes | str) -> str:
    return b if isinstance(b, str) else b.decode()


def heartbeats(ctx: Context) -> dict[str, Any]:
    """component.instance -> its heartbeat with age_seconds; an instance whose heartbeat
    expired (it stopped or died) within FORGET_STOPPED is listed with `stopped: true` and
    the age of its last beat. One HGETALL and one MGET, never a SCAN over the keyspace."""
    out: dict[str, Any] = {}
    seen = {_text(k): v for k, v in ctx.client.hgetall(keys.HEARTBEATS_SEEN).items()}
    names = sorted(seen)
    values = get_many(ctx.client, [keys.heartbeat(n) for n in names])
    now = time.time()
    forget = []
    for name, raw in zip(names, values, strict=True):
        if raw is not None:
            beat = json.loads(raw)
            beat["age_seconds"] = round(now - float(beat.get("time", now)), 1)
            out[name] = beat
            continue
        try:
            last = float(seen[name])
        except ValueError:
            last = 0.0
        if now - last > FORGET_STOPPED:
            forget.append(name)
        else:
            out[name] = {"time": last, "age_seconds": round(now - last, 1), "stopped": True}
    if forget:
        ctx.client.hdel(keys.HEARTBEATS_SEEN, *forget)
    return out


def health(ctx: Context) -> dict[str, Any]:
    result: dict[str, Any] = {"status": "ok"}
    try:
        started = time.perf_counter()
        ctx.client.ping()
        result["redis"] = {
            "ok": True, "url": ctx.redis.url, "metrics": ctx.store.count(),
            "latency_ms": round((time.perf_counter() - started) * 1000, 2),
        }
        result["components"] = heartbeats(ctx)
    except CONNECTION_ERRORS as e:
        result["status"] = "degraded"
        result["redis"] = {"ok": False, "url": ctx.redis.url, "error": str(e) or type(e).__name__}
        result["components"] = {}
    if ctx.engine is None:
        result["status"] = "degraded"
        result["database"] = {"ok": False, "error": "not connected yet"}
    else:
        try:
            with ctx.engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
            result["database"] = {"ok": True, "url": ctx.engine.url.render_as_string(True)}
        except sa.exc.SQLAlchemyError as e:
            result["status"] = "degraded"
            result["database"] = {"ok": False, "error": str(e).splitlines()[0]}
    return result


def public(result: dict[str, Any]) -> dict[str, Any]:
    """What /api/v1/health, which needs no login, shows of `health()`: whether each part is
    up and each component's heartbeat age, not where the stores are, the errors (which name
    hosts), pids or instance names; the overview page, behind the login, shows those."""
    out: dict[str, Any] = {"status": result["status"]}
    for store in ("redis", "database"):
        part = result.get(store, {})
        out[store] = {k: v for k, v in part.items() if k in ("ok", "metrics", "latency_ms")}
    components: dict[str, Any] = {}
    for name, beat in result.get("components", {}).items():
        component = name.split(".", 1)[0]  # the key is component.instance
        age = beat.get("age_seconds")
        seen = components.get(component)
        if seen is None or (age is not None and (seen["age_seconds"] is None
                                                 or age < seen["age_seconds"])):
            components[component] = ({"age_seconds": age, "stopped": True}
                                     if beat.get("stopped") else {"age_seconds": age})
    out["components"] = components
    return out
