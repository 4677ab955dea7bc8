"""Loading the settings: defaults < TOML file < environment, and clear problems when invalid."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from skyline.core.errors import SettingProblem, SettingsError
from skyline.settings import Settings, load_settings, settings_problems
from skyline.settings.show import as_dict, as_toml, mask_url

PASSWORD = "hunter2-s3cret"


@pytest.fixture(autouse=True)
def _clean_env(clean_env: None) -> None:
    """No SKYLINE_* variable of the developer's shell leaks into these tests."""


@pytest.fixture
def toml(tmp_path: Path):
    def write(text: str) -> Path:
        path = tmp_path / "skyline.toml"
        path.write_text(text)
        return path

    return write


def _problems(config: Path | None = None, **overrides) -> list[SettingProblem]:
    with pytest.raises(SettingsError) as info:
        load_settings(config, **overrides)
    assert info.value.problems, "a SettingsError always carries its problems"
    return info.value.problems


def _only(problems: list[SettingProblem], setting: str) -> SettingProblem:
    found = [p for p in problems if p.setting == setting]
    assert len(found) == 1, f"expected one problem for {setting}, got {problems}"
    return found[0]


# precedence -------------------------------------------------------------------------------------
def test_defaults_without_file_or_environment() -> None:
    s = load_settings()
    assert s.FULL_DURATION == 86400
    assert s.ROOMBA_GRACE_TIME == 600
    assert s.retention == 86400 + 600
    assert s.WEBAPP_PORT == 1500
    assert s.REDIS_URL is None and s.DATABASE_URL is None
    assert s.roomba.interval == 60.0
    assert s.LOG_FORMAT == "text"


def test_toml_file_overrides_defaults(toml) -> None:
    path = toml('FULL_DURATION = 7200\nLOG_FORMAT = "json"\n\n[roomba]\ninterval = 5\n')
    s = load_settings(path)
    assert s.FULL_DURATION == 7200
    assert s.LOG_FORMAT == "json"
    assert s.roomba.interval == 5.0
    assert s.roomba.batch_size == 500  # untouched entries of a table keep their defaults
    assert s.WEBAPP_PORT == 1500


def test_environment_overrides_toml_file(toml, monkeypatch: pytest.MonkeyPatch) -> None:
    path = toml("FULL_DURATION = 7200\nWEBAPP_PORT = 1600\n\n[roomba]\ninterval = 5\nbatch_size = 7\n")
    monkeypatch.setenv("SKYLINE_FULL_DURATION", "3600")
    monkeypatch.setenv("SKYLINE_ROOMBA__INTERVAL", "9")
    s = load_settings(path)
    assert s.FULL_DURATION == 3600  # environment wins
    assert s.roomba.interval == 9.0  # environment wins inside a table too
    assert s.WEBAPP_PORT == 1600  # the file still applies where the environment is silent
    assert s.roomba.batch_size == 7


