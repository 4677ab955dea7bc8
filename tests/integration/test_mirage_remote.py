"""The Mirage stage reading a metric's long history from a remote (a real HTTP server with
made-up data, tests/remotes.py; the real Graphite and Prometheus are in
tests/e2e/test_mirage_real.py): merged with the points Skyline holds, fetched only for what
those do not cover, cached, back-filled once (MIRAGE_AUTOFILL_TOOSHORT), and a remote that is
down, slow, garbage or huge makes the stage abstain within its budget, counted."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from skyline.algorithms import AnalysisParams
from skyline.analysis.mirage import MirageRules, MirageStage, RemoteScope
from skyline.analysis.stages import Candidate, Stages
from skyline.remote import Remote
from skyline.store import history as hist
from skyline.store import keys
from skyline.store.hotstore import HotStore
from tests.remotes import FakeRemote, value_at

DAY = 86400.0
NOW = 1_800_000_000.0
NAME = "app.remote.x"


@pytest.fixture
def remote():
    r = FakeRemote()
    yield r
    r.close()


def _local_day(client) -> None:
    t = np.arange(NOW - DAY, NOW, 60.0)
    HotStore(client).append([NAME] * t.size, t, np.array([value_at(NAME, x) for x in t]))


def _stage(client, url: str | None, kind: str = "graphite", **kw) -> MirageStage:
    scope = None if url is None else RemoteScope(
        Remote(kind, url, timeout=5.0, max_body_bytes=1024 * 1024), query="{metric}")
    kw.setdefault("fetch_budget", 30.0)  # the made-up week takes the fake server a while
    return MirageStage(rules=MirageRules((("app.**", 168.0),), (scope,)),
                       params=AnalysisParams(), client=client, **kw)


def _candidate(value: float = 500.0) -> Candidate:
    return Candidate(metric=NAME, timestamp=NOW, value=value, score=0.9, band_low=0.0,
                     band_high=100.0, window_timestamps=np.empty(0),
                     window_values=np.empty(0))


def test_the_remote_gives_the_week_skyline_does_not_hold(redis_client, remote):
    _local_day(redis_client)
    alone = _stage(redis_client, None).check(_candidate(), time.monotonic() + 30)
    assert alone.verdict == "abstain" and "only 24" in alone.reason
    st = _stage(redis_client, remote.url)
    got = st.check(_candidate(), time.monotonic() + 30)
    assert got.verdict == "confirm", got
    assert got.figures["history_hours"] >= 167
    assert len(remote.behaviour.requests) == 1
    assert "target=app.remote.x" in remote.behaviour.requests[0]
    # cached: the next candidate of the metric asks nothing
    assert st.check(_candidate(), time.monotonic() + 30).verdict == "confirm"
    assert len(remote.behaviour.requests) == 1
    assert not redis_client.exists(keys.history(NAME))  # no back-fill unless asked
    # closing (as the analyzer's worker does when it stops) ends the remote client's thread
    def remote_threads() -> int:
        return sum(t.name == "mirage-remote" for t in threading.enumerate())

    running = remote_threads()
    assert running >= 1
    st.close()
    assert remote_threads() == running - 1
    st.close()  # twice is harmless


def test_a_remote_is_not_asked_when_skyline_holds_the_whole_span(redis_client, remote):
    t = np.arange(NOW - 8 * DAY, NOW, 60.0)
    HotStore(redis_client).append([NAME] * t.size, t, np.array([value_at(NAME, x) for x in t]))
    got = _stage(redis_client, remote.url).check(_candidate(), time.monotonic() + 30)
    assert got.verdict == "confirm" and remote.behaviour.requests == []


def test_autofill_writes_the_older_buckets_once(redis_client, remote):
    _local_day(redis_client)
    st = _stage(redis_client, remote.url, autofill=True, remote_cache=0.0)
    assert st.check(_candidate(), time.monotonic() + 30).verdict == "confirm"
    assert st.autofilled == 1
    b = hist.decode(redis_client.get(keys.history(NAME)))
    first_raw = HotStore(redis_client).read_one(NAME).timestamps[0]
    assert b.timestamps[-1] + 600 <= first_raw  # only what the raw series does not hold
    assert b.timestamps[0] <= NOW - 6.9 * DAY
    # the history now covers the span: the remote is not asked again
    asked = len(remote.behaviour.requests)
    remote.behaviour.mode = "error500"
    got = st.check(_candidate(), time.monotonic() + 30)
    assert got.verdict == "confirm" and len(remote.behaviour.requests) == asked


@pytest.mark.parametrize("mode,reason", [("garbage", "bad_body"), ("huge", "too_large"),
                                         ("error500", "http_error"),
                                         ("redirect", "redirect")])
def test_a_broken_remote_makes_the_stage_abstain_and_is_counted(redis_client, remote, mode,
                                                                 reason):
    _local_day(redis_client)
    remote.behaviour.mode = mode
    st = _stage(redis_client, remote.url)
    got = st.check(_candidate(), time.monotonic() + 30)
    assert got.verdict == "abstain" and f"({reason}:" in got.reason, got
    assert st.telemetry.snapshot()[0].get(f"remote_errors_{reason}") == 1
    stages = Stages([st])  # the analyzer's chain publishes the stage's counts
    stages.check_many([_candidate()])
    assert stages.stats.per_stage["mirage"].get("abstain") == 1
    assert stages.stats.per_stage["mirage"].get(f"remote_errors_{reason}") == 1
    assert st.drain_counts() == {}  # drained by the chain
    # in backoff now: the next candidate abstains without asking
    asked = len(remote.behaviour.requests)
    again = st.check(_candidate(), time.monotonic() + 30)
    assert again.verdict == "abstain" and "(backoff:" in again.reason
    assert len(remote.behaviour.requests) == asked


def test_a_slow_or_down_remote_costs_no_more_than_the_budget(redis_client, remote):
    _local_day(redis_client)
    remote.behaviour.mode = "slow"
    st = _stage(redis_client, remote.url)
    got = st.check(_candidate(), time.monotonic() + 1.0)  # remote timeout 5 s, budget 1 s
    remote.behaviour.release.set()
    assert got.verdict == "abstain" and "(timeout:" in got.reason, got
    # a step of many candidates has n x the budget, but its fetches only one candidate's
    remote.behaviour.release.clear()
    st = _stage(redis_client, remote.url, fetch_budget=1.0)
    got = st.check(_candidate(), time.monotonic() + 600)
    remote.behaviour.release.set()
    assert got.verdict == "abstain" and "(timeout:" in got.reason, got
    down = _stage(redis_client, "http://127.0.0.1:9")  # nothing listens on the discard port
    got = down.check(_candidate(), time.monotonic() + 5)
    assert got.verdict == "abstain" and "(unreachable:" in got.reason, got


def test_a_query_giving_several_series_abstains(redis_client, remote):
    _local_day(redis_client)
    st = _stage(redis_client, remote.url, kind="prometheus")  # the fake answers 2 instances
    got = st.check(_candidate(), time.monotonic() + 30)
    assert got.verdict == "abstain" and "(ambiguous:" in got.reason, got
