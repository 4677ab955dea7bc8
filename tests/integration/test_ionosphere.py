"""Ionosphere against a real Redis and SQL: an operator teaches from a stored anomaly, the
stage (reading the hot store's cache, as the analyzer's workers do) vetoes the next repeat at
once; disabling the profile makes it alert again at the next candidate; panorama records the
match from the event's verdict; a wrong match disables the profile."""

from __future__ import annotations

import numpy as np
import pytest
import redis
from sqlalchemy.engine import Engine

from skyline.analysis import ionosphere as ion
from skyline.analysis.stages import Candidate, StageContext
from skyline.core.errors import InvalidInput, NotFound
from skyline.core.events import AnomalyEvent
from skyline.settings import load_settings
from skyline.store import ionosphere_cache as cache
from skyline.store.sql import ionosphere as q
from skyline.store.sql import make_engine, save_anomaly, upgrade

# a budget no machine load reaches: the verdicts asserted must not depend on it
UNHURRIED = load_settings(ionosphere={"budget": 10})
STEP = 60.0
DAY = 1440
T0 = 1_700_000_000.0



def day(seed: int, job: float = 0.6) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = np.arange(DAY)
    v = 100 * (1 + 0.2 * np.sin(2 * np.pi * x / DAY) + 0.02 * rng.normal(size=DAY))
    v[-30:] += job * 100
    return v


def stored_event(engine: Engine, values: np.ndarray, start: float) -> AnomalyEvent:
    t = start + STEP * np.arange(len(values))
    ev = AnomalyEvent.build(metric="app.jobs", timestamp=float(t[-1]), value=float(values[-1]),
                            score=3.0, source="analyzer", window_timestamps=t,
                            window_values=values)
    save_anomaly(engine, ev)
    return ev


def cand(values: np.ndarray, start: float) -> Candidate:
    t = start + STEP * np.arange(len(values))
    return Candidate(metric="app.jobs", timestamp=float(t[-1]), value=float(values[-1]),
                     score=3.0, band_low=80, band_high=120, window_timestamps=t,
                     window_values=values)


def test_teach_then_the_next_repeat_is_vetoed_live(redis_client: redis.Redis, engine: Engine):
    s = load_settings(analyzer={"stages": ["ionosphere"]}, ionosphere={"budget": 10})
    stage = ion.factory({}, StageContext(settings=s, client=redis_client))
    week = T0 + 7 * 86400
    assert stage.check(cand(day(2), week), float("inf")).reason == \
        "no profiles for this metric"

    ev = stored_event(engine, day(1), T0)
    p = ion.teach(engine, redis_client, ev.id, "not_anomalous", "ann", "nightly export")
    assert p.metric == "app.jobs" and p.event_id == ev.id and len(p.values) == DAY
    assert cache.metrics(redis_client) == {"app.jobs"}
    assert [f.profile_id for f in q.feedback_for(engine, ev.id)] == [p.id]

    got = stage.check(cand(day(2), week), float("inf"))  # the same stage object: live
    assert got.verdict == "veto" and f"profile #{p.id} (taught by ann" in got.reason

    # panorama records the match from the vetoed event's verdict, once
    vetoed = AnomalyEvent.build(metric="app.jobs", timestamp=week + STEP * (DAY - 1),
                                value=1.0, score=1.0, source="analyzer", status="vetoed",
                                stages=(got,))
    assert q.record_event_matches(engine, vetoed) == 1
    assert q.record_event_matches(engine, vetoed) == 0
    (m,) = q.list_matches(engine, profile_id=p.id)
    assert m.applied and m.event_id == vetoed.id and m.similarity == got.figures["correlation"]
    assert q.get_profile(engine, p.id).matched_count == 1

    ion.disable(engine, redis_client, p.id, "test")
    assert stage.check(cand(day(3), week + 86400), float("inf")).verdict == "abstain"
    assert cache.metrics(redis_client) == set()
    ion.disable(engine, redis_client, p.id, enabled=True)
    assert stage.check(cand(day(3), week + 86400), float("inf")).verdict == "veto"

    # a wrong match disables the profile at once
    assert ion.review(engine, redis_client, m.id, False, "bob") == [p.id]
    assert stage.check(cand(day(4), week + 2 * 86400), float("inf")).verdict == "abstain"


