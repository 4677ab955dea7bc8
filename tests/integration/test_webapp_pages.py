"""The web UI pages in process, on a real embedded Redis and SQLite, with data put in through
the real store functions."""

from __future__ import annotations

import html
import json
import re
import time

import numpy as np
from markupsafe import escape

from skyline.core.patterns import compile_pattern
from skyline.store.sql import alerts as alert_store
from tests.integration import webapp_data as wd

HTML = {"accept": "text/html"}


def _chart(page: str, chart_id: str) -> dict:
    m = re.search(rf'<script type="application/json" id="{chart_id}">(.*?)</script>', page,
                  re.S)
    assert m, f"no {chart_id} data in the page"
    return json.loads(m.group(1))


def _links(page: str, rel: str) -> list[str]:
    return [html.unescape(h) for h in re.findall(rf'<a rel="{rel}" href="([^"]+)"', page)]


def _rows(page: str) -> list[str]:
    """Anomaly ids listed, in order."""
    return re.findall(r'<td><a href="/anomalies/([0-9a-f]+)">', page)


def test_overview(web):
    ctx, client = web
    now = time.time()
    wd.anomaly(ctx, "web.a.cpu", now - 600)
    wd.anomaly(ctx, "web.b.cpu", now - 7200)
    wd.anomaly(ctx, "web.c.cpu", now - 3 * 86400)
    wd.anomaly(ctx, "web.d.cpu", now - 300, status="recovered")
    wd.runs(ctx, 3, interval=float(ctx.settings.ANALYZER_OPTIMUM_RUN_DURATION))
    tel = ctx.telemetry("ingest")
    tel.incr("accepted_remote_write", 600)
    tel.incr("rejected_remote_write_bad_name", 30)
    tel.flush(ctx.client, 60)
    ctx.telemetry("analyzer").flush(ctx.client, 60)
    prefix = ctx.settings.telemetry.series_prefix
    ctx.store.append([f"{prefix}.ingest.accepted_remote_write"] * 2, np.array([now - 90, now - 30]),
                     np.array([300.0, 300.0]))
    ctx.store.append([f"{prefix}.ingest.rejected_remote_write_bad_name"], np.array([now - 30]),
                     np.array([30.0]))
    r = client.get("/", headers=HTML)
    assert r.status_code == 200
    page = r.text
    assert re.search(r'id="anomalies-hour">1<', page)  # recovered events are not counted
    assert re.search(r'id="anomalies-day">2<', page)
    assert "web.a.cpu" in page and "web.c.cpu" in page  # latest list
    assert page.count(">overrun<") == 1 and "1001" in page  # runs table
    window = 5 * ctx.settings.telemetry.series_interval
    row = re.search(r"<td>remote_write</td>(.*?)</tr>", page, re.S)
    assert row, "no ingest row for remote_write"
    cells = re.findall(r'<td class="num">([^<]*)</td>', row.group(1))
    assert [float(c) for c in cells] == [600 / window, 30 / window, 600, 30]
    assert "analyzer." in page and "Redis" in page  # component health


def test_anomalies_filters(web):
    ctx, client = web
    now = time.time()
    a = wd.anomaly(ctx, "web.a.cpu", now - 600, score=0.9, triggered=("grubbs",))
    b = wd.anomaly(ctx, "web.b.mem", now - 1200, score=0.4, triggered=("stddev_from_average",))
    c = wd.anomaly(ctx, "db.a.cpu", now - 3 * 3600, score=0.7, triggered=("grubbs",))

    def ids(**params):
        r = client.get("/anomalies", params=params, headers=HTML)
        assert r.status_code == 200, r.text
        return _rows(r.text)

    assert ids() == [a.id, b.id, c.id]
    assert ids(pattern="web.*.cpu") == [a.id]
    assert ids(pattern="re:\\.cpu$") == [a.id, c.id]
    assert ids(metric="web.b.mem") == [b.id]
    assert ids(**{"from": "-1h"}) == [a.id, b.id]
    assert ids(**{"from": "-4h", "until": "-15m"}) == [b.id, c.id]
    assert ids(algorithm="grubbs") == [a.id, c.id]
    assert ids(min_score="0.6") == [a.id, c.id]
    assert ids(pattern="web.**", min_score="0.5", algorithm="grubbs") == [a.id]
    # empty fields, as a form submits them, are no filter
    assert ids(pattern="", metric="", algorithm="", min_score="", status="") == [a.id, b.id, c.id]
    for bad, message in [({"from": "yesterday"}, "from: not a time"),
                         ({"pattern": "re:("}, "pattern: invalid regular expression"),
                         ({"min_score": "high"}, "min_score: not a number")]:
        r = client.get("/anomalies", params=bad, headers=HTML)
        assert r.status_code == 400 and str(escape(message)) in r.text, r.text


