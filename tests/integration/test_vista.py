"""The remote client and Vista's pulls against real HTTP servers (tests/remotes.py) and a
real (embedded) Redis: names, gaps, the current minute, no duplicates across restarts,
back-fill, and every way a remote fails: counted, logged once, backed off, nothing else
delayed."""

from __future__ import annotations

import asyncio
import logging
import socket
import time

import pytest

from skyline.core.errors import RemoteError
from skyline.remote import Remote, RemoteClient, fetch_blocking
from skyline.runtime.context import Context
from skyline.services.vista import service as vista_service
from skyline.services.vista.fetcher import Fetcher
from skyline.settings import load_settings
from skyline.store import keys
from skyline.store.redis_client import redis_session
from skyline.telemetry import Telemetry
from tests.remotes import STEP, FakeRemote, value_at


@pytest.fixture
def remote():
    r = FakeRemote()
    yield r
    r.close()


@pytest.fixture
def make_ctx(tmp_path):
    sessions = []

    def make(**overrides) -> Context:
        settings = load_settings(DATA_DIR=tmp_path / "var", **overrides)
        cm = redis_session(settings)
        handle = cm.__enter__()
        sessions.append(cm)
        return Context(settings, handle)

    yield make
    for cm in reversed(sessions):
        cm.__exit__(None, None, None)


def _graphite(url: str, query: str, **kw) -> dict:
    return {"source": "graphite", "url": url, "query": query, **kw}


def _points(ctx: Context, name: str) -> list[tuple[float, float]]:
    s = ctx.store.read_one(name)
    return list(zip(s.timestamps.tolist(), s.values.tolist(), strict=True))


def _pull(ctx: Context, now: float, fetches=None) -> object:
    async def go():
        async with RemoteClient(ctx.telemetry("vista")) as client:
            return await Fetcher(ctx, client).pull(fetches or ctx.settings.VISTA_FETCH_METRICS,
                                                   now)
    return asyncio.run(go())


