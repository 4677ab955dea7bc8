import json

import numpy as np
import pytest

from skyline.core.errors import InvalidInput
from skyline.events import AlgorithmResult, AnomalyEvent, event_id


def _event(**kw):
    t = np.arange(0.0, 600.0, 60.0)
    v = np.sin(t)
    base = dict(metric="web.requests", timestamp=540.0, value=12.5, score=0.78,
                source="analyzer", window_timestamps=t, window_values=v,
                triggered=("grubbs", "ks_test"),
                results=(AlgorithmResult("grubbs", True, 4.2, 3.0, "z 4.2 > 3"),
                         AlgorithmResult("ks_test", None, None, None, "abstained")))
    base.update(kw)
    return AnomalyEvent.build(**base)


def test_id_is_deterministic_and_depends_on_metric_time_source():
    a, b = _event(), _event(score=0.1)
    assert a.id == b.id == event_id("web.requests", 540.0, "analyzer")
    assert _event(source="mirage").id != a.id
    assert _event(timestamp=600.0).id != a.id
    assert _event(metric="other").id != a.id


def test_json_round_trip_keeps_everything():
    e = _event()
    back = AnomalyEvent.from_json(e.to_json())
    assert back == e
    t, v = back.window_arrays()
    np.testing.assert_array_equal(t, np.arange(0.0, 600.0, 60.0))
    np.testing.assert_array_equal(v, np.sin(t))
    assert json.loads(e.to_json())["v"] == 2


def test_window_is_compressed():
    t = np.arange(0.0, 86400.0, 60.0)
    e = _event(window_timestamps=t, window_values=np.ones_like(t))
    assert len(e.window) < t.size * 16 / 4


@pytest.mark.parametrize("bad", ["not json", "[]", '{"metric": "x"}',
                                 '{"id":"1","metric":"m","timestamp":"x","value":1,'
                                 '"score":1,"source":"a"}'])
def test_invalid_json_is_refused_with_a_reason(bad):
    with pytest.raises(InvalidInput):
        AnomalyEvent.from_json(bad)


def test_nan_value_cannot_be_serialised_silently():
    with pytest.raises(ValueError):
        _event(value=float("nan")).to_json()
