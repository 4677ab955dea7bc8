"""Boundary in `skyline run`, end to end: points in through horizon's Graphite plaintext
listener, a BOUNDARY_METRICS rule broken for ALERT_THRESHOLD consecutive points, one alert on
the rule's channel (a webhook sink; no ALERTS rule routes it), the event stored by panorama with
the rule's sentence, then the rule passing again and one resolve."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import numpy as np

from tests.alertsinks import HttpSink
from tests.conftest import free_port
from tests.e2e.skylineproc import AUTH, Running, env_for
from tests.e2e.test_analyzer_alerts import _kinds, _send, _wait

STEP = 60.0
METRIC = "e2e.boundary.api.requests"


def test_boundary_rule_alerts_once_then_resolves(tmp_path: Path) -> None:
    port = free_port()
    with HttpSink() as sink:
        cfg = tmp_path / "skyline.toml"
        cfg.write_text(f"""
ANALYZER_ENABLED = false
BOUNDARY_OPTIMUM_RUN_DURATION = 0.5

[[BOUNDARY_METRICS]]
name = "api requests"
pattern = "e2e.boundary.**"
algorithm = "less_than"
trigger_value = 100
alert_threshold = 2
channels = ["webhook"]

[alerters]
poll_interval = 0.2

[alerters.webhook]
enabled = true
url = "{sink.url}/hook"
""")
        env = env_for(tmp_path / "var", port, SKYLINE_CONFIG=str(cfg))
        plaintext = int(env["SKYLINE_HORIZON__PLAINTEXT_PORT"])
        run = Running(env, tmp_path)
        base = f"http://127.0.0.1:{port}"
        try:
            run.wait_healthy(base)
            t0 = float(int(time.time()) - 36 * STEP)  # the last point is 1 min old, not Stale
            v = np.random.default_rng(0).normal(500.0, 5.0, 30)
            t = t0 + 29 * STEP

            def stored_until(ts: float) -> bool:
                r = httpx.get(f"{base}/api/v1/series/{METRIC}", headers=AUTH, timeout=20)
                return r.status_code == 200 and r.json()["timestamps"][-1:] == [ts]

            def send(lines: list[str]) -> None:
                # each point judged in a run of its own: consecutive detections count runs
                # that see a new point, so wait until horizon has stored it
                _send(plaintext, lines)
                assert _wait(lambda: stored_until(t), 60), "horizon did not store the point"
                time.sleep(1.5)  # a few Boundary runs (one every 0.5 s) see it

            send([f"{METRIC} {x:.3f} {t0 + i * STEP:.0f}\n" for i, x in enumerate(v)])

            def point(value: float) -> None:
                nonlocal t
                t += STEP
                send([f"{METRIC} {value} {t:.0f}\n"])

            point(42)
            assert not sink.accepted  # one detection: counting, not alerting
            point(42)
            assert _wait(lambda: sink.accepted, 60), f"no alert; refused={sink.refused}"
            point(41)  # still broken: no second alert
            alert = sink.accepted[0]["alert"]
            assert alert["source"] == "boundary" and alert["triggered"] == ["less_than"]
            assert alert["algorithms"][0]["text"] == \
                "value 42 < 100 for 2 consecutive checks (rule api requests)"
            point(300)
            point(300)
            assert _wait(lambda: len(sink.accepted) >= 2, 60), _kinds(sink)
            time.sleep(2)
            assert _kinds(sink) == [(METRIC, "alert"), (METRIC, "resolve")]

            def stored() -> list:
                r = httpx.get(f"{base}/api/v1/anomalies", params={"source": "boundary"},
                              headers=AUTH, timeout=20)
                return r.json()["items"] if r.status_code == 200 else []

            assert _wait(lambda: len(stored()) >= 2, 30)
            assert sorted(e["status"] for e in stored()) == ["anomalous", "recovered"]
            page = httpx.get(f"{base}/anomalies/{alert['id']}", timeout=20,
                             headers={**AUTH, "accept": "text/html"}).text
            assert "value 42 &lt; 100 for 2 consecutive checks" in page
        finally:
            code = run.stop()
        assert code == 0, run.stderr
    assert "Traceback" not in run.stderr
