"""Luminosity live, in a real `skyline run` fed through horizon's Graphite plaintext port:
one outage breaks a root metric and three metrics that follow it (one inverted, one a
counter); the analyzer flags them, Luminosity groups them into one incident and stores the
root anomaly's related metrics, the webhook channel (an ALERTS rule with group = "incident")
gets one alert for the incident instead of one per metric, and the pages show it all in a
real headless Chromium: the anomaly page draws the related metrics normalised on its time
axis, the incidents page lists the incident, its page shows the member timeline.
Screenshots go under $SKYLINE_TEST_ARTIFACTS/browser (default var/test-artifacts/browser)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.alertsinks import HttpSink
from tests.conftest import free_port
from tests.e2e.skylineproc import AUTH, Running, env_for
from tests.e2e.test_browser import (  # noqa: F401 - the chromium fixture
    _send,
    _wait,
    artifacts_dir,
    chromium,
)
from tests.webauth import PASSWORD, USERNAME

pytestmark = pytest.mark.system

STEP = 60.0
POINTS = 400
ROOT = "e2e.lum.web.requests"
FOLLOWERS = ["e2e.lum.db.latency", "e2e.lum.cache.hits", "e2e.lum.api.errors_total"]
OTHERS = [f"e2e.lum.batch.job{i}" for i in range(3)]

# pixels of the related metrics' lines on a canvas (chart.js PALETTE: orange, green, violet)
RELATED_PIXELS = """(sel) => {
  const c = document.querySelector(sel + " .uplot canvas");
  if (!c) return null;
  const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
  let main = 0, orange = 0, green = 0, violet = 0;
  for (let i = 0; i < d.length; i += 4) {
    if (d[i + 3] === 0) continue;
    const r = d[i], g = d[i + 1], b = d[i + 2];
    if (b > 170 && r < 110 && g < 150) main++;
    if (r > 200 && g > 60 && g < 130 && b < 60) orange++;
    if (r < 60 && g > 120 && b > 80 && b < 140) green++;
    if (r > 90 && r < 150 && g < 80 && b > 200) violet++;
  }
  return {main: main, orange: orange, green: green, violet: violet};
}"""


def _config(tmp: Path, webhook: str) -> Path:
    cfg = tmp / "skyline.toml"
    cfg.write_text(f"""
WEBAPP_PUBLIC_URL = "https://sky.example.com"
ANALYZER_OPTIMUM_RUN_DURATION = 1
PANORAMA_EXPIRY_TIME = 0

[[ALERTS]]
pattern = "e2e.lum.**"
channel = "webhook"
group = "incident"

[alerters]
incident_update_delay = 1
poll_interval = 0.2

[alerters.webhook]
enabled = true
url = "{webhook}"