def test_config_file_from_skyline_config(toml, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SKYLINE_CONFIG", str(toml("FULL_DURATION = 7200\n")))
    assert load_settings().FULL_DURATION == 7200


def test_explicit_config_file_wins_over_skyline_config(
    toml, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = tmp_path / "other.toml"
    other.write_text("FULL_DURATION = 3600\n")
    monkeypatch.setenv("SKYLINE_CONFIG", str(other))
    assert load_settings(toml("FULL_DURATION = 7200\n")).FULL_DURATION == 7200


def test_overrides_win_over_everything(toml, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SKYLINE_FULL_DURATION", "3600")
    assert load_settings(toml("FULL_DURATION = 7200\n"), FULL_DURATION=1800).FULL_DURATION == 1800


def test_table_as_json_in_environment_merges_with_file(toml, monkeypatch) -> None:
    path = toml("[roomba]\nbatch_size = 7\n")
    monkeypatch.setenv("SKYLINE_ROOMBA", json.dumps({"interval": 30, "max_keys_per_pass": 5}))
    s = load_settings(path)
    assert (s.roomba.interval, s.roomba.max_keys_per_pass, s.roomba.batch_size) == (30.0, 5, 7)


def test_one_table_entry_wins_over_the_table_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SKYLINE_ROOMBA", '{"interval": 30}')
    monkeypatch.setenv("SKYLINE_ROOMBA__INTERVAL", "7")
    assert load_settings().roomba.interval == 7.0


def test_environment_booleans(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SKYLINE_DATABASE__UPGRADE_ON_START", "false")
    assert load_settings().database.upgrade_on_start is False


# unknown settings -------------------------------------------------------------------------------
def test_unknown_top_level_key_is_named(toml) -> None:
    p = _only(_problems(toml("FULL_DURATION = 7200\nFULL_DURATON = 3600\n")), "FULL_DURATON")
    assert p.value == 3600
    assert "unknown setting" in p.reason


def test_unknown_key_in_a_table_is_named(toml) -> None:
    p = _only(_problems(toml("[roomba]\nintervall = 5\n")), "roomba.intervall")
    assert "unknown setting" in p.reason


def test_unknown_table_is_named(toml) -> None:
    p = _only(_problems(toml("[nosuch]\na = 1\n")), "nosuch")
    assert "unknown setting" in p.reason


def test_a_table_given_a_scalar(toml) -> None:
    p = _only(_problems(toml("roomba = 5\n")), "roomba")
    assert p.value == 5


# invalid values ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "setting", "value", "reason"),
    [
        ('FULL_DURATION = "abc"', "FULL_DURATION", "abc", "valid integer"),
        ("FULL_DURATION = 60", "FULL_DURATION", 60, "greater than or equal to 600"),
        ("FULL_DURATION = 600.5", "FULL_DURATION", 600.5, "fractional part"),
        ("[roomba]\ninterval = -1", "roomba.interval", -1, "greater than 0"),
        ('LOG_FORMAT = "xml"', "LOG_FORMAT", "xml", "'text' or 'json'"),
        ('LOG_LEVEL = "LOUD"', "LOG_LEVEL", "LOUD", "'INFO'"),
        ('REDIS_URL = "http://x"', "REDIS_URL", "http://x", "redis://, rediss:// or unix://"),
        ('DATABASE_URL = "oracle://db/x"', "DATABASE_URL", "oracle://db/x", "SQLAlchemy URL"),
        ("WEBAPP_PORT = 70000", "WEBAPP_PORT", 70000, "less than or equal to 65535"),
        ('WEBAPP_IP = ""', "WEBAPP_IP", "", "at least 1 character"),
        ("[telemetry]\nheartbeat_ttl = 1", "telemetry.heartbeat_ttl", 1, "greater than or equal to 10"),
    ],
)
def test_invalid_value_names_setting_value_and_reason(toml, text, setting, value, reason) -> None:
    problems = _problems(toml(text + "\n"))
    assert len(problems) == 1, problems
    p = _only(problems, setting)
    assert p.value == value
    assert reason in p.reason
    line = p.line()
    assert line.startswith(f"{setting}: {value!r}: ")


def test_every_problem_is_reported_at_once(toml) -> None:
    problems = _problems(toml('FULL_DURATION = "abc"\nLOG_FORMAT = "xml"\n[roomba]\ninterval = -1\n'))
    assert {p.setting for p in problems} == {"FULL_DURATION", "LOG_FORMAT", "roomba.interval"}
    assert settings_problems(toml('LOG_FORMAT = "xml"\n'))[0].setting == "LOG_FORMAT"


def test_settings_problems_is_empty_when_valid(toml) -> None:
    assert settings_problems(toml("FULL_DURATION = 7200\n")) == []


def test_invalid_environment_value_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SKYLINE_ROOMBA__INTERVAL", "soon")
    p = _only(_problems(), "roomba.interval")
    assert p.value == "soon"


def test_table_environment_variable_that_is_not_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SKYLINE_ROOMBA", "interval=5")
    problems = _problems()
    assert len(problems) == 1
    p = problems[0]
    assert p.setting == "roomba"
    assert p.value == "interval=5"
    assert "SKYLINE_ROOMBA" in p.reason and "JSON" in p.reason


# the config file itself -------------------------------------------------------------------------
def test_missing_config_file_is_one_clear_problem(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    problems = _problems(path)
    assert len(problems) == 1
    assert problems[0].setting == "config file"
    assert problems[0].value == str(path)
    assert "not found" in problems[0].reason


def test_missing_config_file_from_skyline_config(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("SKYLINE_CONFIG", str(tmp_path / "nope.toml"))
    assert [p.reason for p in _problems()] == ["file not found"]


def test_toml_syntax_error_is_one_clear_problem(toml) -> None:
    path = toml("FULL_DURATION = 7200\nLOG_FORMAT = \n")
    problems = _problems(path)
    assert len(problems) == 1
    assert problems[0].setting == "config file"
    assert problems[0].value == str(path)
    assert "not valid TOML" in problems[0].reason and "line 2" in problems[0].reason


def test_a_directory_as_config_file(tmp_path: Path) -> None:
    problems = _problems(tmp_path)
    assert len(problems) == 1 and problems[0].setting == "config file"


# secrets ----------------------------------------------------------------------------------------
REDIS = f"redis://:{PASSWORD}@redis.example.com:6379/0"
DATABASE = f"postgresql+psycopg://skyline:{PASSWORD}@db.example.com/skyline"


def _with_secrets(toml) -> Settings:
    return load_settings(toml(f'REDIS_URL = "{REDIS}"\nDATABASE_URL = "{DATABASE}"\n'))


def test_secrets_are_usable(toml) -> None:
    s = _with_secrets(toml)
    assert s.REDIS_URL is not None and s.REDIS_URL.get_secret_value() == REDIS
    assert s.database_url == DATABASE
    assert PASSWORD not in repr(s) and PASSWORD not in str(s)


def test_as_toml_masks_secrets(toml) -> None:
    text = as_toml(_with_secrets(toml))
    assert PASSWORD not in text
    assert 'REDIS_URL = "redis://:***@redis.example.com:6379/0"' in text
    assert 'DATABASE_URL = "postgresql+psycopg://skyline:***@db.example.com/skyline"' in text


def test_as_dict_masks_secrets(toml) -> None:
    data = as_dict(_with_secrets(toml))
    assert PASSWORD not in json.dumps(data)
    assert data["REDIS_URL"] == "redis://:***@redis.example.com:6379/0"
    assert data["DATABASE_URL"] == "postgresql+psycopg://skyline:***@db.example.com/skyline"
    assert data["roomba"]["interval"] == 60.0


def test_as_toml_round_trips(toml, tmp_path: Path) -> None:
    s = load_settings(toml('FULL_DURATION = 7200\n[roomba]\ninterval = 5\n'))
    again = load_settings(toml(as_toml(s)))
    assert as_dict(again) == as_dict(s)


@pytest.mark.parametrize(
    ("text", "setting"),
    [
        (f'REDIS_URL = "http://user:{PASSWORD}@redis.example.com"', "REDIS_URL"),
        (f'DATABASE_URL = "oracle://user:{PASSWORD}@db.example.com/x"', "DATABASE_URL"),
    ],
)
def test_problem_values_mask_secrets(toml, text: str, setting: str) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(toml(text + "\n"))
    p = _only(info.value.problems, setting)
    assert PASSWORD not in repr(p.value) and PASSWORD not in str(info.value)
    assert "***" in str(p.value)


def test_problem_values_mask_secrets_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SKYLINE_REDIS_URL", f"http://:{PASSWORD}@redis.example.com")
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert PASSWORD not in str(info.value)
    assert _only(info.value.problems, "REDIS_URL").value == "http://:***@redis.example.com"


def test_mask_url() -> None:
    assert mask_url("redis://:pw@h:6379/0") == "redis://:***@h:6379/0"
    assert mask_url("mysql+pymysql://u:pw@h/db?charset=utf8") == "mysql+pymysql://u:***@h/db?charset=utf8"
    assert mask_url("redis://h:6379/0") == "redis://h:6379/0"
    assert mask_url("unix:///tmp/redis.sock") == "unix:///tmp/redis.sock"
    assert mask_url("sqlite:///var/skyline.db") == "sqlite:///var/skyline.db"
