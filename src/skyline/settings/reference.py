"""The settings reference: every setting with its TOML name, type, default, environment
variable, meaning and limits, read from the model itself.

docs/settings.md holds `render_markdown(settings_reference())` between its
`<!-- settings-reference:start -->` and `<!-- settings-reference:end -->` markers, and a test
checks that the two agree.
"""

from __future__ import annotations

import enum
import inspect
import json
import re
import types
from dataclasses import dataclass
from pathlib import PurePath
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo

from skyline.settings.model import Settings
from skyline.settings.show import MASK, mask_url

UNSET = "unset"
REQUIRED = "required"

# constraint attribute of pydantic/annotated-types metadata -> how it reads
_CONSTRAINTS = (
    ("gt", "> {}"),
    ("ge", ">= {}"),
    ("lt", "< {}"),
    ("le", "<= {}"),
    ("min_length", "min length {}"),
    ("max_length", "max length {}"),
    ("multiple_of", "multiple of {}"),
)
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


@dataclass(frozen=True)
class SettingDoc:
    name: str  # as written in TOML: FULL_DURATION, roomba.interval
    table: str  # "" for top-level settings, else the dotted table name ("roomba")
    type: str  # int, float, str, bool, path, secret URL, "text" | "json", list[str] ...
    default: str  # as written in TOML, or "unset" / "required"
    env: str  # SKYLINE_FULL_DURATION, SKYLINE_ROOMBA__INTERVAL
    description: str
    constraints: str = ""  # ">= 600, <= 2592000"
    table_description: str = ""

    @property
    def type_cell(self) -> str:
        """The type as the docs table shows it: with its limits, when it has any."""
        return f"{self.type} ({self.constraints})" if self.constraints else self.type


def settings_reference(model: type[BaseModel] = Settings) -> list[SettingDoc]:
    """Every setting of `model`: top-level fields first, then each table (a field whose type
    is a model), recursively, in declaration order."""
    config: Any = model.model_config
    prefix = str(config.get("env_prefix") or "")
    delimiter = str(config.get("env_nested_delimiter") or "__")
    docs: list[SettingDoc] = []
    _walk(model, (), prefix, delimiter, "", docs)
    return docs


def _walk(model: type[BaseModel], path: tuple[str, ...], prefix: str, delimiter: str,
          table_description: str, out: list[SettingDoc]) -> None:
    tables: list[tuple[str, type[BaseModel]]] = []
    for name, field in model.model_fields.items():
        sub = _model_of(field.annotation)
        if sub is not None:
            tables.append((name, sub))
            continue
        full = (*path, name)
        out.append(SettingDoc(
            name=".".join(full),
            table=".".join(path),
            type=_field_type(name, field),
            default=_default(field),
            env=prefix + delimiter.join(full).upper(),
            description=" ".join((field.description or "").split()),
            constraints=_constraints(field),
            table_description=table_description,
        ))
    for name, sub in tables:
        _walk(sub, (*path, name), prefix, delimiter, _model_description(sub), out)


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The model class when a field holds a table (`X` or `X | None`), else None."""
    args = [a for a in _union_args(annotation) if a is not type(None)]
    if len(args) == 1 and inspect.isclass(args[0]) and issubclass(args[0], BaseModel):
        return args[0]
    return None


def _union_args(tp: Any) -> tuple[Any, ...]:
    if get_origin(tp) in (Union, types.UnionType):
        return get_args(tp)
    return (tp,)


def _model_description(model: type[BaseModel]) -> str:
    doc = inspect.getdoc(model) or ""
    text = " ".join(doc.split("\n\n")[0].split())
    text = re.sub(r"^\[[\w.]+\]:\s*", "", text)  # "[redis]: the hot store." -> "the hot store."
    return text[:1].upper() + text[1:]


def _field_type(name: str, field: FieldInfo) -> str:
    text = type_name(field.annotation)
    if text == "secret" and name.upper().endswith("URL"):
        return "secret URL"
    return text


def type_name(tp: Any) -> str:
    """A readable name for a type annotation, in TOML's vocabulary."""
    origin = get_origin(tp)
    if origin is Annotated:
        return type_name(get_args(tp)[0])
    if origin in (Union, types.UnionType):
        parts = [type_name(a) for a in get_args(tp) if a is not type(None)]
        return " | ".join(dict.fromkeys(parts))
    if origin is Literal:
        return " | ".join(_literal(a) for a in get_args(tp))
    if origin in (list, tuple, set, frozenset):
        items = [a for a in get_args(tp) if a is not Ellipsis]
        inner = " | ".join(dict.fromkeys(type_name(a) for a in items)) if items else "any"
        return f"list[{inner}]"
    if origin is dict:
        kv = get_args(tp)
        value = type_name(kv[1]) if len(kv) == 2 else "any"
        return f"table[str, {value}]"
    if tp is Any:
        return "any"
    if inspect.isclass(tp):
        if issubclass(tp, bool):
            return "bool"
        if issubclass(tp, enum.Enum):
            return " | ".join(_literal(m.value) for m in tp)
        if issubclass(tp, SecretStr):
            return "secret"
        if issubclass(tp, PurePath):
            return "path"
        if issubclass(tp, BaseModel):
            return "table"
        for base in (int, float, str):
            if issubclass(tp, base):
                return base.__name__
    return getattr(tp, "__name__", str(tp))