def test_real_anomaly_feedback_confirms_and_sync_rebuilds_the_cache(redis_client, engine):
    ev = stored_event(engine, day(1), T0)
    ion.teach(engine, redis_client, ev.id, "anomalous", "ann")
    stage = ion.factory({}, StageContext(settings=UNHURRIED, client=redis_client))
    assert stage.check(cand(day(2), T0 + 86400 * 3), float("inf")).verdict == "confirm"
    redis_client.flushdb()  # the cache is lost: sync rebuilds it from SQL
    assert stage.check(cand(day(2), T0 + 86400 * 3), float("inf")).verdict == "abstain"
    assert ion.sync(engine, redis_client) == 1
    assert stage.check(cand(day(2), T0 + 86400 * 3), float("inf")).verdict == "confirm"
    with pytest.raises(NotFound):
        ion.teach(engine, redis_client, "nope", "anomalous", "ann")
    bare = AnomalyEvent(metric="x", timestamp=T0, value=1, score=1, source="analyzer")
    save_anomaly(engine, bare)
    with pytest.raises(InvalidInput):
        ion.teach(engine, redis_client, bare.id, "not_anomalous", "ann")
    ion.delete(engine, redis_client, q.list_profiles(engine)[0].id)
    assert cache.metrics(redis_client) == set()


@pytest.mark.parametrize("processes", [0, 2], ids=["inline", "2-workers"])
def test_the_analyzer_vetoes_a_taught_repeat_live(redis_client, tmp_path, processes):
    """The analyzer alerts on a job; an operator teaches from the stored event; two days later
    the same job is vetoed by the ionosphere stage in the analyzer's own run (its workers read
    the profile cache), the reason on the event."""
    import time as _time

    from skyline.services.analyzer import Analyzer
    from tests.integration.test_analyzer import _url, events, put

    now = _time.time()
    rng = np.random.default_rng(5)
    t = np.arange(now - 4 * 86400, now - 5, 60.0)
    x = np.arange(t.size)
    v = 100 + 10 * np.sin(2 * np.pi * x / 1440) + rng.normal(0, 1, t.size)
    first = t.size - 2 * 1440  # the first job: two days ago, then again at the newest point
    for at in (first, t.size - 1):
        v[at] += 60
    # budgets lifted: the verdicts asserted must not depend on the machine's load
    s = load_settings(DATA_DIR=tmp_path / "var",
                      analyzer={"stages": ["ionosphere"], "stage_budget": 600},
                      ionosphere={"budget": 10})
    eng = make_engine(f"sqlite:///{tmp_path / 'sk.db'}")
    upgrade(eng)

    def run(at: float) -> None:
        a = Analyzer(s, redis_client, _url(redis_client), processes=processes or None,
                     inline=processes == 0)
        try:
            a.run_once(now=at)
        finally:
            a.close()

    put(redis_client, "app.job", t[:first + 1], v[:first + 1])
    run(float(t[first]) + 5)
    (alert,) = [e for e in events(redis_client) if e.metric == "app.job"]
    assert alert.status == "anomalous" and alert.timestamp == t[first]
    assert [x.reason for x in alert.stages] == ["no profiles for this metric"]
    save_anomaly(eng, alert)
    ion.teach(eng, redis_client, alert.id, "not_anomalous", "ann", "the nightly job")

    put(redis_client, "app.job", t, v)
    run(now)
    repeat = [e for e in events(redis_client) if e.metric == "app.job"][-1]
    assert repeat.timestamp == t[-1]
    assert repeat.status == "vetoed", repeat
    (verdict,) = repeat.stages
    assert verdict.stage == "ionosphere" and verdict.verdict == "veto"
    assert "taught by ann" in verdict.reason and verdict.figures["correlation"] >= 0.8
    eng.dispose()
