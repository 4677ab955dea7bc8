"""Ionosphere's SQL store on every backend available: feedback, profiles (series round trip,
disable cascades to learnt profiles), matches (idempotent per event and profile, counted on
the profile, a wrong match disables its profile)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from sqlalchemy.engine import Engine

from skyline.core.errors import InvalidInput, NotFound
from skyline.store.sql import make_engine, upgrade
from skyline.store.sql.ionosphere import (
    add_feedback,
    create_profile,
    delete_profile,
    feedback_for,
    get_profile,
    list_matches,
    list_profiles,
    profile_metrics,
    record_match,
    review_match,
    set_enabled,
    validate_profile,
)

T0 = 1_700_000_000.0


@pytest.fixture
def store(sql_url: str) -> Iterator[Engine]:
    eng = make_engine(sql_url)
    upgrade(eng)
    yield eng
    eng.dispose()


def _series(n: int = 1440) -> tuple[np.ndarray, np.ndarray]:
    t = T0 + 60.0 * np.arange(n)
    v = 100 + 10 * np.sin(np.arange(n) / 50.0) + 1e-7 * np.arange(n)
    return t, v


def test_feedback_round_trip(store):
    a = add_feedback(store, "e1", "web.cpu", "not_anomalous", "ann", "the nightly backup")
    add_feedback(store, "e1", "web.cpu", "anomalous", "bob", profile_id=None)
    got = feedback_for(store, "e1")
    assert [(f.label, f.who) for f in got] == [("not_anomalous", "ann"), ("anomalous", "bob")]
    assert got[0].id == a.id and got[0].note == "the nightly backup"
    assert feedback_for(store, "nope") == []
    with pytest.raises(InvalidInput):
        add_feedback(store, "e1", "web.cpu", "meh", "ann")


def test_profile_round_trip_keeps_the_series_exactly(store):
    t, v = _series()
    p = create_profile(store, "web.cpu", "not_anomalous", t, v, event_id="e1", who="ann",
                       note="backup")
    got = get_profile(store, p.id)
    assert got.metric == "web.cpu" and got.label == "not_anomalous"
    assert (got.start, got.resolution, len(got.values)) == (T0, 60.0, 1440)
    assert got.values.tobytes() == v.tobytes()
    assert got.anchor == t[-1] and got.event_id == "e1" and got.enabled
    assert got.features["points"] == 1440 and got.features_version == 1
    other = create_profile(store, "web.mem", "anomalous", t[:100], v[:100])
    assert [x.id for x in list_profiles(store)] == [other.id, p.id]
    assert [x.id for x in list_profiles(store, "web.cpu")] == [p.id]
    assert list_profiles(store, "never.seen") == []
    assert profile_metrics(store) == ["web.cpu", "web.mem"]
    with pytest.raises(NotFound):
        get_profile(store, 999_999)


def test_disable_cascades_to_learnt_profiles_and_enable_restores_one(store):
    t, v = _series(200)
    root = create_profile(store, "m", "not_anomalous", t, v)
    child = create_profile(store, "m", "not_anomalous", t, v, parent_id=root.id)
    grandchild = create_profile(store, "m", "not_anomalous", t, v, parent_id=child.id)
    other = create_profile(store, "m", "not_anomalous", t, v)
    assert sorted(set_enabled(store, root.id, False, "wrong")) == sorted(
        [root.id, child.id, grandchild.id])
    assert [p.id for p in list_profiles(store, "m", enabled=True)] == [other.id]
    assert get_profile(store, child.id).disabled_reason == "wrong"
    set_enabled(store, root.id, True)
    assert get_profile(store, root.id).enabled and not get_profile(store, child.id).enabled
    validate_profile(store, root.id)
    assert get_profile(store, root.id).validated
    with pytest.raises(NotFound):
        set_enabled(store, 999_999, False)


def test_matches_are_idempotent_counted_and_a_wrong_one_disables_the_profile(store):
    t, v = _series(200)
    p = create_profile(store, "m", "not_anomalous", t, v)
    figures = {"correlation": 0.93, "window_hours": 3.0}
    assert record_match(store, p.id, "m", "ev1", T0 + 1e4, "motif", 0.93, figures, True)
    assert not record_match(store, p.id, "m", "ev1", T0 + 1e4, "motif", 0.93, figures, True)
    assert record_match(store, p.id, "m", "ev2", T0 + 2e4, "motif", 0.85, figures, False)
    assert not record_match(store, 999_999, "m", "ev3", T0, "motif", 0.9, figures, True)
    got = get_profile(store, p.id)
    assert got.matched_count == 2 and got.last_matched == T0 + 2e4
    ms = list_matches(store, profile_id=p.id)
    assert [m.event_id for m in ms] == ["ev2", "ev1"]
    assert ms[1].applied and not ms[0].applied and ms[1].figures == figures
    assert [m.id for m in list_matches(store, event_id="ev1")] == [ms[1].id]
    assert len(list_matches(store, metric="m")) == 2 and list_matches(store, metric="x") == []
    match, disabled = review_match(store, ms[1].id, True, "ann")
    assert match.validated is True and disabled == []
    match, disabled = review_match(store, ms[0].id, False, "bob")
    assert match.validated is False and match.reviewed_by == "bob"
    assert disabled == [p.id] and not get_profile(store, p.id).enabled
    assert "marked wrong by bob" in get_profile(store, p.id).disabled_reason
    delete_profile(store, p.id)
    assert list_matches(store, metric="m") == []
    with pytest.raises(NotFound):
        delete_profile(store, p.id)
    with pytest.raises(NotFound):
        review_match(store, 999_999, True, "x")