def _literal(value: Any) -> str:
    return json.dumps(value) if isinstance(value, str) else toml_value(value)


def _constraints(field: FieldInfo) -> str:
    found: list[str] = []
    for meta in field.metadata:
        for attr, text in _CONSTRAINTS:
            value = getattr(meta, attr, None)
            if value is not None:
                found.append(text.format(value))
    return ", ".join(found)


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return REQUIRED
    value = field.get_default(call_default_factory=True, validated_data={})
    return UNSET if value is None else toml_value(value)


def toml_value(value: Any) -> str:
    """A value written as in a TOML file (inline arrays and tables; secrets masked)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, enum.Enum):
        return toml_value(value.value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value != value:
            return "nan"
        if value in (float("inf"), float("-inf")):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, SecretStr):
        secret = value.get_secret_value()
        return json.dumps(mask_url(secret) if "://" in secret or not secret else MASK)
    if isinstance(value, PurePath):
        return json.dumps(str(value))
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, BaseModel):
        return toml_value({k: getattr(value, k) for k in type(value).model_fields})
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = (f"{_toml_key(str(k))} = {toml_value(v)}" for k, v in value.items())
        return "{ " + ", ".join(items) + " }"
    if isinstance(value, list | tuple | set | frozenset):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(str(value))


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.match(key) else json.dumps(key)


# markdown ------------------------------------------------------------------------------------
HEADER = "| Setting | Type | Default | Environment | Meaning |"
TOP_LEVEL_HEADING = "Top-level settings"
_TOP_LEVEL_TEXT = (
    "Upstream Skyline's names, and settings that belong to no single component. In a TOML "
    "file they come first, before any `[table]`."
)


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _code(text: str) -> str:
    return f"`{_cell(text)}`"


def _meaning(text: str) -> str:
    return _cell(text).replace("<", "&lt;").replace(">", "&gt;")


def table_heading(table: str) -> str:
    """The heading text of a group of settings: `[roomba]`, or the top-level heading."""
    return f"`[{table}]`" if table else TOP_LEVEL_HEADING


def render_markdown(docs: list[SettingDoc], level: int = 3) -> str:
    """The reference as markdown: one table per TOML table, each under its own heading."""
    groups: dict[str, list[SettingDoc]] = {}
    for d in docs:
        groups.setdefault(d.table, []).append(d)
    hashes = "#" * level
    out: list[str] = []
    for table, rows in groups.items():
        out.append(f"{hashes} {table_heading(table)}")
        out.append("")
        intro = _TOP_LEVEL_TEXT if not table else rows[0].table_description
        if intro:
            out += [intro, ""]
        out.append(HEADER)
        out.append("|---|---|---|---|---|")
        for d in rows:
            default = d.default if d.default in (UNSET, REQUIRED) else _code(d.default)
            out.append(
                f"| {_code(d.name)} | {_code(d.type_cell)} | {default} | {_code(d.env)} "
                f"| {_meaning(d.description)} |"
            )
        out.append("")
    return "\n".join(out).rstrip("\n") + "\n"
