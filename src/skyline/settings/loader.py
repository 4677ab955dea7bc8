"""Loading settings: defaults < TOML file (--config or SKYLINE_CONFIG) < environment."""

from __future__ import annotations

import json
import os
import re
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr, ValidationError
from pydantic_settings import BaseSettings, InitSettingsSource, PydanticBaseSettingsSource
from pydantic_settings import SettingsError as SourceError

from skyline.core.errors import SettingProblem, SettingsError
from skyline.settings.model import ENV_NESTED, ENV_PREFIX, Settings

SECRET_FIELDS = {"REDIS_URL", "DATABASE_URL"}
# tables whose keys are secrets (flux keys): neither the key nor the table is ever shown
SECRET_KEY_FIELDS = {"FLUX_API_KEYS"}


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise SettingsError([SettingProblem("config file", str(path), "file not found")]) from None
    except tomllib.TOMLDecodeError as e:
        raise SettingsError([SettingProblem("config file", str(path), f"not valid TOML: {e}")]) from None
    except OSError as e:
        raise SettingsError([SettingProblem("config file", str(path), e.strerror or str(e))]) from None


def _lookup(data: Any, path: list[str]) -> Any:
    for part in path:
        if isinstance(data, dict) and part in data:
            data = data[part]
        elif isinstance(data, list) and part.isdigit() and int(part) < len(data):
            data = data[int(part)]  # ALERTS.0.channel
        elif isinstance(data, BaseModel) and hasattr(data, part):
            data = getattr(data, part)
        else:
            return "(default)"
    return data


def _problems(err: ValidationError) -> list[SettingProblem]:
    out = []
    for e in err.errors():
        loc = [str(p) for p in e["loc"]]
        name = ".".join(loc) if loc else "settings"
        value: Any = e.get("input")
        if loc and loc[0] in SECRET_FIELDS and isinstance(value, str | SecretStr):
            from skyline.settings.show import mask_url

            value = mask_url(value.get_secret_value() if isinstance(value, SecretStr) else value)
        if loc and loc[0] in SECRET_KEY_FIELDS:
            name, value = loc[0], "***"
        reason = e["msg"].removeprefix("Value error, ")
        if not loc:
            # a check across settings: it names the setting it is about first
            first = reason.split(" ", 1)[0]
            name = first
            value = _lookup(value, first.split("."))
        if e["type"] == "extra_forbidden":
            reason = "unknown setting (docs/settings.md lists them all)"
            value = value if not isinstance(value, dict) else "{...}"
        out.append(SettingProblem(name, value, reason))
    return out


def _source_problem(err: SourceError) -> SettingProblem:
    """pydantic-settings refuses an environment variable it cannot decode (a list or table
    that is not valid JSON) before validation; name the variable and say why."""
    m = re.search(r'field "([^"]+)"', str(err))
    field = m.group(1) if m else "settings"
    var = ENV_PREFIX + field.upper()
    value: Any = None
    for k, v in os.environ.items():
        if k.upper() == var:
            var, value = k, v
            break
    cause = err.__cause__
    why = f" ({cause})" if isinstance(cause, json.JSONDecodeError) else ""
    return SettingProblem(
        field, value, f"environment variable {var} is not valid JSON{why}; lists and tables "
        f"are written as JSON, or one entry at a time as {ENV_PREFIX}<TABLE>{ENV_NESTED}<NAME>"
    )


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Build the Settings, raising SettingsError with one problem per invalid setting.

    `overrides` take precedence over everything (used by tests and by CLI options).
    """
    path = config_file or os.environ.get(ENV_PREFIX + "CONFIG")
    file_data = _read_toml(Path(path)) if path else {}
    env_source: list[PydanticBaseSettingsSource] = []

    class _Loaded(Settings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            env_source.append(env_settings)
            return (
                InitSettingsSource(settings_cls, overrides),
                env_settings,
                InitSettingsSource(settings_cls, file_data),
            )

    try:
        loaded = _Loaded()
    except ValidationError as e:
        raise SettingsError(_problems(e)) from None
    except SourceError as e:
        raise SettingsError([_source_problem(e)]) from None
    env_data = env_source[0]() if env_source else {}
    loaded._origins = {"override": _paths(overrides), "env": _paths(env_data),
                       "file": _paths(file_data)}
    loaded._config_file = str(Path(path).resolve()) if path else None
    return loaded


def _paths(data: dict[str, Any], prefix: str = "") -> frozenset[str]:
    """The dotted paths of every value in nested tables: {"analyzer": {"detector": x}} ->
    {"analyzer.detector"}. A list is one value (ALERTS is one setting)."""
    out: set[str] = set()
    for k, v in data.items():
        path = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out |= _paths(v, path + ".")
        else:
            out.add(path)
    return frozenset(out)


def settings_problems(config_file: str | Path | None = None) -> list[SettingProblem]:
    """All problems with the settings, empty when they are valid."""
    try:
        load_settings(config_file)
    except SettingsError as e:
        return e.problems
    return []
