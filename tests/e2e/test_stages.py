"""A stage vetoes a real candidate end to end: `skyline run` with the margin stage set so that
no anomaly is big enough; the analyzer's candidate is stored by panorama as `vetoed` with the
stage's reason, shown by the API and the anomaly page, and never reaches the alert channel."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import numpy as np

from skyline.settings import load_settings
from skyline.store import keys
from skyline.store.redis_client import redis_session
from skyline.store.series import encode
from tests.alertsinks import HttpSink, validate_signed
from tests.conftest import free_port
from tests.e2e.skylineproc import AUTH, Running, env_for


def test_a_vetoed_candidate_is_stored_shown_and_never_alerted(tmp_path: Path) -> None:
    port = free_port()
    data = tmp_path / "var"
    with HttpSink(validate_signed("s3cret")) as sink:
        cfg = tmp_path / "skyline.toml"
        cfg.write_text(f"""
[[ALERTS]]
pattern = "**"
channel = "webhook"
expiration = 3600

[analyzer]
stages = ["margin"]
stage_options = {{ margin = {{ min_excess = 1000.0 }} }}

[alerters]
poll_interval = 0.2

[alerters.webhook]
enabled = true
url = "{sink.url}/hook"
secret = "s3cret"
""")
        env = env_for(data, port, SKYLINE_CONFIG=str(cfg),
                      SKYLINE_ANALYZER_OPTIMUM_RUN_DURATION="1",
                      SKYLINE_PANORAMA_EXPIRY_TIME="0")
        run = Running(env, tmp_path)
        try:
            base = f"http://127.0.0.1:{port}"
            run.wait_healthy(base)
            now = time.time()
            t = now - 60.0 * np.arange(200)[::-1]
            v = np.random.default_rng(3).normal(100.0, 5.0, 200)
            v[-1] = 400.0  # three times its normal level: a candidate, but not 1000 ranges
            with redis_session(load_settings(DATA_DIR=data)) as h:
                h.client.set(keys.series("e2e.vetoed"), encode(t, v))
                h.client.sadd(keys.METRIC_INDEX, "e2e.vetoed")
            headers = AUTH
            deadline = time.monotonic() + 90
            items: list[dict] = []
            while time.monotonic() < deadline and not items:
                r = httpx.get(f"{base}/api/v1/anomalies", params={"status": "vetoed"},
                              headers=headers, timeout=10)
                items = r.json()["items"] if r.status_code == 200 else []
                time.sleep(0.3)
            assert items, "the vetoed candidate never reached panorama"
            (item,) = items
            assert item["metric"] == "e2e.vetoed" and item["status"] == "vetoed"
            (stage,) = item["stages"]
            assert stage["stage"] == "margin" and stage["verdict"] == "veto"
            assert "less than 100000%" in stage["reason"] and stage["figures"]["excess"] > 0
            assert item["band_high"] < 400.0
            page = httpx.get(f"{base}/anomalies/{item['id']}", headers=headers, timeout=10)
            assert page.status_code == 200
            assert "Not alerted: the <b>margin</b> stage vetoed this candidate" in page.text
            listing = httpx.get(f"{base}/anomalies", headers=headers, timeout=10)
            assert "vetoed by margin" in listing.text
            time.sleep(3)  # several alert polls: nothing may be sent
            assert sink.accepted == [] and sink.refused == []
        finally:
            code = run.stop()
        assert code == 0, run.stderr
    assert "Traceback" not in run.stderr
