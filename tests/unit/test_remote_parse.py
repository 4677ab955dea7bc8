"""Parsing remote answers, and Vista's settings and naming (pure)."""

from __future__ import annotations

import math

import pytest

from skyline.core.errors import SettingsError
from skyline.remote import BadBody, RemoteSeries, graphite_render, prometheus_matrix
from skyline.services.vista.fetcher import is_plain_path, local_name, window
from skyline.settings import load_settings
from skyline.settings.vista import VistaFetch


def test_graphite_value_first_nulls_are_gaps():
    body = (b'[{"target": "a.b", "datapoints": [[1.5, 60], [null, 120], [3, 180], [0, 240]]},'
            b' {"target": "c", "tags": {"name": "c", "dc": "eu"}, "datapoints": []}]')
    a, c = graphite_render(body)
    assert a.name == "a.b" and a.timestamps.tolist() == [60, 180, 240]
    assert a.values.tolist() == [1.5, 3.0, 0.0]
    assert c.labels == {"name": "c", "dc": "eu"} and c.timestamps.size == 0


def test_graphite_unsorted_and_duplicate_points():
    (s,) = graphite_render(b'[{"target": "x", "datapoints": [[2, 120], [1, 60], [9, 120]]}]')
    assert s.timestamps.tolist() == [60, 120] and s.values.tolist() == [1, 9]


@pytest.mark.parametrize("body", [b"<html>", b'{"a": 1}', b'[{"datapoints": []}]',
                                  b'[{"target": "x", "datapoints": [[1, 2, 3]]}]',
                                  b'[{"target": "x", "datapoints": [["a", "b"]]}]',
                                  b'[{"target": "x", "datapoints": 5}]', b"\xff\xfe"])
def test_graphite_garbage(body):
    with pytest.raises(BadBody):
        graphite_render(body)


def test_prometheus_matrix_strings_nan_and_labels():
    body = (b'{"status":"success","data":{"resultType":"matrix","result":['
            b'{"metric":{"__name__":"up","job":"n"},"values":[[60,"1"],[120,"NaN"],'
            b'[180,"+Inf"],[240,"0.5"]]},'
            b'{"metric":{"job":"n"},"values":[[60.5,"2"]]}]}}')
    up, expr = prometheus_matrix(body)
    assert up.name == "up" and up.labels == {"__name__": "up", "job": "n"}
    assert up.timestamps.tolist() == [60, 240] and up.values.tolist() == [1.0, 0.5]
    assert expr.name == "" and expr.timestamps.tolist() == [60.5]


def test_prometheus_vector_and_errors():
    (v,) = prometheus_matrix(b'{"status":"success","data":{"resultType":"vector","result":'
                             b'[{"metric":{"__name__":"up"},"value":[60,"1"]}]}}')
    assert v.values.tolist() == [1.0]
    for body in (b'{"status":"error","errorType":"bad_data","error":"parse error"}',
                 b'{"status":"success","data":{"resultType":"scalar","result":[1,"2"]}}',
                 b"[]", b"nope"):
        with pytest.raises(BadBody):
            prometheus_matrix(body)


def test_upstream_tuple_and_table_forms():
    s = load_settings(VISTA_FETCH_METRICS=[
        ["https://graphite.example.com", "graphite", 60, "stats.web.rps", "None",
         "/render/?from=-10minutes&format=json&target=", "remote", "None", "None", "None",
         "None", ["60"]],
        {"source": "prometheus", "url": "http://prom:9090/", "query": "node_load1",
         "user": "u", "password": "p"},
    ])
    g, p = s.VISTA_FETCH_METRICS
    assert (g.source, g.url, g.frequency, g.query, g.metric, g.namespace_prefix) == (
        "graphite", "https://graphite.example.com", 60, "stats.web.rps", "", "remote")
    assert p.url == "http://prom:9090" and p.password is not None
    assert p.password.get_secret_value() == "p"


@pytest.mark.parametrize("bad", [
    {"source": "graphite", "url": "ftp://x", "query": "a"},
    {"source": "influx", "url": "http://x", "query": "a"},
    {"source": "graphite", "url": "http://x", "query": ""},
    {"source": "graphite", "url": "http://x", "query": "a", "frequency": 1},
    {"source": "graphite", "url": "http://x", "query": "a", "namespace_prefix": "a b"},
    {"source": "graphite", "url": "http://x", "query": "a", "user": "u", "token": "t"},
    ["http://x", "graphite"],
])
def test_bad_fetches_are_refused(bad):
    with pytest.raises(SettingsError) as e:
        load_settings(VISTA_FETCH_METRICS=[bad])
    assert "VISTA_FETCH_METRICS" in str(e.value)


def _fetch(**kw) -> VistaFetch:
    return VistaFetch(**{"source": "prometheus", "url": "http://p", "query": "q", **kw})


def test_local_names():
    s = RemoteSeries("up", {"__name__": "up", "job": "n", "instance": "a"})
    assert local_name(_fetch(namespace_prefix="dc1"), s, True) == \
        'dc1.up{instance="a",job="n"}'
    expr = RemoteSeries("", {"job": "n"})
    assert local_name(_fetch(), expr, True) is None
    assert local_name(_fetch(metric="rate"), expr, True) == 'rate{job="n"}'
    g = RemoteSeries("a.b.c")
    gf = _fetch(source="graphite", metric="renamed")
    assert local_name(gf, g, True) == "renamed" and local_name(gf, g, False) == "a.b.c"


def test_window_rules():
    f = _fetch(step=30)
    w = window(f, None, 10_000.0, 3600, True)
    assert w.start == math.floor((10_000 - 3600) / 30) * 30 and w.cutoff == 9960
    w = window(f, 9_960.0, 10_020.0, 3600, True)
    assert w.start == 9_900 and w.end == 10_020 and w.cutoff == 10_020
    assert window(f, 9_960.0, 10_020.0, 3600, False).cutoff == 10_021
    assert window(f, 0.0, 100_000.0, 3600, True).start == 96_390


def test_plain_paths():
    assert is_plain_path("a.b-c.d_e")
    assert not any(map(is_plain_path, ["a.*", "sum(a)", "a.{b,c}", "a.[ab]", "a?"]))


def test_config_show_masks_vista_credentials():
    from skyline.settings.show import as_dict

    s = load_settings(VISTA_FETCH_METRICS=[
        {"source": "prometheus", "url": "http://p", "query": "q", "user": "u",
         "password": "pw-secret-1"},
        {"source": "graphite", "url": "http://g", "query": "q", "token": "tok-secret-2"}])
    shown = str(as_dict(s))
    assert "pw-secret-1" not in shown and "tok-secret-2" not in shown
    assert as_dict(s)["VISTA_FETCH_METRICS"][0]["user"] == "u"
