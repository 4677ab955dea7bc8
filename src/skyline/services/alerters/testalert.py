"""`skyline alert test <channel>`: send a made-up alert straight to one channel (not
through the queue) and report what happened, so a configuration can be checked at once."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import numpy as np

from skyline.alerting.base import attempt
from skyline.alerting.channels import make_channel
from skyline.alerting.content import Alert, link_for
from skyline.core.events import AlgorithmResult, AnomalyEvent
from skyline.plots import anomaly_png
from skyline.settings import Settings

TEST_METRIC = "skyline.test.alert"


@dataclass(frozen=True)
class Outcome:
    channel: str
    ok: bool
    error: str
    seconds: float


def test_event(now: float | None = None) -> AnomalyEvent:
    t = time.time() if now is None else now
    ts = np.arange(t - 3600, t + 1, 60.0)
    vs = np.sin(ts / 600.0)
    vs[-1] = 6.0
    return AnomalyEvent.build(
        metric=TEST_METRIC, timestamp=float(ts[-1]), value=6.0, score=1.0, source="test",
        window_timestamps=ts, window_values=vs, triggered=("test",),
        results=(AlgorithmResult("test", True, 6.0, 3.0,
                                 "a test alert sent by `skyline alert test`"),))


async def _send(s: Settings, name: str) -> Outcome:
    channel = make_channel(name, s)
    event = test_event()
    graph = await asyncio.to_thread(anomaly_png, event) if channel.wants_graph else None
    alert = Alert(event=event, kind="test", link=link_for(s.public_url, event.id),
                  expiration=60, graph=graph)
    started = time.monotonic()
    try:
        ok, error, _retry = await attempt(channel, alert, s.alerters.timeout)
    finally:
        await channel.aclose()
    return Outcome(name, ok, error, time.monotonic() - started)


def send_test(s: Settings, name: str) -> Outcome:
    return asyncio.run(_send(s, name))