[luminosity]
max_wait = 0
""")
    return cfg


def _feed(port: int) -> float:
    """POINTS minutes of a shared load (a random walk) behind the root and its followers,
    unrelated noisy metrics, then one point where the root jumps and the followers with it.
    The counter accumulates its followers' rate."""
    rng = np.random.default_rng(19)
    spike_ts = float(int(time.time() // STEP) * STEP - STEP)
    ts = spike_ts - STEP * np.arange(POINTS)[::-1]
    load = 200 + np.cumsum(rng.normal(0, 2, POINTS))
    load[-1] = load[-2] + 150
    series = {
        ROOT: load,
        FOLLOWERS[0]: 0.5 * load + 10 + rng.normal(0, 0.3, POINTS),
        FOLLOWERS[1]: 1000 - 2 * load + rng.normal(0, 0.5, POINTS),
        # a counter of errors whose rate follows the load: a running sum of it
        FOLLOWERS[2]: np.cumsum(np.maximum(0.0, load - 100 + rng.normal(0, 0.5, POINTS))),
    }
    for i, name in enumerate(OTHERS):
        series[name] = np.random.default_rng(100 + i).normal(50.0, 3.0, POINTS)
    lines = [f"{name} {x:.4f} {t:.0f}\n" for name, v in series.items()
             for t, x in zip(ts, v, strict=True)]
    _send(port, lines)
    return spike_ts


def _get(base: str, path: str, **params: Any) -> Any:
    r = httpx.get(f"{base}{path}", params=params, headers=AUTH, timeout=10)
    return r.json() if r.status_code == 200 else None


def test_related_metrics_incidents_and_one_alert_live_and_in_the_browser(
        tmp_path: Path, chromium: Any) -> None:  # noqa: F811 - the imported fixture
    from playwright.sync_api import expect

    shots = artifacts_dir()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with HttpSink() as sink:
        env = env_for(tmp_path / "var", port,
                      SKYLINE_CONFIG=str(_config(tmp_path, sink.url + "/hook")))
        run = Running(env, tmp_path)
        page_errors: list[str] = []
        try:
            run.wait_healthy(base, timeout=120)
            _wait(lambda: _get(base, "/api/v1/silences") is not None, 30, "the API token")
            spike_ts = _feed(int(env["SKYLINE_HORIZON__PLAINTEXT_PORT"]))

            def root_anomaly() -> dict[str, Any] | None:
                got = _get(base, "/api/v1/anomalies", pattern="e2e.lum.**") or {"items": []}
                found = [a for a in got["items"]
                         if a["metric"] == ROOT and a["status"] == "anomalous"]
                return found[0] if found else None

            root = _wait(root_anomaly, 120, "the analyzer's anomaly on the root metric")
            assert abs(root["timestamp"] - spike_ts) <= STEP

            def grouped() -> dict[str, Any] | None:
                got = _get(base, "/api/v1/luminosity/incidents") or {"incidents": []}
                for inc in got["incidents"]:
                    names = [m["metric"] for m in inc["members"]]
                    if ROOT in names and len(names) >= 3:
                        return dict(inc)
                return None

            inc = _wait(grouped, 120, "an incident grouping the root with its followers")
            members = [m["metric"] for m in inc["members"]]
            assert set(members) <= {ROOT, *FOLLOWERS}, members  # no unrelated metric
            related = _wait(lambda: (_get(base, f"/api/v1/anomalies/{root['id']}/related")
                                     or {}).get("related"), 120,
                            "the root anomaly's related metrics")
            names = [r["metric"] for r in related]
            # every follower, the counter by its rate (its newest points carried at that
            # rate while the points after the anomaly have not arrived), and nothing else
            assert set(names) == set(FOLLOWERS), names
            inverted = [r for r in related if r["metric"] == FOLLOWERS[1]]
            assert not inverted or inverted[0]["shifted_coefficient"] < 0

            # one alert for the incident on the grouped channel, not one per member
            _wait(lambda: sink.accepted, 60, "the incident's alert")
            time.sleep(3)  # members joining meanwhile: updates of it, never new alerts
            kinds = [b["alert"]["kind"] for b in sink.accepted]
            assert kinds.count("alert") == 1, kinds
            assert set(kinds) <= {"alert", "update"}, kinds
            first = sink.accepted[0]["alert"]
            assert first["incident"]["id"] == inc["id"]
            assert first["link"] == f"https://sky.example.com/luminosity/incidents/{inc['id']}"

            context = chromium.new_context(viewport={"width": 1280, "height": 900})
            page = context.new_page()
            page.set_default_timeout(15_000)
            page.on("pageerror", lambda e: page_errors.append(str(e)))
            page.goto(f"{base}/login")
            page.fill("#username", USERNAME)
            page.fill("#password", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_load_state()

            # the anomaly page: the related metrics drawn with the root, normalised
            page.goto(f"{base}/anomalies/{root['id']}")
            chart = "[data-chart=related-chart]"
            page.wait_for_function(f"() => {{ const f = {RELATED_PIXELS}; "
                                   f"const p = f({chart!r}); return p && p.main > 0; }}")
            pixels = page.evaluate(RELATED_PIXELS, chart)
            assert pixels["main"] > 100 and pixels["orange"] > 50, pixels
            data = json.loads(page.inner_text("script#related-chart"))
            assert [line["label"].split(" (")[0] for line in data["lines"]] == names
            expect(page.locator("#related-short tbody tr")).to_have_count(len(names))
            expect(page.locator("#incident-link a")).to_have_attribute(
                "href", f"/luminosity/incidents/{inc['id']}")
            page.locator("#related-heading").scroll_into_view_if_needed()
            page.screenshot(path=str(shots / "lum-01-anomaly-related.png"), full_page=True)

            # the incidents page (open first) and the incident's member timeline
            page.goto(f"{base}/luminosity/incidents")
            expect(page.locator(f"[data-id='{inc['id']}']")).to_have_count(1)
            page.screenshot(path=str(shots / "lum-02-incidents.png"), full_page=True)
            page.goto(f"{base}/luminosity/incidents/{inc['id']}")
            for name in members:
                expect(page.locator("body")).to_contain_text(name)
            # the incident's own alert log: the one alert (and any updates) on the webhook
            sent = page.locator("#deliveries tbody tr")
            expect(sent.first).to_contain_text("webhook")
            assert [r.split("\t")[2] for r in sent.all_inner_texts()].count("alert") == 1
            # every member began in the same minute: the page says the origin is a guess
            expect(page.locator("#incident-summary")).to_contain_text("at the same time")
            page.screenshot(path=str(shots / "lum-03-incident.png"), full_page=True)
            context.close()
        finally:
            code = run.stop()
        assert code == 0, run.stderr
    assert not page_errors, page_errors
