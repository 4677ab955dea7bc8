"""Vista's remote_write of anomaly scores and events against a real HTTP receiver
(tests/remotes.py decodes what it gets with the WriteRequest parser) and a real (embedded)
Redis: what is new is sent once, also across a restart; a receiver that fails gets it all
later; a 4xx drops, counted; the long tail of a metric is read back far enough.
(tests/e2e/test_vista_write_real.py does the same against a real VictoriaMetrics.)"""

from __future__ import annotations

import asyncio
import logging
import time

import numpy as np
import pytest

from skyline.core.errors import RemoteError
from skyline.core.events import AnomalyEvent
from skyline.events.stream import publish
from skyline.remote import RemoteClient
from skyline.runtime.context import Context
from skyline.services.vista import service as vista_service
from skyline.services.vista.writer import EVENT, SCORE, ScoreWriter, WriteResult
from skyline.settings import load_settings
from skyline.store import keys
from skyline.store.redis_client import redis_session
from skyline.store.series import encode
from skyline.telemetry import Telemetry
from tests.remotes import FakeRemote

NOW = float(int(time.time()) // 60 * 60)  # the stream's ids are wall-clock times


@pytest.fixture
def remote():
    r = FakeRemote()
    yield r
    r.close()


@pytest.fixture
def make_ctx(tmp_path):
    sessions = []

    def make(url: str, fetches: list[dict] | None = None, **vista) -> Context:
        settings = load_settings(DATA_DIR=tmp_path / "var", VISTA_FETCH_METRICS=fetches or [],
                                 vista={"remote_write_url": f"{url}/api/v1/write",
                                        "timeout": 2.0, **vista})
        cm = redis_session(settings)
        handle = cm.__enter__()
        sessions.append(cm)
        return Context(settings, handle)

    yield make
    for cm in reversed(sessions):
        cm.__exit__(None, None, None)


def _scores(ctx: Context, metric: str, ts: list[float], vs: list[float]) -> None:
    ctx.client.sadd(keys.METRIC_INDEX, metric)
    ctx.client.append(keys.scores(metric), encode(np.array(ts), np.array(vs)))


def _send(ctx: Context, now: float, tel: Telemetry | None = None) -> WriteResult:
    async def go() -> WriteResult:
        async with RemoteClient(tel or ctx.telemetry("vista")) as client:
            return await ScoreWriter(ctx, client, client.telemetry).send(now)
    return asyncio.run(go())


def test_scores_and_events_are_sent_once_also_across_a_restart(remote, make_ctx):
    ctx = make_ctx(remote.url, remote_write_labels={"skyline": "test"}, remote_write_token="t")
    remote.behaviour.token = "t"
    _scores(ctx, "web.host1.rps", [NOW - 120, NOW - 60], [0.1, 0.9])
    _scores(ctx, 'node_load1{instance="a:9100"}', [NOW - 60], [0.5])
    ctx.client.sadd(keys.METRIC_INDEX, "never.scored")
    publish(ctx.client, AnomalyEvent.build(metric="web.host1.rps", timestamp=NOW - 60,
                                           value=42.0, score=0.9, source="analyzer"))
    r = _send(ctx, NOW)
    assert (r.samples, r.dropped) == (4, 0)
    b = remote.behaviour
    assert b.samples(__name__=SCORE, metric="web.host1.rps", skyline="test") == [
        (NOW - 120, 0.1), (NOW - 60, 0.9)]
    assert b.samples(__name__=SCORE, metric='node_load1{instance="a:9100"}') == [(NOW - 60, 0.5)]
    assert b.samples(__name__=EVENT, metric="web.host1.rps", source="analyzer",
                     status="anomalous", skyline="test") == [(NOW - 60, 0.9)]
    h = b.write_headers[0]
    assert h["Content-Encoding"] == "snappy" and h["X-Prometheus-Remote-Write-Version"]
    # nothing new: nothing sent
    assert _send(ctx, NOW + 30).samples == 0
    # a new score, and a restart (a new writer reads what was sent from Redis)
    _scores(ctx, "web.host1.rps", [NOW], [0.2])
    publish(ctx.client, AnomalyEvent.build(metric="web.host1.rps", timestamp=NOW, value=1.0,
                                           score=0.0, source="analyzer", status="recovered"))
    assert _send(ctx, NOW + 60).samples == 2
    assert b.samples(__name__=SCORE, metric="web.host1.rps")[-1] == (NOW, 0.2)
    assert b.samples(__name__=EVENT, status="recovered") == [(NOW, 0.0)]
    assert len(b.written) == 6
    counters, _ = ctx.telemetry("vista").snapshot()
    assert counters["remote_write_samples"] == 6


def test_only_the_backfill_is_sent_the_first_time_and_a_long_tail_is_read(remote, make_ctx):
    ctx = make_ctx(remote.url, remote_write_backfill=3000, remote_write_max_samples=7,
                   remote_write_events=False)
    ts = [NOW - 60 * k for k in range(200)][::-1]
    _scores(ctx, "a.b", ts, [float(k) for k in range(200)])
    r = _send(ctx, NOW)
    got = remote.behaviour.samples(metric="a.b")
    # after NOW - 3000: 50 points, deeper than the first tail read, in requests of 7
    assert [t for t, _ in got] == [t for t in ts if t > NOW - 3000]
    assert len(got) == 50 and r.requests == 8


def test_a_failing_receiver_gets_everything_later_and_is_backed_off(remote, make_ctx, caplog):
    ctx = make_ctx(remote.url)
    _scores(ctx, "a.b", [NOW - 60], [0.5])
    remote.behaviour.mode = "error500"
    tel = Telemetry("vista", "test")
    caplog.set_level(logging.ERROR, logger="skyline.remote.client")
    for _ in range(2):
        with pytest.raises(RemoteError) as e:
            _send(ctx, NOW, tel)
        assert e.value.reason == "http_error" and e.value.status == 500
    assert remote.behaviour.written == []
    assert tel.snapshot()[0]["remote_errors_http_error"] == 2
    remote.behaviour.mode = "ok"
    _scores(ctx, "a.b", [NOW], [0.7])
    assert _send(ctx, NOW + 1, tel).samples == 2
    assert remote.behaviour.samples(metric="a.b") == [(NOW - 60, 0.5), (NOW, 0.7)]


@pytest.mark.parametrize("mode,reason", [("redirect", "redirect"), ("auth", "auth")])
def test_a_redirect_or_refused_credentials_are_retried_never_dropped(remote, make_ctx, mode,
                                                                     reason):
    ctx = make_ctx(remote.url, remote_write_user="u", remote_write_password="wrong")
    if mode == "auth":
        remote.behaviour.user, remote.behaviour.password = "u", "right"
    else:
        remote.behaviour.mode = mode
    _scores(ctx, "a.b", [NOW - 60], [0.5])
    with pytest.raises(RemoteError) as e:
        _send(ctx, NOW)
    assert e.value.reason == reason and "wrong" not in str(e.value)
    assert ctx.client.hget(keys.VISTA_WRITTEN, "scores a.b") is None


def test_a_receiver_that_refuses_the_samples_for_good_drops_them_counted(remote, make_ctx):
    ctx = make_ctx(remote.url)
    _scores(ctx, "a.b", [NOW - 60], [0.5])
    remote.behaviour.mode = "error400"
    r = _send(ctx, NOW)
    assert r.dropped == 1
    assert ctx.telemetry("vista").snapshot()[0]["remote_write_dropped_samples"] == 1
    remote.behaviour.mode = "ok"
    assert _send(ctx, NOW + 1).samples == 0  # not sent again


def test_vista_sends_while_running_without_pulls(remote, make_ctx):
    ctx = make_ctx(remote.url, remote_write_interval=1)

    async def go() -> None:
        await asyncio.to_thread(_scores, ctx, "a.b", [time.time() - 60], [0.5])
        task = asyncio.create_task(vista_service.run(ctx))
        try:
            for _ in range(200):
                await asyncio.sleep(0.05)
                if remote.behaviour.written:
                    break
        finally:
            ctx.stopping.set()
            await task

    asyncio.run(go())
    assert [v for _t, v in remote.behaviour.samples(metric="a.b")] == [0.5]


def test_a_slow_receiver_delays_no_pull(make_ctx):
    slow, good = FakeRemote(), FakeRemote()
    try:
        slow.behaviour.mode = "slow"
        ctx = make_ctx(slow.url, [{"source": "graphite", "url": good.url,
                                   "query": "good.metric"}],
                       remote_write_interval=1, timeout=60, backfill=600)
        _scores(ctx, "a.b", [time.time() - 60], [0.5])

        async def go() -> int:
            task = asyncio.create_task(vista_service.run(ctx))
            try:
                for _ in range(300):
                    await asyncio.sleep(0.05)
                    got = await asyncio.to_thread(ctx.store.read_one, "good.metric")
                    if len(got.timestamps):
                        break
                # the receiver is still holding the remote_write request
                assert slow.behaviour.slow_started.is_set()
                assert not slow.behaviour.release.is_set()
                return len(got.timestamps)
            finally:
                ctx.stopping.set()
                slow.behaviour.release.set()
                await task

        assert asyncio.run(go()) > 0
    finally:
        slow.close()
        good.close()
