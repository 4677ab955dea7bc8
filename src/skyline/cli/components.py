"""The component registry: `skyline run` starts every entry; `skyline serve NAME` one of them.

A new component adds one entry here, never an edit to the runner.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter

from skyline.runtime.context import Context
from skyline.services import (
    alerters,
    analyzer,
    boundary,
    flux,
    horizon,
    luminosity,
    panorama,
    roomba,
    thunder,
    vista,
    webapp,
)
from skyline.settings import Settings


@dataclass(frozen=True)
class Port:
    """A listening port chosen by a setting; 0 turns the listener off."""

    setting: str
    host: Callable[[Settings], str]
    port: Callable[[Settings], int]
    kind: int = socket.SOCK_STREAM


RunFn = Callable[
    [Context, dict[str, socket.socket], Sequence[APIRouter]], Coroutine[Any, Any, None]
]


@dataclass(frozen=True)
class Component:
    name: str
    help: str
    run: RunFn
    ports: tuple[Port, ...] = ()
    routers: Callable[[Context], list[APIRouter]] | None = None
    needs: tuple[str, ...] = field(default=())  # components it cannot work without
    # parses untrusted input: in `skyline run` it gets a supervised process of its own
    # (cli/supervisor.py), apart from what must stay responsive
    isolated: bool = False
    # runs on a Redis Cluster (docs/scaling.md); the others refuse to start on one
    cluster_ready: bool = False


def _webapp(
    ctx: Context, socks: dict[str, socket.socket], routers: Sequence[APIRouter]
) -> Coroutine[Any, Any, None]:
    return webapp.run(ctx, socks["WEBAPP_PORT"], routers, announce=_announce)


def _announce(message: str) -> None:
    # what a person must see once, e.g. the first admin's password, beside the banner
    print(message, flush=True)


def _flux(
    ctx: Context, socks: dict[str, socket.socket], routers: Sequence[APIRouter]
) -> Coroutine[Any, Any, None]:
    return flux.run(ctx)


def _roomba(
    ctx: Context, socks: dict[str, socket.socket], routers: Sequence[APIRouter]
) -> Coroutine[Any, Any, None]:
    return roomba.run(ctx)


def _horizon(
    ctx: Context, socks: dict[str, socket.socket], routers: Sequence[APIRouter]
) -> Coroutine[Any, Any, None]:
    return horizon.run(ctx, socks)


def _horizon_host(s: Settings) -> str:
    return s.HORIZON_IP


def _panorama(
    ctx: Context, socks: dict[str, socket.socket], routers: Sequence[APIRouter]
) -> Coroutine[Any, Any, None]:
    return panorama.run(ctx)


def _alerters(
    ctx: Context, socks: dict[str, socket.socket], routers: Sequence[APIRouter]
) -> Coroutine[Any, Any, None]:
    return alerters.run(ctx)


def _analyzer(
    ctx: Context, socks: dict[str, socket.socket], routers: Sequence[APIRouter]
) -> Coroutine[Any, Any, None]:
    return analyzer.run(ctx)


def _boundary(
    ctx: Context, socks: dict[str, socket.socket], routers: Sequence[APIRouter]
) -> Coroutine[Any, Any, None]:
    return boundary.run(ctx)


def _thunder(
    ctx: Context, socks: dict[str, socket.socket], routers: Sequence[APIRouter]
) -> Coroutine[Any, Any, None]:
    return thunder.run(ctx)


def _vista(
    ctx: Context, socks: dict[str, socket.socket], routers: Sequence[APIRouter]
) -> Coroutine[Any, Any, None]:
    return vista.run(ctx)


def _luminosity(
    ctx: Context, socks: dict[str, socket.socket], routers: Sequence[APIRouter]
) -> Coroutine[Any, Any, None]:
    return luminosity.run(ctx)


REGISTRY: dict[str, Component] = {
    c.name: c
    for c in [
        Component(
            "webapp", "web UI, /api/v1 (anomalies, metrics, series, runs), flux routes and "
            "/metrics on WEBAPP_PORT", _webapp,
            ports=(Port("WEBAPP_PORT", lambda s: s.WEBAPP_IP, lambda s: s.WEBAPP_PORT),),
            cluster_ready=True,
        ),
        Component(
            "horizon", "Graphite plaintext and pickle, msgpack and StatsD listeners on HORIZON_IP",
            _horizon,
            ports=(
                Port(horizon.PLAINTEXT_TCP, _horizon_host, lambda s: s.horizon.plaintext_port),
                Port(horizon.PLAINTEXT_UDP, _horizon_host,
                     lambda s: s.horizon.plaintext_udp_port, socket.SOCK_DGRAM),
                Port(horizon.PICKLE, _horizon_host, lambda s: s.PICKLE_PORT),
                Port(horizon.MSGPACK, _horizon_host, lambda s: s.UDP_PORT, socket.SOCK_DGRAM),
                Port(horizon.STATSD, _horizon_host, lambda s: s.horizon.statsd_port,
                     socket.SOCK_DGRAM),
            ),
            isolated=True, cluster_ready=True,
        ),
        Component("roomba", "trims the hot store to FULL_DURATION + ROOMBA_GRACE_TIME", _roomba,
                  cluster_ready=True),
        Component("analyzer", "analyses every metric each ANALYZER_OPTIMUM_RUN_DURATION; "
                  "anomalies go to the anomaly stream", _analyzer, cluster_ready=True),
        Component("boundary", "checks the BOUNDARY_METRICS rules (less_than, greater_than, "
                  "detect_drop_off_cliff) every BOUNDARY_OPTIMUM_RUN_DURATION; its events go "
                  "to the anomaly stream (idle when empty)", _boundary),
        Component("panorama", "stores anomaly events from the stream in SQL, once each",
                  _panorama, cluster_ready=True),
        Component("alerters", "routes anomalies to SMTP, Slack, PagerDuty, webhook, "
                  "Alertmanager and syslog", _alerters, cluster_ready=True),
        Component(
            "flux", "HTTP ingest (JSON, Prometheus remote_write, Influx, OTLP) on WEBAPP_PORT",
            _flux, routers=flux.routers, needs=("webapp",), cluster_ready=True,
        ),
        Component("luminosity", "related metrics of each anomaly, and incidents that group "
                  "metrics broken together (LUMINOSITY_ENABLED)", _luminosity),
        Component("thunder", "watches Skyline itself (components, Redis, SQL, overruns, ingest "
                  "volume, stale namespaces, failing alerts) and alerts on THUNDER_OPTS "
                  "channels directly", _thunder),
        Component("vista", "pulls VISTA_FETCH_METRICS from remote Graphite and Prometheus "
                  "servers into the hot store (idle when empty)", _vista),
    ]
}
