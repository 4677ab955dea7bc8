"""Finding 4: the lockout was checked before argon2 ran and the failure recorded after, in
the thread pool the ingest flush shares: 100 parallel wrong passwords were all checked, and
the user was then locked out from that address for a day."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.security.harness import FREEZE_BOUND, Probe, Skyline, report
from tests.webauth import PASSWORD, USERNAME

_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture(scope="module")
def sky(tmp_path_factory):
    s = Skyline(tmp_path_factory.mktemp("login"))
    yield s
    s.stop()


def test_parallel_wrong_passwords(sky: Skyline) -> None:
    page = httpx.get(f"{sky.base}/login", timeout=30)
    m = _TOKEN.search(page.text)
    assert m is not None
    cookies = dict(page.cookies)
    form = {"username": USERNAME, "password": "wrong-password", "csrf_token": m.group(1),
            "next": "/"}

    def attempt(_: int) -> httpx.Response:
        return httpx.post(f"{sky.base}/login", data=form, cookies=cookies, timeout=120)

    checked_before = sky.counter("skyline_webapp_login_failures")
    with Probe(sky.base) as probe, ThreadPoolExecutor(100) as pool:
        answers = list(pool.map(attempt, range(100)))
    codes = [r.status_code for r in answers]
    checked = sky.wait_counter("skyline_webapp_login_failures", checked_before + 5) \
        - checked_before
    # the lock the flood left behind, seen with the right password
    form["password"] = PASSWORD
    after = attempt(0)
    retry_after = int(after.headers.get("Retry-After", "0"))
    report("login_flood", checked=checked, wrong=codes.count(401), refused=codes.count(429),
           busy=codes.count(503), lock_s=retry_after, probe_worst_s=round(probe.worst, 3))
    assert set(codes) <= {401, 429, 503}
    assert checked <= 5  # webapp.login_max_failures: no more passwords were checked
    assert after.status_code == 429
    assert retry_after <= 61  # webapp.login_lockout, not doubled by the refused attempts
    assert probe.worst < FREEZE_BOUND