def test_graphite_pull_names_gaps_current_minute_and_no_duplicates(remote, make_ctx):
    now = float(int(time.time()) // STEP * STEP + 30)  # half way through a minute
    minute = now - 30
    remote.behaviour.null_at = {minute - 5 * STEP}
    fetch = _graphite(remote.url, "web.host1.rps", namespace_prefix="remote")
    ctx = make_ctx(VISTA_FETCH_METRICS=[fetch], vista={"backfill": 3600})
    r = _pull(ctx, now)
    pts = _points(ctx, "remote.web.host1.rps")
    # an hour of minutes, without the null one and without the incomplete current minute
    want = [(float(t), value_at("web.host1.rps", t))
            for t in range(int(now - 3600) // STEP * STEP + STEP, int(minute), STEP)
            if t != minute - 5 * STEP]
    assert pts == want
    assert r.new == len(want) and r.accepted == len(want)
    # pulled again: nothing new; a restarted Vista (new context, same Redis) neither
    assert _pull(ctx, now).new == 0
    ctx2 = make_ctx(VISTA_FETCH_METRICS=[fetch], vista={"backfill": 3600})
    assert _pull(ctx2, now + 5).new == 0
    # two minutes later: exactly the minutes that completed meanwhile
    later = _pull(ctx2, now + 2 * STEP)
    assert later.new == 2
    assert _points(ctx2, "remote.web.host1.rps")[-3:] == [
        (minute - STEP, value_at("web.host1.rps", minute - STEP)),
        (minute, value_at("web.host1.rps", minute)),
        (minute + STEP, value_at("web.host1.rps", minute + STEP))]


def test_graphite_batch_one_request_and_metric_rename(remote, make_ctx):
    now = float(int(time.time()) // STEP * STEP + 1)
    fetches = [_graphite(remote.url, f"a.b.m{i}") for i in range(3)]
    ctx = make_ctx(VISTA_FETCH_METRICS=fetches, vista={"backfill": 600})
    jobs = vista_service.plan(ctx.settings.VISTA_FETCH_METRICS, 2)
    assert sorted(len(j.fetches) for j in jobs) == [1, 2]
    _pull(ctx, now, jobs[0].fetches if len(jobs[0].fetches) == 2 else jobs[1].fetches)
    assert len(remote.behaviour.requests) == 1
    assert remote.behaviour.requests[0].count("target=") == 2
    # a target with a metric name is stored under that name
    renamed = make_ctx(VISTA_FETCH_METRICS=[_graphite(remote.url, "sumSeries(x.*)",
                                                      metric="x.total")],
                       vista={"backfill": 600})
    _pull(renamed, now)
    assert len(_points(renamed, "x.total")) == 9


def test_prometheus_pull_labels_auth_and_alignment(remote, make_ctx):
    remote.behaviour.user, remote.behaviour.password = "vista", "s3cret"
    now = float(int(time.time()))
    fetch = {"source": "prometheus", "url": remote.url, "query": "node_load1", "step": 30,
             "user": "vista", "password": "s3cret", "namespace_prefix": "dc1"}
    ctx = make_ctx(VISTA_FETCH_METRICS=[fetch], vista={"backfill": 600})
    _pull(ctx, now)
    name = 'dc1.node_load1{instance="a:9100",job="node"}'
    pts = _points(ctx, name)
    assert pts and all(t % 30 == 0 for t, _ in pts)  # aligned on the step
    assert all(v == value_at("node_load1a:9100", t) for t, v in pts)
    assert pts[-1][0] < now // 60 * 60  # never the current minute
    assert _points(ctx, 'dc1.node_load1{instance="b:9100",job="node"}')
    # an expression without __name__ is stored under `metric`, its labels kept
    expr = {**fetch, "query": "rate(x[5m])", "metric": "x_rate"}
    ctx2 = make_ctx(VISTA_FETCH_METRICS=[expr], vista={"backfill": 600})
    _pull(ctx2, now)
    assert _points(ctx2, 'dc1.x_rate{instance="a:9100",job="node"}')
    # the bearer token form
    remote.behaviour.user, remote.behaviour.token = "", "tok-123"
    bearer = {"source": "prometheus", "url": remote.url, "query": "up", "token": "tok-123"}
    ctx3 = make_ctx(VISTA_FETCH_METRICS=[bearer], vista={"backfill": 600})
    _pull(ctx3, now)
    assert _points(ctx3, 'up{instance="a:9100",job="node"}')


def test_backfill_after_being_behind(remote, make_ctx):
    now = float(int(time.time()) // STEP * STEP + 10)
    fetch = _graphite(remote.url, "behind.m")
    ctx = make_ctx(VISTA_FETCH_METRICS=[fetch], vista={"backfill": 7200})
    # Vista last pulled this three hours ago: it fetches at most `backfill` seconds
    f = ctx.settings.VISTA_FETCH_METRICS[0]
    ctx.client.hset(keys.VISTA_LAST, f"fetch {f.key}", repr(now - 3 * 3600))
    _pull(ctx, now)
    pts = _points(ctx, "behind.m")
    assert len(pts) == 120 - 1 and pts[0][0] > now - 7200


@pytest.mark.parametrize("mode,reason", [("redirect", "redirect"), ("garbage", "bad_body"),
                                         ("huge", "too_large"), ("error500", "http_error"),
                                         ("slow", "timeout"), ("auth", "auth")])
def test_a_failing_remote_is_counted_logged_once_and_backed_off(remote, mode, reason, caplog):
    if mode == "auth":
        remote.behaviour.token = "right"
    else:
        remote.behaviour.mode = mode
    tel = Telemetry("vista", "test")
    target = Remote("graphite", remote.url, token="wrong" if mode == "auth" else "",
                    timeout=1.0, max_body_bytes=1024 * 1024)

    async def go() -> list[str]:
        reasons = []
        async with RemoteClient(tel, max_backoff=60) as client:
            for _ in range(2):
                try:
                    await client.graphite(target, ["a.b"], 0, 60)
                except RemoteError as e:
                    reasons.append(e.reason)
                    assert "wrong" not in str(e)
            assert not client.available(target)
            assert client.retry_in(target) > 0
        return reasons

    caplog.set_level(logging.ERROR, logger="skyline.remote.client")
    assert asyncio.run(go()) == [reason, reason]
    remote.behaviour.release.set()
    counters, _ = tel.snapshot()
    assert counters[f"remote_errors_{reason}"] == 2
    assert counters["remote_requests"] == 2
    logged = [r for r in caplog.records if "retrying with backoff" in r.getMessage()]
    assert len(logged) == 1 and reason in logged[0].getMessage()


def test_a_remote_that_is_down():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens there
    tel = Telemetry("mirage", "test")
    with pytest.raises(RemoteError) as e:
        fetch_blocking(Remote("prometheus", f"http://127.0.0.1:{port}", timeout=2), "up", 0,
                       60, telemetry=tel)
    assert e.value.reason == "unreachable"
    assert tel.snapshot()[0]["remote_errors_unreachable"] == 1


def test_fetch_blocking_for_one_metric(remote):
    got = fetch_blocking(Remote("graphite", remote.url), "one.metric", 1_800_000_000 - 600,
                         1_800_000_000)
    assert len(got) == 1 and got[0].name == "one.metric"
    assert got[0].timestamps.tolist() == [1_800_000_000 - 600 + 60 * i for i in range(1, 11)]


def test_a_slow_remote_delays_nothing_else(make_ctx):
    slow, good = FakeRemote(), FakeRemote()
    try:
        slow.behaviour.mode = "slow"
        ctx = make_ctx(VISTA_FETCH_METRICS=[
            {"source": "prometheus", "url": slow.url, "query": "slow_metric", "timeout": 60},
            _graphite(good.url, "good.metric"),
        ], vista={"backfill": 600}, ingest={"flush_interval": 0.1})

        async def go() -> list[tuple[float, float]]:
            task = asyncio.create_task(vista_service.run(ctx))
            try:
                for _ in range(300):
                    await asyncio.sleep(0.05)
                    pts = await asyncio.to_thread(_points, ctx, "good.metric")
                    if pts:
                        break
                # the slow remote's request is still being held when the good one landed
                assert slow.behaviour.slow_started.is_set()
                assert not slow.behaviour.release.is_set()
                return pts
            finally:
                ctx.stopping.set()
                slow.behaviour.release.set()
                await task

        assert len(asyncio.run(go())) == 9
    finally:
        slow.close()
        good.close()


def test_vista_idles_without_fetches(make_ctx):
    ctx = make_ctx()

    async def go() -> None:
        task = asyncio.create_task(vista_service.run(ctx))
        await asyncio.sleep(0.2)
        assert not task.done()
        ctx.stopping.set()
        await task

    asyncio.run(go())
    assert ctx.telemetry("vista").snapshot()[0] == {"starts": 1}