def test_pagination_forward_and_back(web):
    ctx, client = web
    now = time.time()
    made = [wd.anomaly(ctx, f"svc.n{i % 7}.lat", now - 10 * i, with_window=False)
            for i in range(123)]
    # two at the very same time: the keyset must still order them
    made.append(wd.anomaly(ctx, "svc.twin.lat", now - 10 * 60, with_window=False))
    expected = [e.id for e in sorted(made, key=lambda e: -e.timestamp)]
    pages, url = [], "/anomalies?pattern=svc.**"
    while url:
        page = client.get(url, headers=HTML).text
        pages.append(_rows(page))
        nxt = _links(page, "next")
        url = nxt[0] if nxt else ""
    assert [len(p) for p in pages] == [50, 50, 24]
    seen = [i for p in pages for i in p]
    assert len(seen) == len(set(seen)) == 124
    assert set(seen) == set(expected)
    # the two at the same timestamp may come in either order, everything else by time
    ts = {e.id: e.timestamp for e in made}
    assert [ts[i] for i in seen] == sorted(ts.values(), reverse=True)
    # back from the last page, via the "newer" links, page by page
    back, page = [], client.get(f"/anomalies?pattern=svc.**&before={pages[1][-1]}",
                                headers=HTML).text
    assert _rows(page) == pages[2]
    while True:
        prev = _links(page, "prev")
        if not prev:
            break
        assert "pattern=svc.**" in prev[0].replace("%2A", "*")
        page = client.get(prev[0], headers=HTML).text
        back.append(_rows(page))
    assert back == [pages[1], pages[0]]


def test_anomaly_detail_chart_explanations_deliveries(web):
    ctx, client = web
    e = wd.anomaly(ctx, "web.a.cpu", time.time() - 600)
    wd.delivery(ctx, e, "smtp", ok=True)
    wd.delivery(ctx, e, "slack", ok=False, error="channel_not_found")
    r = client.get(f"/anomalies/{e.id}", headers=HTML)
    assert r.status_code == 200
    page = r.text
    chart = _chart(page, "anomaly-chart")
    wt, wv = e.window_arrays()
    assert chart["t"] == wt.tolist() and chart["v"] == wv.tolist()
    # the mark sits on the charted line at the event's time (v None: chart.js takes the
    # line's value there), so it is on the line's scale whatever the event quoted
    assert chart["marks"] == [{"t": e.timestamp, "v": None, "id": e.id, "status": "anomalous",
                               "label": "anomalous (score 0.8)"}]
    assert "/static/vendor/uplot/uPlot.iife.min.js" in page and "/static/chart.js" in page
    assert "Grubbs statistic 4.2 above the critical 3.1" in page
    assert "abstained: too few points" in page
    deliveries = page[page.index('id="deliveries"'):]
    assert "smtp" in deliveries and "slack" in deliveries and "channel_not_found" in deliveries
    assert 'name="csrf_token"' in page and f'action="/anomalies/{e.id}/silence"' in page
    assert client.get("/anomalies/0123456789abcdef", headers=HTML).status_code == 404


