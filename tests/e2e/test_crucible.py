"""`skyline crucible` on CSV, JSON and a stored metric; replay, plot; bad input."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from skyline.settings import load_settings
from skyline.store import keys
from skyline.store.redis_client import redis_session
from skyline.store.series import encode
from tests.conftest import free_port
from tests.e2e.skylineproc import cli, env_for

T0 = 1_700_000_000.0


def _series(n: int = 600, spike_at: tuple[int, ...] = (300,), end_spike: bool = True):
    t = T0 + 60.0 * np.arange(n)
    v = np.random.default_rng(4).normal(100.0, 5.0, n)
    # each spike higher than the one before: a window detector (range_excess) only sees a
    # spike that breaks out of the range its window already holds
    for k, i in enumerate(spike_at):
        v[i:i + 3] += 150 * (k + 1)
    if end_spike:
        v[-1] += 150 * (len(spike_at) + 2)
    return t, v


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return env_for(tmp_path / "var", free_port(), SKYLINE_EXPIRATION_TIME="3600")


def _csv(path: Path, t, v, header: bool = True) -> Path:
    lines = (["timestamp,value"] if header else []) + \
        [f"{a:.0f},{float(b)!r}" for a, b in zip(t, v, strict=True)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_csv_the_analyzers_verdict_explained(env, tmp_path):
    t, v = _series()
    path = _csv(tmp_path / "s.csv", t, v)
    r = cli(env, "crucible", str(path))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith(f"{path}: 600 points")
    # the analyzer's default detector judged the newest point, and says why
    assert any(line.strip().startswith("range_excess  ANOMALOUS") for line in lines), lines
    assert "score: ANOMALOUS at" in r.stdout

    # naming algorithms asks for their vote: every one explained, and CONSENSUS of them
    nine = ",".join(load_settings().ALGORITHMS)
    r = cli(env, "crucible", str(path), "--algorithms", nine)
    assert r.returncode == 0, r.stderr
    for name in ("histogram_bins", "grubbs", "ks_test", "least_squares"):
        assert any(line.strip().startswith(name) for line in r.stdout.splitlines()), name
    assert "CONSENSUS 6): ANOMALOUS" in r.stdout


def test_csv_without_header_json_list_and_object_agree(env, tmp_path):
    t, v = _series(end_spike=False)
    pairs = [[a, b] for a, b in zip(t.tolist(), v.tolist(), strict=True)]
    outs = []
    for path in (_csv(tmp_path / "a.csv", t, v, header=False), tmp_path / "b.json",
                 tmp_path / "c.json"):
        if path.name == "b.json":
            path.write_text(json.dumps(pairs))
        elif path.name == "c.json":
            path.write_text(json.dumps({"metric": "x", "points": pairs}))
        r = cli(env, "crucible", str(path), "--json")
        assert r.returncode == 0, r.stderr
        outs.append(json.loads(r.stdout))
    assert all(o["points"] == 600 and not o["anomalous"] for o in outs)
    assert len({json.dumps(o["algorithms"]) for o in outs}) == 1
    # the default learning detector has not learnt a day of this series: range_excess judged
    assert [a["algorithm"] for a in outs[0]["algorithms"]] == ["range_excess", "learning"]
    assert outs[0]["detector"] == "score" and outs[0]["stages"] == []
    assert 0 <= outs[0]["score"] < 0.7


def test_replay_lists_alerts_expiration_apart_and_plots(env, tmp_path):
    t, v = _series(spike_at=(300, 320))  # 20 minutes apart: one event, EXPIRATION_TIME 1 h
    png = tmp_path / "out.png"
    r = cli(env, "crucible", str(_csv(tmp_path / "s.csv", t, v)), "--replay", "--plot",
            str(png), "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    rp = out["replay"]
    anomalous = [e["timestamp"] for e in rp["events"] if e["status"] == "anomalous"]
    # three spikes, each its own incident (ten minutes back inside the earlier range
    # recovers it in between) ...
    assert anomalous == [t[300], t[320], t[-1]]
    recovered = [e["timestamp"] for e in rp["events"] if e["status"] == "recovered"]
    assert recovered == [t[313], t[333]]
    # ... but one alert per EXPIRATION_TIME: the second spike, 20 minutes on, does not alert
    assert rp["alerts"] == [anomalous[0], anomalous[2]]
    assert rp["points_judged"] == 600 - 99 and rp["anomalous_points"] >= 3
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out["plot"] == str(png)
    # a progress bar only on a terminal: piped, stderr stays empty (no stray "replay" line)
    assert r.stderr == ""


def test_selected_algorithms_and_a_stored_metric(env, tmp_path):
    now = time.time()
    t = now - 60.0 * np.arange(300)[::-1]
    v = np.random.default_rng(1).normal(10.0, 1.0, 300)
    v[-1] = 60.0
    with redis_session(load_settings(DATA_DIR=Path(env["SKYLINE_DATA_DIR"]))) as h:
        h.client.set(keys.series("db.latency"), encode(t, v))
        h.client.sadd(keys.METRIC_INDEX, "db.latency")
    r = cli(env, "crucible", "--metric", "db.latency", "--algorithms",
            "grubbs,median_absolute_deviation", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert [a["algorithm"] for a in out["algorithms"]] == ["grubbs", "median_absolute_deviation"]
    assert out["consensus"] == 2 and out["anomalous"] and out["status"] == "Analysed"

    r = cli(env, "crucible", "--metric", "no.such.metric")
    assert r.returncode == 1 and "no metric named 'no.such.metric'" in r.stderr
    r = cli(env, "crucible", "--metric", "db.latency", "--algorithms", "grubbs,bogus")
    assert r.returncode == 1 and "unknown algorithm bogus" in r.stderr


@pytest.mark.parametrize(("content", "words"), [
    (None, "no such file"),
    (b"\x89PNG\r\n\x1a\n\x00\x00binary", "not CSV or JSON"),
    ("hello world\nthis is prose, not data\n", "not CSV of timestamp,value"),
    ("timestamp,value\n1700000000,1\n1700000060,x\n", "line 3: value 'x' is not a number"),
    ("timestamp,value\n1700000000,1\n1700000060,nan\n", "line 3: value nan is not a finite"),
    ("1700000060,1\n1700000000,2\n" + "".join(f"{1700000100 + i * 60},1\n" for i in range(200)),
     "timestamps must increase"),
    ("1700000000,1\n1700000060,2\n", "too short: 2 points, at least 100"),
    ('{"values": [1, 2]}', "needs \"points\""),
])
def test_bad_input_is_one_clear_line(env, tmp_path, content, words):
    path = tmp_path / ("bad.json" if content and str(content).startswith("{") else "bad.csv")
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    r = cli(env, "crucible", str(path))
    assert r.returncode == 1
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and words in errors[0], r.stderr
    assert "Traceback" not in r.stderr


def test_path_or_metric_not_both(env, tmp_path):
    r = cli(env, "crucible")
    assert r.returncode != 0 and "PATH or --metric" in r.stderr
