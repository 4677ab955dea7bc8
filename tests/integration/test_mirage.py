"""The Mirage stage live (history from the hot store) gives replay's verdicts."""

from __future__ import annotations

import time

import numpy as np
import pytest

from skyline.algorithms import AnalysisParams
from skyline.analysis.mirage import MirageRules, MirageStage
from skyline.store import keys
from skyline.store.hotstore import HotStore
from skyline.store.roomba import HistoryPolicy, Roomba
from tests.unit.test_mirage_stage import DAY, END, candidate, nightly


def test_live_stage_reads_history_and_series_and_agrees_with_replay(redis_client):
    t, v = nightly()
    store = HotStore(redis_client)
    now = END + 7200 + 300  # 02:05 today
    keep = t < now
    store.append(["app.jobs"] * int(keep.sum()), t[keep], v[keep])
    Roomba(redis_client, retention=DAY + 600,
           history=HistoryPolicy(resolution=600, span=7 * DAY, batch=3600)).run_pass(now, 10)
    assert redis_client.exists(keys.history("app.jobs"))
    assert len(store.read_one("app.jobs")) < keep.sum()  # the older part is in the history
    live = MirageStage(rules=MirageRules((("app.**", 168.0),)), params=AnalysisParams(),
                       client=redis_client)
    for at, value in ((now, 151.0), (now, 190.0)):
        replayed = candidate(t, v, at, value)
        from_store = candidate(t, v, at, value)
        object.__setattr__(from_store, "history", None)  # live: the stage reads Redis
        deadline = time.monotonic() + 60
        a, b = live.check(from_store, deadline), live.check(replayed, deadline)
        assert (a.verdict, a.reason) == (b.verdict, b.reason)
        assert a.figures == b.figures
    # and the veto/confirm split is the expected one
    assert live.check(candidate(t, v, now, 151.0), time.monotonic() + 60).verdict == "veto"
    assert live.check(candidate(t, v, now, 190.0), time.monotonic() + 60).verdict == "confirm"


@pytest.mark.parametrize("processes", [0, 2], ids=["inline", "2-workers"])
def test_the_analyzer_runs_mirage_live_and_records_its_veto(redis_client, tmp_path, processes):
    """A job every other day: absent from the analyzer's 24 h, so the analyzer flags it;
    Mirage's week holds three earlier runs, so it vetoes it with its reason on the event.
    A spike never seen before is confirmed."""
    from skyline.core.events import AnomalyEvent
    from skyline.events.stream import FIELD
    from skyline.services.analyzer import Analyzer
    from skyline.settings import load_settings
    from tests.integration.test_analyzer import _url, put

    now = time.time()
    rng = np.random.default_rng(11)
    t = np.arange(now - 8 * DAY, now - 5, 60.0)
    base = 100 + rng.normal(0, 2, t.size)
    since_job = (now - t) % (2 * DAY)
    job = base.copy()
    job[since_job < 90] += 50  # a minute or so every 48 h, starting with the newest point
    fresh = base.copy()
    fresh[-1] += 90  # never seen before
    for name, v in (("app.job", job), ("app.fresh", fresh)):
        put(redis_client, name, t, v)
    Roomba(redis_client, retention=DAY + 600,
           history=HistoryPolicy(resolution=600, span=7 * DAY, batch=3600)).run_pass(now, 10)
    s = load_settings(DATA_DIR=tmp_path / "var", analyzer={"stages": ["mirage"]},
                      mirage={"namespaces": [{"pattern": "app.*", "hours": 168}]})
    a = Analyzer(s, redis_client, _url(redis_client), processes=processes or None,
                 inline=processes == 0)
    try:
        a.run_once()
    finally:
        a.close()
    evs = {e.metric: e for e in (AnomalyEvent.from_json(f[FIELD])
                                 for _, f in redis_client.xrange(keys.ANOMALY_STREAM))}
    assert evs["app.job"].status == "vetoed", evs["app.job"]
    (verdict,) = evs["app.job"].stages
    assert verdict.stage == "mirage" and verdict.verdict == "veto"
    assert verdict.reason and verdict.figures["history_hours"] > 160
    assert evs["app.fresh"].status == "anomalous"
    assert [x.verdict for x in evs["app.fresh"].stages] == ["confirm"]


@pytest.mark.parametrize("setting", ["always", "periodic"])
def test_always_and_periodic_checks_run_live_on_points_the_analyzer_did_not_flag(
        redis_client, tmp_path, setting):
    """MIRAGE_ALWAYS_METRICS / MIRAGE_PERIODIC_CHECK in the live analyzer (replay's test is in
    tests/unit/test_mirage_stage.py): Mirage reads the metric's week from Redis and judges
    its newest point though the detector did not flag it; a confirm becomes an anomaly event
    carrying Mirage's verdict. Here a Mirage that calls any excess over the week's range
    anomalous, on quiet series whose newest point is a hair above it; a metric outside the
    setting is never judged by it."""
    from skyline.core.events import AnomalyEvent
    from skyline.events.stream import FIELD
    from skyline.services.analyzer import Analyzer
    from skyline.settings import load_settings
    from tests.integration.test_analyzer import _url, put

    now = time.time()
    rng = np.random.default_rng(5)
    t = np.arange(now - 8 * DAY, now - 5, 60.0)
    for name in ("app.quiet", "other.quiet"):
        v = np.round(100 + rng.normal(0, 1, t.size), 2)
        v[-1] = v.max() + 0.1  # just above the week: far too little for the analyzer
        put(redis_client, name, t, v)
    Roomba(redis_client, retention=DAY + 600,
           history=HistoryPolicy(resolution=600, span=7 * DAY, batch=3600)).run_pass(now, 10)
    extra = ({"MIRAGE_ALWAYS_METRICS": ["app.quiet"]} if setting == "always" else
             {"MIRAGE_PERIODIC_CHECK": True, "MIRAGE_PERIODIC_CHECK_INTERVAL": 3600,
              "MIRAGE_PERIODIC_CHECK_NAMESPACES": ["app.**"]})
    s = load_settings(DATA_DIR=tmp_path / "var", analyzer={"stages": ["mirage"]},
                      mirage={"namespaces": [{"pattern": "*.quiet", "hours": 168}]}, **extra)
    a = Analyzer(s, redis_client, _url(redis_client), inline=True)
    try:
        (stage,) = a.pool.analyzer.pipeline.stages.stages  # type: ignore[union-attr]
        stage.params = AnalysisParams(score_threshold=1e-9)  # any excess is anomalous to it
        a.run_once()
    finally:
        a.close()
    evs = [AnomalyEvent.from_json(f[FIELD]) for _, f in redis_client.xrange(keys.ANOMALY_STREAM)]
    assert [e.metric for e in evs if e.status == "anomalous"] == ["app.quiet"], evs
    (ev,) = [e for e in evs if e.metric == "app.quiet"]
    (verdict,) = ev.stages
    assert verdict.stage == "mirage" and verdict.verdict == "confirm"
    assert verdict.figures["history_hours"] > 160  # the week, read from the hot store
    assert not [e for e in evs if e.metric == "other.quiet"]
