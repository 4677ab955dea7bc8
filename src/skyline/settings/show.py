"""Rendering settings for people: secrets masked, TOML layout."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo

MASK = "***"


def mask_url(url: str) -> str:
    """The URL with any password replaced by ***.

    Parsed by hand rather than with urllib: a password holding an unencoded '/', '#' or '?'
    must still be hidden, and the host part is left exactly as written.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    # user info ends at the last '@' before the path, or anywhere if the password holds '/'
    at = rest.rfind("@")
    if at < 0:
        return url
    userinfo, hostpart = rest[:at], rest[at + 1 :]
    user, colon, _password = userinfo.partition(":")
    if not colon:
        return url
    return f"{scheme}://{user}:{MASK}@{hostpart}"


def _has_secret_keys(field: FieldInfo) -> bool:
    extra = field.json_schema_extra
    return isinstance(extra, dict) and bool(extra.get("secret_keys"))


def mask_keys(table: dict[str, Any]) -> dict[str, Any]:
    """A table whose keys are secrets (FLUX_API_KEYS), keys replaced by ***1, ***2, ...:
    numbered so that two keys with the same value (prefix) both still show."""
    return {f"{MASK}{i}": _plain(v) for i, v in enumerate(table.values(), 1)}


def _plain(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return mask_url(value.get_secret_value())
    if isinstance(value, BaseModel):
        fields = type(value).model_fields
        return {k: mask_keys(getattr(value, k)) if _has_secret_keys(f) else _plain(getattr(value, k))
                for k, f in fields.items()}
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def as_dict(settings: BaseModel) -> dict[str, Any]:
    """Every setting as JSON-ready data, secrets masked."""
    result: dict[str, Any] = _plain(settings)
    return result


_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _toml_line(k: str, v: Any) -> str:
    key = k if _BARE_KEY.match(k) else json.dumps(k)
    if v is None:
        return f"# {key} is unset"
    return f"{key} = {json.dumps(v)}"


def as_toml(settings: BaseModel) -> str:
    data = as_dict(settings)
    top = [(k, v) for k, v in data.items() if not isinstance(v, dict)]
    tables = [(k, v) for k, v in data.items() if isinstance(v, dict)]
    lines = [_toml_line(k, v) for k, v in top]
    for name, table in tables:
        lines += ["", f"[{name}]"]
        lines += [_toml_line(k, v) for k, v in table.items()]
    return "\n".join(lines) + "\n"
