"""Flux's settings: keys are secrets wherever settings are shown, and are checked."""

from __future__ import annotations

import json
import tomllib

import pytest

from skyline.core.errors import SettingsError
from skyline.settings import load_settings
from skyline.settings.show import as_dict, as_toml

KEY_A = "a" * 32
KEY_B = "b1B2" * 8


@pytest.fixture(autouse=True)
def _clean_env(clean_env: None) -> None:
    """No SKYLINE_* variable of the developer's shell leaks into these tests."""


def test_config_show_masks_the_keys_and_keeps_the_prefixes():
    s = load_settings(FLUX_API_KEYS={KEY_A: "team", KEY_B: "team"})
    shown = as_dict(s)
    assert shown["FLUX_API_KEYS"] == {"***1": "team", "***2": "team"}
    text = as_toml(s)
    assert KEY_A not in text and KEY_B not in text and KEY_A not in json.dumps(shown)
    assert tomllib.loads(text)["FLUX_API_KEYS"] == {"***1": "team", "***2": "team"}
    assert s.FLUX_API_KEYS[KEY_A] == "team"  # the settings themselves keep the real keys


def test_keys_from_the_environment_as_json(monkeypatch):
    monkeypatch.setenv("SKYLINE_FLUX_API_KEYS", json.dumps({KEY_A: "ops.prod"}))
    monkeypatch.setenv("SKYLINE_FLUX__TENANT_HEADER", "X-Tenant")
    s = load_settings()
    assert s.FLUX_API_KEYS == {KEY_A: "ops.prod"} and s.flux.tenant_header == "X-Tenant"
    assert s.FLUX_MAX_METRICS_PER_POST == 450 and s.FLUX_ALLOW_ANONYMOUS is False


@pytest.mark.parametrize(("keys", "why"), [
    ({"short": "p"}, "at least 16"),
    ({"has a space in it ok?": "p"}, "at least 16"),
    ({KEY_A: "bad..prefix"}, "not a dotted metric namespace"),
    ({KEY_A: ".lead"}, "not a dotted metric namespace"),
    ({KEY_A: 5}, "valid string"),
])
def test_bad_keys_are_refused_without_showing_them(keys, why):
    with pytest.raises(SettingsError) as e:
        load_settings(FLUX_API_KEYS=keys)
    message = str(e.value)
    assert why in message and message.startswith("FLUX_API_KEYS: '***'")
    for k in keys:
        assert k not in message
