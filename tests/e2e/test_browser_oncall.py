"""The on-call view in a real headless Chromium against a real `skyline run` fed through
horizon's Graphite plaintext port, with a counter, a source that stopped sending and open
incidents: the overview lists what is broken now and refreshes itself; a counter's anomaly
mark lies on its drawn rate line with the expected band behind it; the silences page adds
and ends a silence; the API reference renders; no request leaves 127.0.0.1; a phone-sized
viewport never scrolls sideways. Screenshots of every page go to
$SKYLINE_TEST_ARTIFACTS/browser (default var/test-artifacts/browser), oncall-*.png."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.conftest import free_port
from tests.e2e.skylineproc import AUTH, Running, env_for
from tests.e2e.test_browser import (  # noqa: F401 (chromium is a fixture)
    CANVAS_PIXELS,
    _send,
    _wait,
    artifacts_dir,
    chromium,
)
from tests.webauth import PASSWORD, USERNAME

pytestmark = pytest.mark.system

STEP = 60.0
POINTS = 200
COUNTER = "e2e.shop.orders_total"
LATENCY = "e2e.shop.latency"
LATER = "e2e.shop.errors"
STOPPED = [f"e2e.web09.cpu.{i}" for i in range(3)]

# Where the anomaly's mark is on the canvas and where the line is in the mark's columns:
# the mark's centre must be on (within a few pixels of) the line there.
MARK_ON_LINE = """(sel) => {
  const c = document.querySelector(sel + " .uplot canvas");
  const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
  const W = c.width, H = c.height;
  let mx = 0, my = 0, mn = 0, band = 0;
  const isMark = (i) => d[i] > 170 && d[i + 1] < 90 && d[i + 2] < 90 && d[i + 3] > 200;
  const isLine = (i) => d[i + 2] > 170 && d[i] < 110 && d[i + 1] < 150 && d[i + 3] > 200;
  for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) {
    const i = (y * W + x) * 4;
    if (isMark(i)) { mx += x; my += y; mn++; }
    // the expected band: a pale green fill
    if (d[i + 3] > 0 && d[i + 3] < 120 && d[i + 1] > d[i] && d[i + 1] > d[i + 2]) band++;
  }
  if (!mn) return {marks: 0, band: band};
  mx = Math.round(mx / mn); my = Math.round(my / mn);
  // the line's pixels in the mark's columns (the line runs into the mark and out of it):
  // the nearest must touch the mark, not lie far below or above it
  let ys = [];
  for (let x = Math.max(0, mx - 10); x <= Math.min(W - 1, mx + 10); x++) for (let y = 0; y < H; y++) {
    if (isLine((y * W + x) * 4)) ys.push(y);
  }
  const gap = ys.length ? Math.min(...ys.map((y) => Math.abs(y - my))) : null;
  return {marks: mn, mx: mx, my: my, gap: gap, line_pixels: ys.length, band: band, height: H};
}"""

# against the device's width, not innerWidth: a mobile browser widens its layout viewport to
# a page that overflows, and innerWidth grows with it
NO_SIDEWAYS_SCROLL = ("() => document.documentElement.scrollWidth <= "
                      "Math.min(window.innerWidth, window.screen.width) + 1")


def _feed(port: int, now: float) -> dict[str, Any]:
    """History for every metric; a counter whose rate jumps at the end; a latency spike;
    a source (e2e.web09) whose metrics stopped two hours ago."""
    spike_ts = float(int(now) - 2 * STEP)
    ts = spike_ts - STEP * np.arange(1, POINTS)[::-1]
    rng = np.random.default_rng(3)
    lines = []
    rate = rng.normal(10_000.0, 300.0, len(ts))
    total = 64_000_000.0 + np.cumsum(rate)
    lines += [f"{COUNTER} {x:.1f} {t:.0f}\n" for t, x in zip(ts, total, strict=True)]
    lines.append(f"{COUNTER} {total[-1] + 60_000.0:.1f} {spike_ts:.0f}\n")
    for name in (LATENCY, LATER):
        v = rng.normal(100.0, 5.0, len(ts))
        lines += [f"{name} {x:.3f} {t:.0f}\n" for t, x in zip(ts, v, strict=True)]
    lines.append(f"{LATENCY} 1500.0 {spike_ts:.0f}\n")
    lines.append(f"{LATER} 101.0 {spike_ts:.0f}\n")
    old = ts - 7200.0
    for name in STOPPED:
        v = rng.normal(50.0, 2.0, len(ts))
        lines += [f"{name} {x:.3f} {t:.0f}\n" for t, x in zip(old, v, strict=True)]
    _send(port, lines)
    return {"spike_ts": spike_ts}


def _incidents(base: str) -> dict[str, Any]:
    r = httpx.get(f"{base}/api/v1/incidents", headers=AUTH, timeout=10)
    return r.json() if r.status_code == 200 else {}


def test_oncall_views(tmp_path: Path, chromium: Any) -> None:  # noqa: F811
    from playwright.sync_api import expect

    shots = artifacts_dir()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = env_for(tmp_path / "var", port, SKYLINE_ANALYZER_OPTIMUM_RUN_DURATION="1",
                  SKYLINE_PANORAMA_EXPIRY_TIME="0")
    run = Running(env, tmp_path)
    page_errors: list[str] = []
    requests: list[str] = []
    try:
        run.wait_healthy(base, timeout=120)  # a loaded CI machine starts slowly
        _wait(lambda: httpx.get(f"{base}/api/v1/silences", headers=AUTH,
                                timeout=5).status_code == 200, 30, "the seeded API token")
        plaintext = int(env["SKYLINE_HORIZON__PLAINTEXT_PORT"])
        fed = _feed(plaintext, time.time())
        now = _wait(lambda: (n := _incidents(base)) and
                    {COUNTER, LATENCY} <= {i["metric"] for i in n["incidents"]} and n, 120,
                    "open incidents on the counter and the latency")
        assert now["status"] == "incidents"
        assert any(s["source"] == "e2e.web09" and s["stopped"] for s in now["stale"]), now

        context = chromium.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        page.set_default_timeout(20_000)
        page.on("pageerror", lambda e: page_errors.append(str(e)))
        page.on("console", lambda m: page_errors.append(m.text) if m.type == "error" and
                not m.text.startswith("Failed to load resource") else None)
        page.on("request", lambda r: requests.append(r.url))
        page.goto(f"{base}/login?next=/")
        page.fill("#username", USERNAME)
        page.fill("#password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(f"{base}/")

        # overview: the status says it, the open incidents and the stopped source are listed
        page.goto(f"{base}/?refresh=2")
        expect(page.locator("#status")).to_have_text("incidents open")
        incidents = page.locator("#incidents")
        expect(incidents).to_contain_text(COUNTER)
        expect(incidents).to_contain_text(LATENCY)
        expect(page.locator("#stale")).to_contain_text("e2e.web09")
        expect(page.locator("#stale tr.stopped")).to_contain_text("3 of 3")
        page.screenshot(path=str(shots / "oncall-01-overview.png"), full_page=True)

        # a new incident appears without a reload
        page.evaluate("() => { window.notReloaded = true; }")
        spike = float(int(time.time()) - STEP)
        _send(plaintext, [f"{LATER} 2500.0 {spike:.0f}\n"])
        expect(page.locator(f"#incidents tr[data-metric='{LATER}']")).to_have_count(1, timeout=90_000)
        assert page.evaluate("() => window.notReloaded === true")
        page.screenshot(path=str(shots / "oncall-02-overview-refreshed.png"), full_page=True)

        # acknowledge from the page
        row = page.locator(f"#incidents tr[data-metric='{LATENCY}']")
        row.locator("input[name=note]").fill("looking")
        row.locator("button").click()
        page.wait_for_url(f"{base}/")
        expect(page.locator(f"#incidents tr[data-metric='{LATENCY}']")).to_contain_text(
            f"acknowledged by {USERNAME}")

        # the counter's anomaly: drawn as its rate, the mark on the line, the band behind
        counter_id = next(i["event"] for i in _incidents(base)["incidents"]
                          if i["metric"] == COUNTER)
        page.goto(f"{base}/anomalies/{counter_id}")
        chart = "[data-chart=anomaly-chart]"
        page.wait_for_function(f"() => {{ const f = {CANVAS_PIXELS}; const p = f({chart!r});"
                               " return p && p.mark > 20; }")
        got = page.evaluate(MARK_ON_LINE, chart)
        assert got["marks"] > 20 and got["line_pixels"] > 0, got
        assert got["gap"] <= 10, got  # the mark's radius is ~6 px: it sits on the line
        # not flat at the bottom: the rate's spike rises well above the plot's floor
        assert got["my"] < 0.6 * got["height"], got
        assert got["band"] > 500, got
        expect(page.locator("#sentence")).to_contain_text("normal here was")
        text = page.inner_text("body")
        assert "e+0" not in text and "inf sigma" not in text
        page.screenshot(path=str(shots / "oncall-03-counter-anomaly.png"), full_page=True)

        # the counter's series page charts the rate too; the stopped metric says since when
        page.goto(f"{base}/series/{COUNTER}?from=-6h")
        expect(page.locator("#counter-note")).to_be_visible()
        page.wait_for_function(f"() => {{ const f = {CANVAS_PIXELS};"
                               " const p = f('[data-chart=series-chart]'); return p && p.line > 100; }")
        page.screenshot(path=str(shots / "oncall-04-counter-series.png"), full_page=True)
        page.goto(f"{base}/series/{STOPPED[0]}?from=-6h")
        expect(page.locator("#no-data")).to_contain_text("No data since")
        page.screenshot(path=str(shots / "oncall-05-stopped-series.png"), full_page=True)

        # silences: add, listed (twice is one), the anomaly page shows it, end it
        page.goto(f"{base}/silences")
        for _ in range(2):
            page.fill("#add-silence input[name=pattern]", "e2e.shop.**")
            page.fill("#add-silence input[name=duration]", "2h")
            page.fill("#add-silence input[name=reason]", "deploy")
            page.click("#add-silence button[type=submit]")
            expect(page.locator("p.message")).to_contain_text("Silenced e2e.shop.** until")
        expect(page.locator("#active-silences tbody tr")).to_have_count(1)
        page.screenshot(path=str(shots / "oncall-06-silences.png"), full_page=True)
        page.goto(f"{base}/anomalies/{counter_id}")
        expect(page.locator("#covering-silence")).to_contain_text("e2e.shop.**")
        page.goto(f"{base}/silences")
        page.click("#active-silences form.end button")
        expect(page.locator("p.message")).to_contain_text("Ended silence")
        expect(page.locator("#active-silences")).to_contain_text("No active silence")
        expect(page.locator("#ended-silences")).to_contain_text("e2e.shop.**")

        # the API reference, served by Skyline itself
        page.goto(f"{base}/api/v1/docs")
        expect(page.locator("h1")).to_contain_text("Skyline API")
        expect(page.locator("body")).to_contain_text("/api/v1/incidents")
        page.screenshot(path=str(shots / "oncall-07-api-docs.png"))

        # settings: grouped by component, the detector first, where each value came from
        page.goto(f"{base}/settings")
        first = page.locator("#group-analyzer tbody tr").first
        expect(first).to_have_attribute("data-setting", "analyzer.detector")
        expect(page.locator("tr[data-setting='ANALYZER_OPTIMUM_RUN_DURATION'] .origin")
               ).to_have_text("environment")
        assert page.evaluate(NO_SIDEWAYS_SCROLL)
        page.screenshot(path=str(shots / "oncall-08-settings.png"), full_page=True)

        # the anomalies feed: presets, events close in time under one heading
        page.goto(f"{base}/anomalies")
        page.click("#anomaly-presets a:text-is('6 h')")
        page.wait_for_url("**/anomalies?from=-6h")
        expect(page.locator("#anomaly-presets a.active")).to_have_text("6 h")
        expect(page.locator("tr.burst").first).to_contain_text(re.compile(r"\d+ events (within|at) "))
        page.screenshot(path=str(shots / "oncall-09-anomalies.png"), full_page=True)

        # times in this browser's zone when chosen (UTC by default): tables and charts
        tokyo = chromium.new_context(viewport={"width": 1280, "height": 900},
                                     timezone_id="Asia/Tokyo")
        tokyo.add_cookies(context.cookies())
        local = tokyo.new_page()
        local.on("request", lambda r: requests.append(r.url))
        local.on("pageerror", lambda e: page_errors.append(str(e)))
        local.goto(f"{base}/anomalies/{counter_id}")
        first = local.locator("main time").first
        expect(first).to_have_text(re.compile(r"Z$"))
        local.select_option("#tz-choice", "local")
        local.wait_for_load_state("load")
        expect(local.locator("main time").first).to_have_text(
            re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+09:00$"))
        expect(local.locator(".u-legend")).to_contain_text("time (Asia/Tokyo)")
        local.screenshot(path=str(shots / "oncall-10-anomaly-local-time.png"), full_page=True)
        tokyo.close()

        # a phone: nothing scrolls sideways
        phone = chromium.new_context(viewport={"width": 390, "height": 844},
                                     device_scale_factor=2, is_mobile=True, has_touch=True)
        phone.add_cookies(context.cookies())
        mobile = phone.new_page()
        mobile.on("request", lambda r: requests.append(r.url))
        mobile.on("pageerror", lambda e: page_errors.append(str(e)))
        for i, path in enumerate(["/", "/anomalies", f"/anomalies/{counter_id}",
                                  f"/series/{COUNTER}", "/silences", "/api/v1/docs",
                                  "/settings"]):
            mobile.goto(base + path)
            mobile.wait_for_load_state("networkidle")
            assert mobile.evaluate(NO_SIDEWAYS_SCROLL), (path, mobile.evaluate(
                "() => [document.documentElement.scrollWidth, window.innerWidth]"))
            if path == f"/anomalies/{counter_id}":
                # each algorithm's explanation is readable at the phone's width, not a
                # sliver beside the figure columns
                box = mobile.locator("#explanations td:last-child").first.bounding_box()
                assert box is not None and box["width"] > 300, box
            mobile.screenshot(path=str(shots / f"oncall-phone-{i}.png"), full_page=True)
        phone.close()
        context.close()
        assert fed["spike_ts"] > 0
        outside = [u for u in requests if not u.startswith(("http://127.0.0.1:", "data:"))]
        assert outside == [], outside
        assert len(requests) > 20
    finally:
        code = run.stop()
    assert code == 0, run.stderr[-3000:]
    assert "Traceback" not in run.stderr
    assert page_errors == []
