"""Where each setting's value came from, and the groups the settings page shows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from skyline.settings import load_settings
from skyline.settings.origins import GROUPS, detector_summary, group_of, grouped, origin
from skyline.settings.reference import settings_reference


@pytest.fixture(autouse=True)
def _clean_env(clean_env: None) -> None:
    """No SKYLINE_* variable of the developer's shell leaks into these tests."""


def test_every_setting_has_a_group() -> None:
    ids = {g for g, _, _ in GROUPS}
    missing = [d.name for d in settings_reference() if group_of(d.name) not in ids]
    assert missing == [], "give these settings a group in settings/origins.py"


def test_origin_of_each_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "skyline.toml"
    cfg.write_text('FULL_DURATION = 7200\nCONSENSUS = 5\n[analyzer]\nstages = ["mirage"]\n'
                   '[roomba]\nmax_keys_per_pass = 7\n')
    monkeypatch.setenv("SKYLINE_CONSENSUS", "4")  # the environment wins over the file
    monkeypatch.setenv("SKYLINE_ANALYZER__DETECTOR", "consensus")
    monkeypatch.setenv("SKYLINE_ROOMBA", json.dumps({"interval": 30}))  # a table as JSON
    monkeypatch.setenv("SKYLINE_FLUX_API_KEYS", json.dumps({"k" * 32: "demo"}))
    s = load_settings(cfg, LOG_LEVEL="DEBUG")
    want = {"FULL_DURATION": "file", "CONSENSUS": "env", "analyzer.stages": "file",
            "analyzer.detector": "env", "roomba.interval": "env",
            "roomba.max_keys_per_pass": "file", "roomba.batch_size": "default",
            "FLUX_API_KEYS": "env", "LOG_LEVEL": "override", "ALGORITHMS": "default"}
    assert {n: origin(s, n) for n in want} == want


def test_groups_put_the_detector_first_and_mask_secrets(monkeypatch) -> None:
    monkeypatch.setenv("SKYLINE_FLUX_API_KEYS", json.dumps({"k" * 32: "demo"}))
    s = load_settings(DATABASE_URL="postgresql+psycopg://sky:hunter2secret@db/sky")
    groups = grouped(s)
    assert groups[0].id == "analyzer" and groups[0].rows[0].name == "analyzer.detector"
    assert groups[1].id == "pipeline" and groups[1].rows[0].name == "analyzer.stages"
    rows = {r.name: r for g in groups for r in g.rows}
    assert len(rows) == len(settings_reference())
    assert rows["DATABASE_URL"].value == '"postgresql+psycopg://sky:***@db/sky"'
    assert "k" * 32 not in rows["FLUX_API_KEYS"].value
    assert rows["REDIS_URL"].unset and rows["REDIS_URL"].origin == "default"
    assert rows["analyzer.detector"].doc.description
    assert dict(detector_summary(s))["Detector"].startswith("learning: each point")
    assert dict(detector_summary(load_settings(analyzer={"detector": "score"})))[
        "Detector"].startswith("score: range_excess")
    assert dict(detector_summary(load_settings(CONSENSUS=5, analyzer={"detector": "consensus"}))
                )["Detector"].startswith("consensus: 5 of the 9 ALGORITHMS")
    learning = load_settings(analyzer={"detector": "learning"})
    assert dict(detector_summary(learning))["Detector"].startswith("learning")
