"""The `skyline` command's subcommands, run as a user runs them."""

from __future__ import annotations

import json

import numpy as np
import pytest

from skyline.settings import load_settings
from skyline.store.hotstore import HotStore
from skyline.store.redis_client import redis_session
from tests.conftest import free_port
from tests.e2e.skylineproc import cli, env_for

T0 = 1_800_000_000.0


@pytest.fixture
def env(tmp_path):
    data = tmp_path / "var"
    with redis_session(load_settings(DATA_DIR=data)) as h:
        store = HotStore(h.client)
        for name in ("web.a.requests", "web.b.requests", "db.queries"):
            store.append([name] * 3, np.array([T0, T0 + 60, T0 + 120]), np.array([1.0, 2.0, 3.0]))
    return env_for(data, free_port())


def test_metrics_list_with_pattern_and_json(env):
    r = cli(env, "metrics", "list", "web.*.requests")
    assert r.returncode == 0 and r.stdout.split() == ["web.a.requests", "web.b.requests"]
    r = cli(env, "metrics", "list", "--json", "re:^db")
    assert json.loads(r.stdout) == ["db.queries"]
    bad = cli(env, "metrics", "list", "re:(")
    assert bad.returncode == 1 and bad.stderr.startswith("error: invalid regular expression")


def test_metrics_get_range_and_formats(env):
    r = cli(env, "metrics", "get", "db.queries", "--from", str(T0 + 60), "--json")
    assert json.loads(r.stdout)["points"] == [[T0 + 60, 2.0], [T0 + 120, 3.0]]
    r = cli(env, "metrics", "get", "db.queries", "--until", "2027-01-15T08:01:00")
    assert r.returncode == 0
    lines = r.stdout.splitlines()
    assert len(lines) == 2 and lines[0].startswith("2027-01-15T08:00:00Z\t")
    missing = cli(env, "metrics", "get", "no.such")
    assert missing.returncode == 1 and "no metric named 'no.such'" in missing.stderr
    badtime = cli(env, "metrics", "get", "db.queries", "--from", "yesterday-ish")
    assert badtime.returncode == 1 and "not a time" in badtime.stderr


def test_metrics_delete_dry_run_then_for_real(env):
    dry = cli(env, "metrics", "delete", "web.**", "--dry-run")
    assert dry.returncode == 0 and dry.stdout.split() == ["web.a.requests", "web.b.requests"]
    assert "2 metrics would be deleted" in dry.stderr
    assert cli(env, "metrics", "list").stdout.split() == [
        "db.queries", "web.a.requests", "web.b.requests"]
    real = cli(env, "metrics", "delete", "web.**")
    assert real.returncode == 0 and "2 metrics deleted" in real.stderr
    assert cli(env, "metrics", "list").stdout.split() == ["db.queries"]


def test_config_show_masks_secrets_and_round_trips(tmp_path):
    env = env_for(tmp_path / "var", 1500,
                  SKYLINE_DATABASE_URL="postgresql+psycopg://sky:pa55word@db.example/sky")
    r = cli(env, "config", "show")
    assert r.returncode == 0
    assert "pa55word" not in r.stdout and 'sky:***@db.example' in r.stdout
    assert "[roomba]" in r.stdout
    as_json = json.loads(cli(env, "config", "show", "--json").stdout)
    assert as_json["roomba"]["interval"] == 60.0
    # the shown TOML, minus the masked secret, is a valid config file
    shown = tmp_path / "shown.toml"
    shown.write_text("\n".join(line for line in r.stdout.splitlines()
                               if not line.startswith("DATABASE_URL")))
    check = cli(env_for(tmp_path / "var", 1500), "--config", str(shown), "config", "check")
    assert check.returncode == 0, check.stderr


def test_config_file_problems(tmp_path):
    cfg = tmp_path / "skyline.toml"
    cfg.write_text('FULL_DURATION = 30\nNOT_A_SETTING = 1\n[roomba]\ninterval = "often"\n')
    r = cli(env_for(tmp_path / "var", 1500), "--config", str(cfg), "config", "check")
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 3
    assert any(line.startswith("error: setting FULL_DURATION: 30:") for line in lines)
    assert any("NOT_A_SETTING" in line and "unknown setting" in line for line in lines)
    assert any(line.startswith("error: setting roomba.interval: 'often':") for line in lines)
    missing = cli(env_for(tmp_path / "var", 1500), "--config", str(tmp_path / "nope.toml"),
                  "config", "check")
    assert missing.returncode == 1 and "file not found" in missing.stderr


