"""Finding 1: user patterns compiled to a backtracking engine froze the whole process.

`GET /api/v1/metrics?pattern=re:^zz([a-z_.]+)*!` took 3.1 s against a 29-character name and
doubled per character; the glob `**a**a**a**a**a**a**a**a**b` took 1.5 s on a 40-character
name. Here the names are long enough that the old code would run for hours.
"""

from __future__ import annotations

import time

import httpx
import pytest

from tests.e2e.skylineproc import AUTH
from tests.security.harness import FREEZE_BOUND, Probe, Skyline, report, send_lines

REGEX_NAME = "zz" + "a" * 40
GLOB_NAME = "a" * 90


@pytest.fixture(scope="module")
def sky(tmp_path_factory):
    s = Skyline(tmp_path_factory.mktemp("redos"))
    now = int(time.time())
    port = s.port_of("SKYLINE_HORIZON__PLAINTEXT_PORT")
    send_lines(port, [f"{REGEX_NAME} 1 {now}", f"{GLOB_NAME} 1 {now}", f"ok.metric 1 {now}"])
    deadline = time.monotonic() + 30
    while s.get("/api/v1/metrics").json()["total"] < 3:
        assert time.monotonic() < deadline, "the metrics were not stored"
        time.sleep(0.2)
    yield s
    s.stop()


@pytest.mark.parametrize("pattern", ["re:^zz([a-z_.]+)*!", "**a**a**a**a**a**a**a**a**b"])
def test_hostile_pattern_answers_and_nothing_freezes(sky: Skyline, pattern: str) -> None:
    with Probe(sky.base) as probe:
        started = time.monotonic()
        try:
            r = sky.get("/api/v1/metrics", params={"pattern": pattern}, timeout=FREEZE_BOUND * 3)
        except httpx.TimeoutException:
            pytest.fail(f"the pattern search {pattern!r} did not answer")
        took = time.monotonic() - started
    report("redos", pattern=pattern, request_s=round(took, 3), probe_worst_s=round(probe.worst, 3))
    assert r.status_code == 200, r.text
    assert r.json()["metrics"] == []
    assert probe.worst < FREEZE_BOUND


def test_hostile_silence_is_stored_and_harmless(sky: Skyline) -> None:
    # a silence is matched against every alert: it must cost linear time there too
    r = httpx.post(f"{sky.base}/api/v1/silences", headers=AUTH,
                   json={"pattern": "re:^zz([a-z_.]+)*!", "until": "1h", "reason": "t"},
                   timeout=30)
    assert r.status_code == 201, r.text
    # the web app's anomaly search runs the same pattern over the stored names
    with Probe(sky.base) as probe:
        r = sky.get("/api/v1/anomalies", params={"pattern": "re:^zz([a-z_.]+)*!"},
                    timeout=FREEZE_BOUND * 3)
    assert r.status_code == 200 and probe.worst < FREEZE_BOUND


def test_pattern_the_engine_cannot_run_is_refused_clearly(sky: Skyline) -> None:
    r = sky.get("/api/v1/metrics", params={"pattern": "re:(a)\\1"})
    assert r.status_code == 400
    assert "back-references" in r.json()["error"]
