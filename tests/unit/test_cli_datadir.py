"""Which data directory a command uses when DATA_DIR is left at its default."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from skyline.cli.datadir import NoDataDirectory, record, require, resolve, state_file
from skyline.settings import load_settings


@pytest.fixture
def place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for k in list(os.environ):
        if k.upper().startswith("SKYLINE_"):
            monkeypatch.delenv(k)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    return tmp_path


def test_recorded_directory_is_found_from_elsewhere(place: Path) -> None:
    data = place / "data"
    data.mkdir()
    (data / "redis.conf").write_text("")
    record(load_settings(DATA_DIR=data))
    assert json.loads(state_file().read_text())["data_dir"] == str(data)
    assert resolve(load_settings()).data_dir == data
    # ./var with Skyline's data wins: that is what `skyline run` started here uses
    (place / "cwd" / "var").mkdir()
    (place / "cwd" / "var" / "skyline.db").write_text("")
    assert resolve(load_settings()).data_dir == place / "cwd" / "var"


def test_a_data_dir_that_was_set_is_never_moved(place: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    data = place / "data"
    data.mkdir()
    (data / "redis.conf").write_text("")
    record(load_settings(DATA_DIR=data))
    monkeypatch.setenv("SKYLINE_DATA_DIR", str(place / "mine"))
    assert require(load_settings()).data_dir == place / "mine"


def test_nothing_found_names_where_it_looked(place: Path) -> None:
    with pytest.raises(NoDataDirectory) as info:
        require(load_settings())
    assert str(place / "cwd" / "var") in str(info.value)
    assert str(state_file()) in str(info.value)
    # a recorded directory that has gone is not used either
    record(load_settings(DATA_DIR=place / "gone"))
    with pytest.raises(NoDataDirectory, match="holds no data"):
        require(load_settings())
    # external stores need no data directory
    s = load_settings(REDIS_URL="redis://127.0.0.1:1/0", DATABASE_URL="sqlite:////tmp/x.db")
    assert require(s) is s
