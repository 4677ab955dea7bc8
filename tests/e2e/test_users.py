"""Users as a newcomer meets them: `skyline run` prints a first admin password once, the
login form works against the real server, and `skyline user ...` manages users and tokens
while it runs."""

from __future__ import annotations

import json
import re
import subprocess
import time

import httpx

from tests.conftest import free_port
from tests.e2e.skylineproc import SKYLINE, Running, cli, env_for

_CREATED = re.compile(r"Created web user 'admin' with password (\S+) ")
_FORM_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


def _wait_for_user(env: dict[str, str], name: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    r = None
    while time.monotonic() < deadline:
        r = cli(env, "user", "list", "--json")
        if r.returncode == 0 and any(u["username"] == name for u in json.loads(r.stdout)):
            return
        time.sleep(0.3)
    raise AssertionError(f"user {name} never appeared: {r and r.stderr[-500:]}")


def _login(base: str, username: str, password: str) -> httpx.Client:
    client = httpx.Client(base_url=base, timeout=10, follow_redirects=True)
    token = _FORM_TOKEN.search(client.get("/login").text)
    assert token is not None
    r = client.post("/login", data={"username": username, "password": password,
                                    "next": "/api/v1/silences", "csrf_token": token.group(1)})
    assert r.status_code == 200 and "silences" in r.json(), r.text  # followed to next
    return client


def test_first_start_admin_login_and_cli(tmp_path):
    data = tmp_path / "var"
    port = free_port()
    env = env_for(data, port)
    del env["SKYLINE_WEBAPP__USERS"]  # a newcomer's start: nobody pre-seeded
    base = f"http://127.0.0.1:{port}"

    run = Running(env, tmp_path)
    try:
        run.wait_healthy(base)
        _wait_for_user(env, "admin")
    finally:
        assert run.stop() == 0, run.stderr
    found = _CREATED.findall(run.stdout)
    assert len(found) == 1, run.stdout
    password = found[0]
    assert f"{base}/login" in run.stdout or "/login" in run.stdout
    assert password in run.stderr  # the log has it too

    run = Running(env, tmp_path)
    try:
        run.wait_healthy(base)
        assert httpx.get(f"{base}/api/v1/silences", timeout=10).status_code == 401
        browser = _login(base, "admin", password)
        assert browser.get("/api/v1/silences").status_code == 200

        # a user and a token through the real CLI, used against the running server
        # an admin: adding silences is an admin's (docs/webapp.md, "Roles")
        add = subprocess.run([*SKYLINE, "user", "add", "ci", "--admin", "--password-stdin"],
                             env=env, input="ci-password-123\n", capture_output=True, text=True,
                             timeout=60)
        assert add.returncode == 0, add.stderr
        tok = cli(env, "user", "token", "ci", "--label", "pipeline", "--expires", "90d")
        assert tok.returncode == 0, tok.stderr
        token = tok.stdout.strip()
        assert token.startswith("skyline_") and "not shown again" in tok.stderr
        auth = {"Authorization": f"Bearer {token}"}
        r = httpx.post(f"{base}/api/v1/silences", headers=auth, timeout=10,
                       json={"pattern": "db.**", "until": "1h"})
        assert r.status_code == 201, r.text
        listed = json.loads(cli(env, "user", "list", "--json").stdout)
        ci = next(u for u in listed if u["username"] == "ci")
        assert ci["tokens"][0]["name"] == "pipeline" and ci["tokens"][0]["last_used"]
        assert token not in json.dumps(listed)

        revoke = cli(env, "user", "token-revoke", str(ci["tokens"][0]["id"]))
        assert revoke.returncode == 0, revoke.stderr
        assert httpx.get(f"{base}/api/v1/silences", headers=auth,
                         timeout=10).status_code == 401

        # a new password ends the browser's session
        pw = subprocess.run([*SKYLINE, "user", "passwd", "admin", "--password-stdin"],
                            env=env, input="new-admin-password\n", capture_output=True,
                            text=True, timeout=60)
        assert pw.returncode == 0, pw.stderr
        assert browser.get("/api/v1/silences").status_code == 401
        assert _login(base, "admin", "new-admin-password").get(
            "/api/v1/silences").status_code == 200

        bad = cli(env, "user", "add", "ci", "--generate")
        assert bad.returncode == 1 and bad.stderr.strip().splitlines()[-1] == \
            "error: user 'ci' exists already"
        gone = cli(env, "user", "remove", "nobody")
        assert gone.returncode == 1 and "no user named 'nobody'" in gone.stderr
    finally:
        assert run.stop() == 0, run.stderr
    assert "Created web user" not in run.stdout  # shown once, not at every start
