"""Rendering settings for people: secrets masked, TOML layout."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo

MASK = "***"


# query parameters that carry a secret (`?password=` of redis and SQL URLs, tokens, keys)
_SECRET_PARAM = re.compile(r"([?&;](?:[^=&;#]*(?:pass|pwd|secret|token|key|auth)[^=&;#]*)=)"
                           r"[^&;#]*", re.IGNORECASE)


def mask_url(url: str) -> str:
    """The URL with any password replaced by ***, in the user info and in query parameters
    named for a secret (password=, token=, ...).

    Parsed by hand rather than with urllib: a password holding an unencoded '/', '#' or '?'
    must still be hidden, and the host part is left exactly as written.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    # user info ends at the last '@' before the path, or anywhere if the password holds '/'
    at = rest.rfind("@")
    if at >= 0:
        userinfo, hostpart = rest[:at], rest[at + 1 :]
        user, colon, _password = userinfo.partition(":")
        if colon:
            rest = f"{user}:{MASK}@{hostpart}"
    return _SECRET_PARAM.sub(lambda m: m.group(1) + MASK, f"{scheme}://{rest}")


def _has_secret_keys(field: FieldInfo) -> bool:
    extra = field.json_schema_extra
    return isinstance(extra, dict) and bool(extra.get("secret_keys"))


def _wholly_secret(field: FieldInfo) -> bool:
    """A secret with no harmless part to show: a token, or a webhook URL whose path is the
    credential (json_schema_extra={"mask": "all"}); mask_url would show it whole."""
    extra = field.json_schema_extra
    return isinstance(extra, dict) and extra.get("mask") == "all"


def mask_keys(table: dict[str, Any]) -> dict[str, Any]:
    """A table whose keys are secrets (FLUX_API_KEYS), keys replaced by ***1, ***2, ...:
    numbered so that two keys with the same value (prefix) both still show."""
    return {f"{MASK}{i}": _plain(v) for i, v in enumerate(table.values(), 1)}


def _plain(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return mask_url(value.get_secret_value())
    if isinstance(value, BaseModel):
        fields = type(value).model_fields
        out: dict[str, Any] = {}
        for k, f in fields.items():
            v = getattr(value, k)
            if _has_secret_keys(f):
                out[k] = mask_keys(v)
            elif _wholly_secret(f) and v is not None:
                out[k] = MASK
            else:
                out[k] = _plain(v)
        return out
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):  # free-form tables, e.g. an ALERTS rule's options
        return {str(k): MASK if str(k).lower() in _SECRET_OPTIONS and v else _plain(v)
                for k, v in value.items()}
    if isinstance(value, str) and "://" in value:
        return mask_url(value)
    return value


# keys of free-form tables whose values are secrets wherever they appear (a rule's
# options.url is a webhook URL, which often carries its token in the path)
_SECRET_OPTIONS = frozenset({"url", "webhook_url", "routing_key", "secret", "password",
                             "token", "api_key"})


def as_dict(settings: BaseModel) -> dict[str, Any]:
    """Every setting as JSON-ready data, secrets masked."""
    result: dict[str, Any] = _plain(settings)
    return result


_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _key(k: str) -> str:
    return k if _BARE_KEY.match(k) else json.dumps(k)


def _inline(v: Any) -> str:
    """A TOML inline value; JSON's string escapes are valid TOML, its objects are not."""
    if isinstance(v, dict):
        items = [f"{_key(str(k))} = {_inline(x)}" for k, x in v.items() if x is not None]
        return "{ " + ", ".join(items) + " }" if items else "{}"
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_inline(x) for x in v) + "]"
    return json.dumps(v)


def _toml_line(k: str, v: Any) -> str:
    if v is None:
        return f"# {_key(k)} is unset"
    return f"{_key(k)} = {_inline(v)}"


def _table(path: str, model: BaseModel, data: dict[str, Any], lines: list[str]) -> None:
    """One [table], its settings first, then its own tables ([alerters.smtp]) as sections."""
    lines += ["", f"[{path}]"]
    sections = [k for k in data if isinstance(getattr(model, k, None), BaseModel)]
    lines += [_toml_line(k, v) for k, v in data.items() if k not in sections]
    for k in sections:
        _table(f"{path}.{_key(k)}", getattr(model, k), data[k], lines)


def as_toml(settings: BaseModel) -> str:
    data = as_dict(settings)
    top = [(k, v) for k, v in data.items() if not isinstance(v, dict)]
    tables = [(k, v) for k, v in data.items() if isinstance(v, dict)]
    lines = [_toml_line(k, v) for k, v in top]
    for name, table in tables:
        sub = getattr(settings, name, None)
        if isinstance(sub, BaseModel):
            _table(name, sub, table, lines)
        else:  # a table-valued setting at the top (FLUX_API_KEYS)
            lines += ["", f"[{_key(name)}]"]
            lines += [_toml_line(k, v) for k, v in table.items()]
    return "\n".join(lines) + "\n"