def test_db_upgrade_sqlite_and_unreachable_server(tmp_path):
    env = env_for(tmp_path / "var", 1500)
    first = cli(env, "db", "upgrade")
    assert first.returncode == 0 and "upgraded empty -> " in first.stdout
    second = cli(env, "db", "upgrade")
    assert second.returncode == 0 and "already at revision" in second.stdout
    dead = env_for(tmp_path / "var", 1500, SKYLINE_DATABASE_URL=(
        f"postgresql+psycopg://u:topsecret@127.0.0.1:{free_port()}/x"))
    r = cli(dead, "db", "upgrade")
    assert r.returncode == 1
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "topsecret" not in r.stderr and "u:***@127.0.0.1" in r.stderr


def test_debug_adds_the_traceback(tmp_path):
    env = env_for(tmp_path / "var", 1500, SKYLINE_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    plain = cli(env, "metrics", "list")
    assert plain.returncode == 1 and "Traceback" not in plain.stderr
    debug = cli(env, "--debug", "metrics", "list")
    assert debug.returncode == 1 and "Traceback" in debug.stderr


def test_json_logs(tmp_path):
    env = env_for(tmp_path / "var", 1500, SKYLINE_LOG_FORMAT="json", SKYLINE_LOG_LEVEL="DEBUG")
    r = cli(env, "metrics", "list")
    assert r.returncode == 0
    records = [json.loads(line) for line in r.stderr.splitlines() if line.strip()]
    assert records and all({"time", "level", "logger", "message"} <= set(x) for x in records)


def test_help_everywhere():
    env = env_for(__import__("pathlib").Path("/nonexistent"), 1500)
    for args in ([], ["run"], ["serve"], ["config"], ["config", "show"], ["config", "check"],
                 ["db", "upgrade"], ["metrics", "list"], ["metrics", "get"],
                 ["metrics", "delete"]):
        r = cli(env, *args, "--help")
        assert r.returncode == 0 and "Usage: skyline" in r.stdout, (args, r.stderr)


def test_commands_find_the_data_skyline_run_recorded(tmp_path):
    """DATA_DIR left at its default ("var" under the working directory): commands run from
    another directory use the data of the running `skyline run` (which recorded it), print
    no library log lines, and with nothing recorded stop with a message naming where they
    looked instead of silently starting an empty store."""
    from tests.e2e.skylineproc import Running

    here, elsewhere, state = tmp_path / "here", tmp_path / "elsewhere", tmp_path / "state"
    here.mkdir()
    elsewhere.mkdir()
    port = free_port()
    env = env_for(here / "var", port, XDG_STATE_HOME=str(state))
    del env["SKYLINE_DATA_DIR"]  # the default
    run = Running(env, here)
    try:
        run.wait_healthy(f"http://127.0.0.1:{port}", timeout=120)
        recorded = json.loads((state / "skyline" / "instance.json").read_text())
        assert recorded["data_dir"] == str((here / "var").resolve())
        with redis_session(load_settings(DATA_DIR=here / "var")) as h:  # attaches to it
            t = T0 + 60.0 * np.arange(200)
            HotStore(h.client).append(["e2e.cli.found"] * 200, t, 10 + np.sin(t / 600))
        listed = cli(env, "metrics", "list", cwd=elsewhere)
        assert listed.returncode == 0 and listed.stdout.split() == ["e2e.cli.found"], listed
        assert listed.stderr == ""
        crucible = cli(env, "crucible", "--metric", "e2e.cli.found", "--replay", cwd=elsewhere)
        assert crucible.returncode == 0, crucible.stderr
        assert crucible.stderr == ""  # no bare "replay" progress label when piped
        for args, stdin in ((("silence", "add", "e2e.**", "--until", "1h"), None),
                            (("user", "add", "dora", "--password-stdin"), "a-long-password-1\n"),
                            (("analyze", "--once"), None)):
            r = cli(env, *args, cwd=elsewhere, input=stdin)
            assert r.returncode == 0 and r.stderr == "", (args, r.stderr)
        assert "e2e.**" in cli(env, "silence", "list", cwd=elsewhere).stdout
        assert not (elsewhere / "var").exists()

        nothing = dict(env, XDG_STATE_HOME=str(tmp_path / "no-state"))
        r = cli(nothing, "metrics", "list", cwd=elsewhere)
        assert r.returncode == 1 and len(r.stderr.splitlines()) == 1, r.stderr
        assert f"no Skyline data in {elsewhere / 'var'}" in r.stderr
        assert "SKYLINE_DATA_DIR" in r.stderr and not (elsewhere / "var").exists()
        # a file that needs no stored data still works anywhere
        csv = elsewhere / "s.csv"
        csv.write_text("\n".join(f"{T0 + 60 * i:.0f},{10 + i % 7}" for i in range(200)))
        assert cli(nothing, "crucible", str(csv), cwd=elsewhere).returncode == 0
    finally:
        code = run.stop()
    assert code == 0, run.stderr[-3000:]
