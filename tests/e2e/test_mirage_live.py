"""Mirage live in `skyline run`: the roomba moves a metric's aged points into its long
history, the analyzer's candidates go through the Mirage stage, a job that runs every other
day is vetoed with its reason (stored by panorama, shown by the API and the anomaly page with
the week it was judged on), and a spike never seen is confirmed; the series API reaches into
the long history."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import numpy as np

from skyline.settings import load_settings
from skyline.store import history as hist
from skyline.store import keys
from skyline.store.redis_client import redis_session
from skyline.store.series import decode, encode
from tests.conftest import free_port
from tests.e2e.skylineproc import AUTH, Running, env_for

DAY = 86400.0


def test_skyline_run_keeps_the_long_history_and_mirage_vetoes_live(tmp_path: Path) -> None:
    port = free_port()
    data = tmp_path / "var"
    cfg = tmp_path / "skyline.toml"
    cfg.write_text("""
[analyzer]
stages = ["mirage"]

[[mirage.namespaces]]
pattern = "e2e.**"
hours = 168

[roomba]
interval = 1
""")
    env = env_for(data, port, SKYLINE_CONFIG=str(cfg), SKYLINE_ANALYZER_OPTIMUM_RUN_DURATION="1",
                  SKYLINE_PANORAMA_EXPIRY_TIME="0")
    run = Running(env, tmp_path)
    try:
        base = f"http://127.0.0.1:{port}"
        run.wait_healthy(base)
        now = time.time()
        rng = np.random.default_rng(11)
        t = np.arange(now - 8 * DAY, now - 5, 60.0)
        base_v = np.round(100 + rng.normal(0, 2, t.size), 2)
        job = base_v.copy()
        job[(now - t) % (2 * DAY) < 90] += 50  # every 48 h, the newest point included
        fresh = base_v.copy()
        fresh[-1] += 90  # never seen before
        with redis_session(load_settings(DATA_DIR=data)) as h:
            c = h.client
            for name, v in (("e2e.job", job), ("e2e.fresh", fresh)):
                c.set(keys.series(name), encode(t, v))
                c.sadd(keys.METRIC_INDEX, name)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:  # the roomba builds the long history
                raw = c.get(keys.history("e2e.job"))
                if raw is not None and len(hist.decode(raw)) > 800:
                    break
                time.sleep(0.5)
            assert raw is not None, run.stderr[-2000:]
            b = hist.decode(raw)
            assert b.timestamps[0] <= now - 6.9 * DAY
            first_raw = float(decode(c.get(keys.series("e2e.job")))[0][0])
            assert first_raw >= now - 2 * DAY  # the aged points left the raw series
            assert b.timestamps[-1] + 600 <= first_raw  # and are in exactly one of the two
        found: dict[str, dict] = {}
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(found) < 2:
            r = httpx.get(f"{base}/api/v1/anomalies", params={"pattern": "e2e.**"},
                          headers=AUTH, timeout=10)
            for item in r.json().get("items", []) if r.status_code == 200 else []:
                found.setdefault(item["metric"], item)
            time.sleep(0.5)
        assert set(found) == {"e2e.job", "e2e.fresh"}, (found, run.stderr[-2000:])
        vetoed = found["e2e.job"]
        assert vetoed["status"] == "vetoed", vetoed
        (stage,) = vetoed["stages"]
        assert stage["stage"] == "mirage" and stage["verdict"] == "veto"
        assert stage["figures"]["history_hours"] > 160 and stage["reason"]
        confirmed = found["e2e.fresh"]
        assert confirmed["status"] == "anomalous"
        assert [s["verdict"] for s in confirmed["stages"]] == ["confirm"]
        page = httpx.get(f"{base}/anomalies/{vetoed['id']}", headers=AUTH, timeout=10).text
        assert "Not alerted: the <b>mirage</b> stage vetoed this candidate" in page
        assert 'id="mirage-chart"' in page
        week = httpx.get(f"{base}/api/v1/series/e2e.job", params={"from": "-7d"},
                         headers=AUTH, timeout=10).json()
        assert week["resolution"] == 600 and week["downsampled_before"] is not None
        assert week["timestamps"][0] <= now - 6.9 * DAY
    finally:
        code = run.stop()
    assert code == 0, run.stderr
    assert "Traceback" not in run.stderr
