"""The web UI in a real headless Chromium (the system's /usr/bin/chromium, driven by
Playwright), against a real `skyline run` fed through horizon's Graphite plaintext port:
log in, the overview shows the analyzer's anomalies, the anomalies page filters, the detail
page draws its chart, the crucible page takes an upload, silencing from the detail page
reaches `skyline silence list`, a form without the CSRF token is refused, and logging out
ends the session. A screenshot of every step is kept under $SKYLINE_TEST_ARTIFACTS/browser
(default var/test-artifacts/browser)."""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.conftest import free_port, skip_or_fail
from tests.e2e.skylineproc import AUTH, Running, cli, env_for
from tests.webauth import PASSWORD, USERNAME

pytestmark = pytest.mark.system

CHROMIUM = Path("/usr/bin/chromium")
# no network beyond loopback here, and nothing Chromium does on its own should need it
CHROMIUM_ARGS = ["--no-isolation", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
REPO = Path(__file__).resolve().parents[2]
STEP = 60.0
POINTS = 200
WEB = "e2e.web.checkout.latency"
DB = "e2e.db.primary.connections"
NORMAL = [f"e2e.web.normal.{i}" for i in range(3)]

# Counts the pixels uPlot drew on a chart's canvas (its background is transparent), and
# among them those of the series line (#2563eb) and of the anomaly marks (#dc2626).
CANVAS_PIXELS = """(sel) => {
  const c = document.querySelector(sel + " .uplot canvas");
  if (!c) return null;
  const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
  let drawn = 0, line = 0, mark = 0;
  for (let i = 0; i < d.length; i += 4) {
    if (d[i + 3] === 0) continue;
    drawn++;
    const r = d[i], g = d[i + 1], b = d[i + 2];
    if (b > 170 && r < 110 && g < 150) line++;
    if (r > 170 && g < 90 && b < 90) mark++;
  }
  return {width: c.width, height: c.height, drawn: drawn, line: line, mark: mark};
}"""


def artifacts_dir() -> Path:
    root = Path(os.environ.get("SKYLINE_TEST_ARTIFACTS") or REPO / "var" / "test-artifacts")
    out = root / "browser"
    out.mkdir(parents=True, exist_ok=True)
    return out


def _wait(cond: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = cond()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.25)


def _send(port: int, lines: list[str]) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall("".join(lines).encode())


def _feed(port: int) -> None:
    """History for every metric, then a large spike on WEB and a smaller one on DB, so the
    analyzer finds two anomalies with different scores."""
    spike_ts = float(int(time.time()) - 2 * STEP)
    ts = spike_ts - STEP * np.arange(1, POINTS)[::-1]
    lines = []
    for i, name in enumerate([*NORMAL, WEB, DB]):
        v = np.random.default_rng(i).normal(100.0, 5.0, len(ts))
        lines += [f"{name} {x:.3f} {t:.0f}\n" for t, x in zip(ts, v, strict=True)]
    lines += [f"{name} {100.0 + i:.3f} {spike_ts:.0f}\n" for i, name in enumerate(NORMAL)]
    lines += [f"{WEB} 1500.0 {spike_ts:.0f}\n", f"{DB} 160.0 {spike_ts:.0f}\n"]
    _send(port, lines)


def _anomalies(base: str) -> dict[str, dict[str, Any]]:
    r = httpx.get(f"{base}/api/v1/anomalies", headers=AUTH, timeout=10)
    if r.status_code != 200:
        return {}
    return {a["metric"]: a for a in r.json()["items"] if a["status"] == "anomalous"}


def _crucible_csv(path: Path) -> Path:
    t = 1_700_000_000 + 60 * np.arange(300)
    v = 50 + 5 * np.sin(np.arange(300) / 9.0) + np.random.default_rng(7).normal(0, 0.5, 300)
    v[-1] = 400.0
    path.write_text("timestamp,value\n" + "".join(f"{a},{b:.4f}\n" for a, b in zip(t, v,
                                                                                   strict=True)))
    return path


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    if not CHROMIUM.exists():
        skip_or_fail(f"{CHROMIUM} is missing (Debian package `chromium`)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        skip_or_fail("the playwright Python package is missing (pip install -e '.[dev]')")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                    args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def test_browser_walkthrough(tmp_path: Path, chromium: Any) -> None:
    from playwright.sync_api import expect

    shots = artifacts_dir()
    print(f"browser screenshots: {shots}")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = env_for(tmp_path / "var", port, SKYLINE_ANALYZER_OPTIMUM_RUN_DURATION="1",
                  SKYLINE_PANORAMA_EXPIRY_TIME="0")
    run = Running(env, tmp_path)
    page_errors: list[str] = []
    failed: list[tuple[str, int]] = []
    try:
        run.wait_healthy(base, timeout=120)  # a loaded CI machine starts slowly
        # the settings' users are created just after the server starts answering
        _wait(lambda: httpx.get(f"{base}/api/v1/silences", headers=AUTH,
                                timeout=5).status_code == 200, 30, "the seeded API token")
        _feed(int(env["SKYLINE_HORIZON__PLAINTEXT_PORT"]))
        found = _wait(lambda: (a := _anomalies(base)) and {WEB, DB} <= set(a) and a, 90,
                      "the analyzer's anomalies on both spiked metrics")
        web, db = found[WEB], found[DB]
        assert web["score"] != db["score"], (web["score"], db["score"])

        context = chromium.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        page.set_default_timeout(15_000)
        page.on("pageerror", lambda e: page_errors.append(str(e)))
        # a refused request logs "Failed to load resource"; those are checked by status
        page.on("console", lambda m: page_errors.append(m.text) if m.type == "error" and
                not m.text.startswith("Failed to load resource") else None)
        page.on("response", lambda r: failed.append((r.request.method + " " +
                                                     r.url.removeprefix(base), r.status))
                if r.status >= 400 else None)

        # not logged in: any page leads to the login form, which leads back
        page.goto(f"{base}/anomalies?pattern=e2e.**")
        assert "/login?next=" in page.url
        page.screenshot(path=str(shots / "01-login.png"))
        page.fill("#username", USERNAME)
        page.fill("#password", "not-the-password")
        page.click("button[type=submit]")
        expect(page.locator("p.msg")).to_have_text("Wrong user name or password.")
        page.fill("#password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(f"{base}/anomalies?pattern=e2e.**")

        # overview: both anomalies counted and listed
        page.goto(f"{base}/")
        assert int(page.inner_text("#anomalies-hour")) >= 2
        latest = page.locator("table.list").first
        expect(latest).to_contain_text(WEB)
        expect(latest).to_contain_text(DB)
        expect(page.locator("header .who")).to_contain_text(USERNAME)
        page.screenshot(path=str(shots / "02-overview.png"), full_page=True)

        # anomalies page: pattern, then pattern + min score
        page.click("header nav >> text=Anomalies")
        page.fill("input[name=pattern]", "e2e.web.**")
        page.click("form.filters button[type=submit]")
        rows = page.locator("table.list tbody tr")
        expect(rows).to_have_count(1)
        expect(rows.first).to_contain_text(WEB)
        page.fill("input[name=pattern]", "e2e.**")
        lower = min(web["score"], db["score"])
        higher = max(web["score"], db["score"])
        page.fill("input[name=min_score]", f"{(lower + higher) / 2:.6f}")
        page.click("form.filters button[type=submit]")
        assert "min_score=" in page.url and "pattern=e2e." in page.url
        expect(rows).to_have_count(1)
        expect(rows.first).to_contain_text(WEB if web["score"] > db["score"] else DB)
        page.screenshot(path=str(shots / "03-anomalies-filtered.png"), full_page=True)
        page.fill("input[name=min_score]", f"{higher + 1e-4:.6f}")
        page.click("form.filters button[type=submit]")
        expect(rows).to_have_count(1)
        expect(rows.first).to_have_text("No anomalies.")
        page.fill("input[name=min_score]", "lots")
        page.click("form.filters button[type=submit]")
        expect(page.locator("p.error")).to_contain_text("min_score: not a number")

        # one anomaly: its chart is drawn, with the line and the anomaly's mark
        page.fill("input[name=min_score]", "")
        page.fill("input[name=pattern]", "e2e.web.**")
        page.click("form.filters button[type=submit]")
        page.click(f"table.list tbody tr:has-text('{WEB}') td a >> nth=0")
        page.wait_for_url(f"{base}/anomalies/{web['id']}")
        expect(page.locator("h1.name")).to_have_text(WEB)
        chart = "[data-chart=anomaly-chart]"
        page.wait_for_function(f"() => {{ const f = {CANVAS_PIXELS}; const p = f({chart!r});"
                               " return p && p.drawn > 0; }")
        pixels = page.evaluate(CANVAS_PIXELS, chart)
        assert pixels["width"] >= 300 and pixels["height"] >= 300, pixels
        assert pixels["line"] > 200, pixels  # a 200-point line across the plot
        assert pixels["mark"] > 20, pixels  # the anomaly's point
        assert page.locator("#explanations tbody tr.triggered").count() >= 1
        page.screenshot(path=str(shots / "04-anomaly.png"), full_page=True)

        # a form posted without the session's CSRF token, or with a wrong one, is refused
        for token in (None, "forged"):
            with page.expect_response(lambda r: r.request.method == "POST") as refused:
                page.evaluate("""([action, token]) => {
                  const f = document.createElement("form");
                  f.method = "post"; f.action = action;
                  const add = (k, v) => { const i = document.createElement("input");
                    i.type = "hidden"; i.name = k; i.value = v; f.appendChild(i); };
                  add("duration", "7d"); add("reason", "forged");
                  if (token !== null) add("csrf_token", token);
                  document.body.appendChild(f); f.submit();
                }""", [f"/anomalies/{web['id']}/silence", token])
            assert refused.value.status == 403
            page.wait_for_load_state()
            expect(page.locator("body")).to_contain_text("missing or wrong CSRF token")
        page.screenshot(path=str(shots / "05-csrf-refused.png"))
        listed = cli(env, "silence", "list", "--json")
        assert listed.returncode == 0 and json.loads(listed.stdout) == [], listed

        # silence the metric from the detail page; the CLI sees the silence
        page.goto(f"{base}/anomalies/{web['id']}")
        pattern = page.inner_text("form.silence:not(.teach) code")
        page.select_option("form.silence:not(.teach) select[name=duration]", "6h")
        page.fill("form.silence:not(.teach) input[name=reason]", "browser test")
        page.click("form.silence:not(.teach) button[type=submit]")
        page.wait_for_url(f"{base}/anomalies/{web['id']}?silenced=*")
        expect(page.locator("p.message")).to_contain_text(f"Silenced {pattern} until")
        page.screenshot(path=str(shots / "06-silenced.png"))
        listed = cli(env, "silence", "list", "--json")
        assert listed.returncode == 0, listed.stderr
        silences = json.loads(listed.stdout)
        assert [(s["pattern"], s["reason"], s["who"]) for s in silences] == \
            [(pattern, "browser test", USERNAME)]
        assert pattern == WEB
        hours = (silences[0]["until"] - silences[0]["created"]) / 3600
        assert abs(hours - 6) < 0.01, silences

        # crucible: upload a CSV, see each algorithm's verdict and the chart
        page.click("header nav >> text=Crucible")
        page.set_input_files("input[name=file]", str(_crucible_csv(tmp_path / "spike.csv")))
        page.click("form.crucible button[type=submit]")
        expect(page.locator("h2.name")).to_have_text("spike.csv")
        expect(page.locator("#verdict")).to_have_text("ANOMALOUS")
        assert page.locator("#results tbody tr").count() >= 1
        chart = "[data-chart=crucible-chart]"
        page.wait_for_function(f"() => {{ const f = {CANVAS_PIXELS}; const p = f({chart!r});"
                               " return p && p.drawn > 0; }")
        pixels = page.evaluate(CANVAS_PIXELS, chart)
        assert pixels["line"] > 200 and pixels["mark"] > 20, pixels
        page.screenshot(path=str(shots / "07-crucible.png"), full_page=True)

        # log out: the session ends, pages lead to the login form again
        page.click("header .who button")
        page.wait_for_url(f"{base}/login?next=/")
        assert not [c for c in context.cookies() if c["name"] == "skyline_session"]
        page.goto(f"{base}/anomalies")
        assert page.url == f"{base}/login?next=/anomalies"
        page.screenshot(path=str(shots / "08-logged-out.png"))
        context.close()
        # every refusal the walk met was one it provoked (Chromium may ask for a favicon)
        refusals = [(what.split("?")[0], status) for what, status in failed
                    if "favicon" not in what]
        silence = f"POST /anomalies/{web['id']}/silence"
        assert refusals == [("POST /login", 401), ("GET /anomalies", 400), (silence, 403),
                            (silence, 403)], failed
    finally:
        code = run.stop()
    assert code == 0, run.stderr[-3000:]
    assert "Traceback" not in run.stderr
    assert page_errors == []