def test_silence_form_creates_a_silence(web):
    ctx, client = web
    e = wd.anomaly(ctx, "web.a.cpu", time.time() - 600)
    before = time.time()
    r = client.post(f"/anomalies/{e.id}/silence", data={"duration": "6h", "reason": "deploy",
                                                         "csrf_token": ""},
                    headers=HTML, follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"].startswith(f"/anomalies/{e.id}?silenced=")
    silences = alert_store.list_silences(ctx.engine)
    assert len(silences) == 1
    s = silences[0]
    assert s.pattern == "web.a.cpu" and s.reason == "deploy"
    assert before + 6 * 3600 - 5 < s.expires < time.time() + 6 * 3600 + 5
    page = client.get(r.headers["location"], headers=HTML).text
    assert "Silenced web.a.cpu until" in page and f"(silence {s.id})" in page
    bad = client.post(f"/anomalies/{e.id}/silence", data={"duration": "forever"}, headers=HTML)
    assert bad.status_code == 400 and "not a duration or a time" in bad.text
    assert len(alert_store.list_silences(ctx.engine)) == 1


def test_silence_of_a_name_with_wildcards_matches_only_it(web):
    ctx, client = web
    e = wd.anomaly(ctx, wd.HOSTILE, time.time() - 600)
    r = client.post(f"/anomalies/{e.id}/silence", data={"duration": "1h"}, headers=HTML,
                    follow_redirects=False)
    assert r.status_code == 303
    (s,) = alert_store.list_silences(ctx.engine)
    rx = compile_pattern(s.pattern)
    assert rx.matches(wd.HOSTILE)
    assert not rx.matches(wd.HOSTILE.replace("*", "x"))


def test_series_search_and_page(web):
    ctx, client = web
    now = time.time()
    wd.series(ctx, "web.a.cpu", now - 30)  # points at now-30, now-90, ...
    wd.series(ctx, "web.b.cpu", now - 30, n=50)
    wd.series(ctx, "db.a.mem", now - 30, n=10)
    e = wd.anomaly(ctx, "web.a.cpu", now - 30 - 600)
    r = client.get("/series", params={"q": "cpu"}, headers=HTML)
    assert r.status_code == 200 and "2 metrics match" in r.text
    assert 'href="/series/web.a.cpu"' in r.text and "db.a.mem" not in r.text
    assert "3 metrics" in client.get("/series", headers=HTML).text
    assert "1 metric match" in client.get("/series", params={"q": "db.*.mem"}, headers=HTML).text
    bad = client.get("/series", params={"q": "re:["}, headers=HTML)
    assert bad.status_code == 400
    page = client.get("/series/web.a.cpu", headers=HTML).text
    chart = _chart(page, "series-chart")
    assert len(chart["t"]) == 300 and chart["t"][-1] == now - 30
    assert chart["marks"][0]["id"] == e.id and chart["marks"][0]["t"] == e.timestamp
    assert f'href="/anomalies/{e.id}"' in page
    short = _chart(client.get("/series/web.a.cpu", params={"from": "-1h"}, headers=HTML).text,
                   "series-chart")
    assert len(short["t"]) == 60
    assert client.get("/series/no.such.metric", headers=HTML).status_code == 404


def test_series_search_pages(web):
    ctx, client = web
    names = [f"m.{i:04d}" for i in range(450)]
    ctx.store.append(names, np.full(450, time.time()), np.ones(450))
    seen, url = [], "/series?q=m.*"
    while url:
        page = client.get(url, headers=HTML).text
        seen += re.findall(r'<li><a href="/series/([^"]+)">', page)
        nxt = _links(page, "next")
        url = nxt[0] if nxt else ""
    assert seen == names


def test_hostile_metric_names_render_escaped(web):
    ctx, client = web
    now = time.time()
    wd.series(ctx, wd.HOSTILE, now - 60)
    e = wd.anomaly(ctx, wd.HOSTILE, now - 600)
    escaped = str(escape(wd.HOSTILE))
    pages = {
        "list": client.get("/anomalies", headers=HTML),
        "detail": client.get(f"/anomalies/{e.id}", headers=HTML),
        "search": client.get("/series", params={"q": "web.**"}, headers=HTML),
        "overview": client.get("/", headers=HTML),
        "filtered": client.get("/anomalies", params={"metric": wd.HOSTILE}, headers=HTML),
        "series": client.get("/series/" + _quote(wd.HOSTILE), headers=HTML),
    }
    for what, r in pages.items():
        assert r.status_code == 200, (what, r.text[:300])
        assert "<script>alert" not in r.text, what
        assert escaped in r.text, what
    # inside the chart's JSON no </script> can close the element early
    for what in ("detail", "series"):
        body = pages[what].text
        data = body[body.index('type="application/json"'):]
        data = data[:data.index("</script>")]
        assert "<" not in data.split(">", 1)[1], what
    assert _chart(pages["series"].text, "series-chart")["marks"][0]["id"] == e.id
    # the filtered list really filtered on that name
    assert _rows(pages["filtered"].text) == [e.id]


def _quote(name: str) -> str:
    from urllib.parse import quote

    return quote(name, safe="")


def test_settings_page_masks_secrets(tmp_path):
    from fastapi.testclient import TestClient

    from skyline.runtime.context import Context
    from skyline.services.webapp import create_app
    from skyline.settings import load_settings
    from skyline.store.redis_client import redis_session

    settings = load_settings(DATA_DIR=tmp_path / "var", WEBAPP_AUTH_ENABLED=False,
                             DATABASE_URL="postgresql+psycopg://sky:hunter2secret@db/sky")
    with redis_session(settings) as handle:
        client = TestClient(create_app(Context(settings, handle)))
        r = client.get("/settings", headers=HTML)
    assert r.status_code == 200
    assert "hunter2secret" not in r.text
    assert "sky:***@db/sky" in r.text and "FULL_DURATION" in r.text
    page = r.text
    # grouped by component, the detector first, each value with where it came from
    groups = re.findall(r'<details class="settings-group" id="group-([a-z]+)"', page)
    assert groups[:2] == ["analyzer", "pipeline"] and "stores" in groups
    rows = re.findall(r'<tr class="origin-([a-z]+)" data-setting="([^"]+)">', page)
    assert rows[0] == ("default", "analyzer.detector")
    assert ("override", "DATABASE_URL") in rows and ("default", "FULL_DURATION") in rows
    assert page.index('id="decides"') < page.index('id="group-analyzer"')
    changed = client.get("/settings?changed=1", headers=HTML).text
    shown = re.findall(r'data-setting="([^"]+)"', changed)
    assert set(shown) == {"DATA_DIR", "DATABASE_URL", "WEBAPP_AUTH_ENABLED"}


CSV = "timestamp,value\n" + "\n".join(
    f"{1_700_000_000 + 60 * i},{(500.0 if i == 299 else 10 + (i % 5))}" for i in range(300))


def test_crucible_upload(web):
    ctx, client = web
    r = client.post("/crucible", files={"file": ("spike.csv", CSV, "text/csv")}, headers=HTML)
    assert r.status_code == 200, r.text[:500]
    page = r.text
    results = page[page.index('id="results"'):]
    # the analyzer's own judgement: the default learning detector has not learnt a day of
    # this series, so range_excess judged it, and the table says the learner is learning
    assert "<td>range_excess</td>" in results and "Detector score:" in page
    assert "<td>learning</td>" in results and "still learning this metric" in results
    assert 'id="verdict">ANOMALOUS<' in page
    chart = _chart(page, "crucible-chart")
    assert len(chart["t"]) == 300 and chart["marks"][0]["v"] == 500.0
    replayed = client.post("/crucible", files={"file": ("spike.csv", CSV, "text/csv")},
                           data={"replay": "1"}, headers=HTML)
    assert replayed.status_code == 200 and 'id="replay"' in replayed.text
    assert "ALERT" in replayed.text
    # naming algorithms asks for their vote instead
    voted = client.post("/crucible", files={"file": ("spike.csv", CSV, "text/csv")},
                        data={"algorithms": ",".join(ctx.settings.ALGORITHMS)}, headers=HTML)
    results = voted.text[voted.text.index('id="results"'):]
    for algorithm in ctx.settings.ALGORITHMS:
        assert f"<td>{algorithm}</td>" in results
    assert "Consensus:" in voted.text


def test_crucible_rejects_bad_input(web):
    ctx, client = web
    bad = client.post("/crucible", files={"file": ("x.csv", "t,v\n1,2\n2,oops\n", "text/csv")},
                      headers=HTML)
    assert bad.status_code == 400
    assert str(escape("x.csv: line 3: value 'oops' is not a number")) in bad.text
    binary = client.post("/crucible", files={"file": ("x.csv", b"\xff\xfe\x00", "text/csv")},
                         headers=HTML)
    assert binary.status_code == 400 and "not UTF-8 text" in binary.text
    big = "1,1\n" * (3 * 1024 * 1024)
    too_big = client.post("/crucible", files={"file": ("big.csv", big, "text/csv")},
                          headers=HTML)
    assert too_big.status_code == 413 and "larger than 10 MiB" in too_big.text
    neither = client.post("/crucible", data={"metric": ""}, headers=HTML)
    assert neither.status_code == 400 and "one of them" in neither.text
    missing = client.post("/crucible", data={"metric": "no.such"}, headers=HTML)
    assert missing.status_code == 404 and "no metric named" in missing.text
    counters, _ = ctx.telemetry("webapp").snapshot()
    assert counters["crucible_rejected"] == 5


def test_crucible_on_a_stored_metric(web):
    ctx, client = web
    wd.series(ctx, "web.a.cpu", time.time() - 30)
    r = client.post("/crucible", data={"metric": "web.a.cpu"}, headers=HTML)
    assert r.status_code == 200, r.text[:500]
    assert "300 points" in r.text and len(_chart(r.text, "crucible-chart")["t"]) == 300
    assert 'value="web.a.cpu"' in client.get("/crucible?metric=web.a.cpu", headers=HTML).text


def test_static_files_are_served_with_a_long_cache(web):
    _, client = web
    for path in ("/static/vendor/uplot/uPlot.iife.min.js", "/static/vendor/uplot/uPlot.min.css",
                 "/static/chart.js", "/static/skyline.css"):
        r = client.get(path)
        assert r.status_code == 200, path
        assert "max-age=31536000" in r.headers["cache-control"], path
    js = client.get("/static/vendor/uplot/uPlot.iife.min.js").text
    assert "uPlot" in js and len(js) > 20_000
    assert client.get("/static/vendor/uplot/LICENSE").text.startswith("The MIT License")
    assert client.get("/static/nope.js").status_code == 404


def test_logged_in_forms_carry_the_session_csrf_token(tmp_path):
    """With login on, the silence form and the crucible form carry the session's CSRF token,
    and the silence form works with it (and is refused without)."""
    from fastapi.testclient import TestClient

    from skyline.runtime.context import Context
    from skyline.services.webapp import create_app
    from skyline.settings import load_settings
    from skyline.store.redis_client import redis_session
    from skyline.store.sql import db
    from skyline.store.sql.users import create_user

    def token(page: str) -> str:
        m = re.search(r'name="csrf_token" value="([^"]*)"', page)
        assert m, "no csrf_token field"
        return m.group(1)

    settings = load_settings(DATA_DIR=tmp_path / "var", WEBAPP_AUTH_ENABLED=True)
    with redis_session(settings) as handle:
        ctx = Context(settings, handle)
        engine = ctx.engine = db.make_engine(settings.database_url)
        db.upgrade(engine)
        create_user(engine, "ops", "correct horse battery", is_admin=True)
        client = TestClient(create_app(ctx))
        e = wd.anomaly(ctx, "web.a.cpu", time.time() - 60)
        login = client.get("/login", headers=HTML).text
        r = client.post("/login", data={"username": "ops", "password": "correct horse battery",
                                        "csrf_token": token(login), "next": "/"},
                        headers=HTML, follow_redirects=False)
        assert r.status_code == 303
        page = client.get(f"/anomalies/{e.id}", headers=HTML).text
        csrf = token(page)
        assert csrf and token(client.get("/crucible", headers=HTML).text) == csrf
        refused = client.post(f"/anomalies/{e.id}/silence", data={"duration": "1h"},
                              headers=HTML, follow_redirects=False)
        assert refused.status_code == 403
        ok = client.post(f"/anomalies/{e.id}/silence",
                         data={"duration": "1h", "csrf_token": csrf}, headers=HTML,
                         follow_redirects=False)
        assert ok.status_code == 303
        (s,) = alert_store.list_silences(engine)
        assert s.who == "ops"
        engine.dispose()


def test_anomaly_page_quotes_the_boundary_rule_that_fired(web):
    from skyline.core.events import AlgorithmResult, AnomalyEvent
    from skyline.store.sql import save_anomaly

    ctx, client = web
    ts = time.time() - 600
    wt, wv = wd.window(ts)
    text = "value 42 < 100 for 3 consecutive checks (rule api <requests>)"
    e = AnomalyEvent.build(metric="prod.api.rps", timestamp=ts, value=42.0, score=1.0,
                           source="boundary", status="anomalous", triggered=("less_than",),
                           results=(AlgorithmResult("less_than", True, 42.0, 100.0, text),),
                           created=ts, window_timestamps=wt, window_values=wv)
    assert save_anomaly(ctx.engine, e)
    page = client.get(f"/anomalies/{e.id}", headers=HTML).text
    rule = page[page.index('id="rule"'):]
    rule = rule[:rule.index("</p>")]
    assert "Boundary rule <b>less_than</b>" in rule and str(escape(text)) in rule
    analyzer = wd.anomaly(ctx, "web.a.cpu", ts)
    assert 'id="rule"' not in client.get(f"/anomalies/{analyzer.id}", headers=HTML).text


def test_an_anomaly_mirage_judged_shows_the_week_it_judged(web):
    from skyline.core.events import AnomalyEvent, StageVerdict
    from skyline.store import history as hist
    from skyline.store import keys
    from skyline.store.sql import save_anomaly

    ctx, client = web
    now = time.time()
    wd.series(ctx, "web.a.cpu", now - 30)  # raw: the last 5 h
    first_raw = now - 30 - 299 * 60
    end = (first_raw // 600) * 600
    t = np.arange(end - 7 * 86400, end, 60.0)
    b = hist.bucketise(t, np.round(10 + np.sin(t / 9000.0), 2), 600)
    ctx.client.set(keys.history("web.a.cpu"), hist.encode(b))
    verdict = StageVerdict("mirage", "veto", "4 similar peaks near 02:05 on earlier days; this "
                           "one (90) is within their range", {"hours": 168.0})
    wt, wv = wd.window(now - 30)
    e = AnomalyEvent.build(metric="web.a.cpu", timestamp=now - 30, value=90.0, score=0.9,
                           source="analyzer", status="vetoed", stages=(verdict,),
                           window_timestamps=wt, window_values=wv)
    assert save_anomaly(ctx.engine, e)
    page = client.get(f"/anomalies/{e.id}", headers=HTML).text
    assert "4 similar peaks near 02:05" in page and 'id="mirage-heading"' in page
    chart = _chart(page, "mirage-chart")
    assert chart["t"][0] >= now - 30 - 168 * 3600 - 600
    assert len(chart["t"]) == int(((b.timestamps >= now - 30 - 168 * 3600)).sum()) + 300
    assert chart["marks"][0]["id"] == e.id
    # an anomaly Mirage did not judge has no such chart
    other = wd.anomaly(ctx, "web.a.cpu", now - 90)
    assert 'id="mirage-heading"' not in client.get(f"/anomalies/{other.id}", headers=HTML).text


def test_crucible_on_a_stored_metric_runs_mirage_on_its_long_history(tmp_path):
    """A metric of the hot store: crucible's Mirage reads its long history as it does live
    (a job every 48 h, absent from the raw day, vetoed on the week)."""
    from fastapi.testclient import TestClient

    from skyline.runtime.context import Context
    from skyline.services.webapp import create_app
    from skyline.settings import load_settings
    from skyline.store import keys
    from skyline.store.redis_client import redis_session
    from skyline.store.roomba import HistoryPolicy, Roomba
    from skyline.store.series import encode
    from skyline.store.sql import db

    settings = load_settings(DATA_DIR=tmp_path / "var", WEBAPP_AUTH_ENABLED=False,
                             analyzer={"stages": ["mirage"]},
                             mirage={"namespaces": [{"pattern": "app.*", "hours": 168}]})
    with redis_session(settings) as handle:
        ctx = Context(settings, handle)
        engine = ctx.engine = db.make_engine(settings.database_url)
        db.upgrade(engine)
        try:
            now = time.time()
            rng = np.random.default_rng(11)
            t = np.arange(now - 8 * 86400, now - 5, 60.0)
            v = 100 + rng.normal(0, 2, t.size)
            v[(now - t) % (2 * 86400) < 90] += 50  # every 48 h, the newest point included
            ctx.client.set(keys.series("app.job"), encode(t, v))
            ctx.client.sadd(keys.METRIC_INDEX, "app.job")
            Roomba(ctx.client, retention=86400 + 600,
                   history=HistoryPolicy(resolution=600, span=7 * 86400, batch=3600)
                   ).run_pass(now, 10)
            assert ctx.client.exists(keys.history("app.job"))
            client = TestClient(create_app(ctx), raise_server_exceptions=False)
            r = client.post("/crucible", data={"metric": "app.job"}, headers=HTML)
            assert r.status_code == 200, r.text[:500]
            stages = r.text[r.text.index('id="stages"'):]
            assert "<b>mirage</b>: veto:" in stages, stages[:500]
        finally:
            engine.dispose()
