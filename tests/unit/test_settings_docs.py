"""docs/settings.md and the settings model agree, in both directions.

The page is parsed (tables, cells), not compared as text, so editing the wording of a
"Meaning" or "Notes" cell never breaks these tests; a wrong type, default or environment
variable, a missing or extra setting, or a mapping to a setting that does not exist does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

from skyline.core.patterns import from_upstream, matches
from skyline.settings import load_settings
from skyline.settings.reference import (
    REQUIRED,
    UNSET,
    render_markdown,
    settings_reference,
    table_heading,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "settings.md"
START = "<!-- settings-reference:start -->"
END = "<!-- settings-reference:end -->"
REGENERATE = (
    "docs/settings.md is out of date with the settings model; paste the output of\n"
    "  .venv/bin/python -c 'from skyline.settings.reference import *; "
    "print(render_markdown(settings_reference()), end=\"\")'\n"
    f"between {START} and {END}. It is currently:\n\n"
)

# issues open for components not built yet, and components that have no issue yet
OPEN_ISSUES = {"ingest", "analyzer", "panorama+alerters", "webapp", "SNAB"}
NO_ISSUE_YET = {"mirage", "boundary", "ionosphere", "crucible", "luminosity", "thunder", "vista"}

# upstream settings the mapping must always cover (design.md, the settings contract)
MUST_MAP = {
    "FULL_DURATION", "ROOMBA_GRACE_TIME", "ROOMBA_PROCESSES", "ROOMBA_TIMEOUT",
    "MAX_RESOLUTION", "CHUNK_SIZE", "MAX_QUEUE_SIZE", "WORKER_PROCESSES", "PICKLE_PORT",
    "UDP_PORT", "HORIZON_IP", "SKIP_LIST", "DO_NOT_SKIP_LIST", "REDIS_SOCKET_PATH",
    "REDIS_PASSWORD", "PANORAMA_DBHOST", "PANORAMA_DBPORT", "PANORAMA_DBUSER",
    "PANORAMA_DBUSERPASS", "PANORAMA_DATABASE", "ANALYZER_PROCESSES",
    "ANALYZER_OPTIMUM_RUN_DURATION", "STALE_PERIOD", "MIN_TOLERABLE_LENGTH",
    "MAX_TOLERABLE_BOREDOM", "BOREDOM_SET_SIZE", "CONSENSUS", "ALGORITHMS", "ENABLE_ALERTS",
    "ALERTS", "EXPIRATION_TIME", "CANARY_METRIC", "MONOTONIC_METRIC_NAMESPACES",
    "CUSTOM_ALGORITHMS", "SMTP_OPTS", "SLACK_OPTS", "PAGERDUTY_OPTS", "SYSLOG_OPTS",
    "HTTP_ALERTERS_OPTS", "FLUX_IP", "FLUX_PORT", "FLUX_API_KEYS", "FLUX_MAX_AGE",
    "WEBAPP_IP", "WEBAPP_PORT", "WEBAPP_AUTH_ENABLED", "WEBAPP_AUTH_USER",
    "WEBAPP_AUTH_USER_PASSWORD", "PANORAMA_EXPIRY_TIME", "ENABLE_MIRAGE",
    "BOUNDARY_ENABLE_ALERTS", "IONOSPHERE_ENABLED", "OCULUS_HOST", "MINI_DURATION",
    "HORIZON_SHARDS", "REMOTE_SKYLINE_INSTANCES", "LOG_PATH",
}

_PIPE = re.compile(r"(?<!\\)\|")
_CODE = re.compile(r"`([^`]+)`")
_UPPER_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")


@dataclass
class Table:
    heading: str
    header: list[str]
    rows: list[list[str]]


def _cells(line: str) -> list[str]:
    inner = line.strip()
    inner = inner[1:] if inner.startswith("|") else inner
    inner = inner[:-1] if inner.endswith("|") and not inner.endswith("\\|") else inner
    return [c.strip().replace("\\|", "|") for c in _PIPE.split(inner)]


def _unquote(cell: str) -> str:
    """The text of a cell that is one code span, else the cell as it is."""
    if len(cell) >= 2 and cell.startswith("`") and cell.endswith("`") and cell.count("`") == 2:
        return cell[1:-1]
    return cell


def _tables(text: str) -> list[Table]:
    tables: list[Table] = []
    heading = ""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
        elif line.lstrip().startswith("|") and i + 1 < len(lines) and re.match(
            r"^\s*\|(\s*:?-+:?\s*\|)+\s*$", lines[i + 1]
        ):
            header = _cells(line)
            rows = []
            i += 2
            while i < len(lines) and lines[i].lstrip().startswith("|"):
                rows.append(_cells(lines[i]))
                i += 1
            tables.append(Table(heading, header, rows))
            continue
        i += 1
    return tables


@cache
def _text() -> str:
    return DOC.read_text(encoding="utf-8")


@cache
def _reference_block() -> str:
    text = _text()
    assert text.count(START) == 1 and text.count(END) == 1, f"{DOC}: one {START} and one {END}"
    return text.split(START, 1)[1].split(END, 1)[0]


@dataclass
class Row:
    heading: str
    type: str
    default: str
    env: str
    meaning: str


@cache
def _documented() -> dict[str, list[Row]]:
    """Setting name -> every row naming it in the reference block (more than one is an error)."""
    out: dict[str, list[Row]] = {}
    for table in _tables(_reference_block()):
        assert table.header == ["Setting", "Type", "Default", "Environment", "Meaning"], (
            f"unexpected table header {table.header} under {table.heading!r}"
        )
        for cells in table.rows:
            assert len(cells) == 5, f"row with {len(cells)} cells under {table.heading!r}: {cells}"
            name, type_, default, env, meaning = (_unquote(c) for c in cells)
            out.setdefault(name, []).append(Row(table.heading, type_, default, env, meaning))
    return out


def _fresh() -> str:
    return REGENERATE + render_markdown(settings_reference())


DOCS = settings_reference()
SETTING_NAMES = {d.name for d in DOCS}
TABLES = {d.table for d in DOCS if d.table}


# the reference tables ----------------------------------------------------------------------------
def test_the_reference_is_not_empty() -> None:
    assert _documented(), "no settings table found between the markers\n" + _fresh()
    assert len(SETTING_NAMES) == len(DOCS)


@pytest.mark.parametrize("doc", DOCS, ids=lambda d: d.name)
def test_every_setting_is_documented_as_the_code_has_it(doc) -> None:
    rows = _documented().get(doc.name)
    assert rows, f"{doc.name} is missing from docs/settings.md\n" + _fresh()
    assert len(rows) == 1, f"{doc.name} is documented {len(rows)} times"
    row = rows[0]
    assert (row.type, row.default, row.env) == (doc.type_cell, doc.default, doc.env), (
        f"{doc.name}: docs say type {row.type!r}, default {row.default!r}, env {row.env!r}; "
        f"the code says {doc.type_cell!r}, {doc.default!r}, {doc.env!r}\n" + _fresh()
    )
    assert row.heading == table_heading(doc.table), (
        f"{doc.name} is under {row.heading!r}, not {table_heading(doc.table)!r}"
    )
    assert row.meaning.strip(), f"{doc.name} has no meaning in docs/settings.md"
    assert doc.description, f"{doc.name} has no description= in the model"


def test_every_documented_setting_exists() -> None:
    extra = sorted(set(_documented()) - SETTING_NAMES)
    assert not extra, f"docs/settings.md documents settings the model does not have: {extra}\n" + (
        _fresh()
    )


def test_defaults_are_rendered_as_in_toml() -> None:
    by_name = {d.name: d for d in DOCS}
    assert by_name["FULL_DURATION"].default == "86400"
    assert by_name["WEBAPP_IP"].default == '"127.0.0.1"'
    assert by_name["REDIS_URL"].default == UNSET
    assert by_name["REDIS_URL"].type == "secret URL"
    assert by_name["LOG_FORMAT"].type == '"text" | "json"'
    assert by_name["database.upgrade_on_start"].default == "true"
    assert by_name["roomba.interval"].env == "SKYLINE_ROOMBA__INTERVAL"
    assert by_name["roomba.interval"].constraints == "> 0, <= 86400"
    assert all(d.default != REQUIRED for d in DOCS), "every setting needs a default"


# the environment variables the page names really set the settings ------------------------------
@pytest.fixture(autouse=True)
def _clean_env(clean_env: None) -> None:
    """No SKYLINE_* variable of the developer's shell leaks into these tests."""


@pytest.mark.parametrize(
    ("name", "raw", "expected"),
    [
        ("FULL_DURATION", "604800", 604800),
        ("LOG_FORMAT", "json", "json"),
        ("DATA_DIR", "/tmp/skyline-data", Path("/tmp/skyline-data")),
        ("roomba.interval", "2.5", 2.5),
        ("database.upgrade_on_start", "false", False),
        ("telemetry.series_prefix", "sky", "sky"),
    ],
)
def test_the_documented_environment_variable_sets_the_setting(
    monkeypatch: pytest.MonkeyPatch, name: str, raw: str, expected: object
) -> None:
    env = _documented()[name][0].env
    monkeypatch.setenv(env, raw)
    value: object = load_settings()
    for part in name.split("."):
        value = getattr(value, part)
    assert value == expected


def test_the_documented_secret_variable_sets_the_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(_documented()["REDIS_URL"][0].env, "redis://:pw@h:6379/0")
    s = load_settings()
    assert s.REDIS_URL is not None and s.REDIS_URL.get_secret_value() == "redis://:pw@h:6379/0"


def test_the_example_toml_file_is_valid(tmp_path: Path) -> None:
    blocks = re.findall(r"```toml\n(.*?)```", _text(), re.S)
    assert blocks, "docs/settings.md has no ```toml example"
    path = tmp_path / "skyline.toml"
    path.write_text(blocks[0])
    s = load_settings(path)
    assert s.LOG_FORMAT == "json" and s.roomba.interval == 60.0


# the upstream mapping ----------------------------------------------------------------------------
@cache
def _mapping() -> list[tuple[list[str], str, str]]:
    """(upstream names, ours, notes) for every row of the upstream mapping tables."""
    out = []
    for table in _tables(_text()):
        if table.header != ["Upstream", "Ours", "Notes"]:
            continue
        for cells in table.rows:
            assert len(cells) == 3, f"mapping row with {len(cells)} cells: {cells}"
            names = _CODE.findall(cells[0])
            assert names, f"mapping row names no upstream setting: {cells}"
            out.append((names, cells[1], cells[2]))
    assert out, "no | Upstream | Ours | Notes | table in docs/settings.md"
    return out


def test_upstream_settings_are_mapped_once() -> None:
    seen: dict[str, int] = {}
    for names, _, _ in _mapping():
        for n in names:
            assert _UPPER_NAME.match(n), f"{n!r} is not an upstream setting name"
            seen[n] = seen.get(n, 0) + 1
    twice = sorted(n for n, c in seen.items() if c > 1)
    assert not twice, f"upstream settings mapped more than once: {twice}"
    missing = sorted(MUST_MAP - set(seen))
    assert not missing, f"upstream settings missing from the mapping: {missing}"


def test_every_mapped_setting_exists() -> None:
    for names, ours, _ in _mapping():
        if ours.startswith(("planned:", "gone:")):
            continue
        claimed = _CODE.findall(ours)
        assert claimed and re.fullmatch(r"(`[^`]+`)(,\s*`[^`]+`)*", ours), (
            f"{names}: the Ours cell must be our setting name(s), 'planned: ...' or "
            f"'gone: ...', not {ours!r}"
        )
        unknown = [c for c in claimed if c not in SETTING_NAMES]
        assert not unknown, f"{names} map to {unknown}, which are not settings in model.py"


def test_planned_rows_name_a_component() -> None:
    for names, ours, _ in _mapping():
        if not ours.startswith("planned:"):
            continue
        m = re.match(r"planned: (\S+) (issue|\(no issue yet\))", ours)
        assert m, f"{names}: write 'planned: <component> issue', not {ours!r}"
        component, kind = m.groups()
        if kind == "issue":
            assert component in OPEN_ISSUES, f"{names}: no open issue for {component!r}"
        else:
            assert component in NO_ISSUE_YET, f"{names}: {component!r} is not a component"


def test_settings_named_in_the_mapping_exist() -> None:
    """A `gone:` cell that names a replacement names a real one, and a table entry
    (`roomba.interval`) named anywhere in the mapping is a real setting."""
    for names, ours, notes in _mapping():
        if ours.startswith("gone:"):
            assert len(ours) > len("gone: "), f"{names}: say why it is gone"
            for token in _CODE.findall(ours):
                if _UPPER_NAME.match(token):
                    assert token in SETTING_NAMES, f"{names}: {token} is not a setting"
        for token in _CODE.findall(ours) + _CODE.findall(notes):
            if "." in token and token.split(".")[0] in TABLES:
                assert token in SETTING_NAMES, f"{names}: {token} is not a setting"


# the namespace pattern examples --------------------------------------------------------------------
def _example_tables(header0: str) -> list[Table]:
    return [t for t in _tables(_text()) if t.header and t.header[0] == header0]


def test_pattern_examples_hold() -> None:
    tables = _example_tables("Pattern")
    assert tables and tables[0].rows
    for cells in tables[0].rows:
        pattern = _unquote(cells[0])
        for name in _CODE.findall(cells[1]):
            assert matches(pattern, name), f"{pattern} should match {name}"
        for name in _CODE.findall(cells[2]):
            assert not matches(pattern, name), f"{pattern} should not match {name}"


def test_from_upstream_worked_examples_hold() -> None:
    tables = _example_tables("Upstream entry")
    assert tables and len(tables[0].rows) >= 3
    for cells in tables[0].rows:
        entry, converted = _unquote(cells[0]), _unquote(cells[1])
        assert from_upstream(entry) == converted, (
            f"from_upstream({entry!r}) is {from_upstream(entry)!r}, the docs say {converted!r}"
        )
        for name in _CODE.findall(cells[2]):
            assert matches(converted, name), f"{converted} should match {name}"
        for name in _CODE.findall(cells[3]):
            assert not matches(converted, name), f"{converted} should not match {name}"


# rendering of kinds of setting the model does not have yet --------------------------------------
def test_reference_of_other_types() -> None:
    import enum
    from typing import Literal

    from pydantic import BaseModel, Field, SecretStr
    from pydantic_settings import BaseSettings, SettingsConfigDict

    class Colour(enum.Enum):
        RED = "red"
        BLUE = "blue"

    class Rule(BaseModel):
        pattern: str

    class Inner(BaseModel):
        """[outer.inner]: deeper things."""

        depth: int = Field(3, ge=1, description="How deep.")

    class Outer(BaseModel):
        """[outer]: outer things."""

        names: list[str] = Field(default_factory=lambda: ["a", "b"], description="Names.")
        inner: Inner = Field(default_factory=Inner)

    class Model(BaseSettings):
        model_config = SettingsConfigDict(env_prefix="X_", env_nested_delimiter="__")
        SKIP_LIST: list[str] = Field(default_factory=list, description="Skip.")
        OPTS: dict[str, list[str]] = Field(
            default_factory=lambda: {"a.b": ["x"], "c": []}, description="Options."
        )
        PORT: int | None = Field(None, description="A port.")
        RATIO: float = Field(0.5, gt=0, lt=1, description="A ratio.")
        MODE: Literal[1, 2] = Field(1, description="A mode.")
        COLOUR: Colour = Field(Colour.RED, description="A colour.")
        RULES: list[Rule] = Field(default_factory=lambda: [Rule(pattern="a.*")], description="R.")
        TOKEN: SecretStr = Field(SecretStr("abc"), description="A token.")
        outer: Outer = Field(default_factory=Outer)

    got = {d.name: (d.type_cell, d.default, d.env, d.table) for d in settings_reference(Model)}
    assert got == {
        "SKIP_LIST": ("list[str]", "[]", "X_SKIP_LIST", ""),
        "OPTS": ("table[str, list[str]]", '{ "a.b" = ["x"], c = [] }', "X_OPTS", ""),
        "PORT": ("int", "unset", "X_PORT", ""),
        "RATIO": ("float (> 0, < 1)", "0.5", "X_RATIO", ""),
        "MODE": ("1 | 2", "1", "X_MODE", ""),
        "COLOUR": ('"red" | "blue"', '"red"', "X_COLOUR", ""),
        "RULES": ("list[table]", '[{ pattern = "a.*" }]', "X_RULES", ""),
        "TOKEN": ("secret", '"***"', "X_TOKEN", ""),
        "outer.names": ("list[str]", '["a", "b"]', "X_OUTER__NAMES", "outer"),
        "outer.inner.depth": ("int (>= 1)", "3", "X_OUTER__INNER__DEPTH", "outer.inner"),
    }
    md = render_markdown(settings_reference(Model))
    assert "### `[outer.inner]`\n\nDeeper things." in md
    assert "| `MODE` | `1 \\| 2` | `1` | `X_MODE` | A mode. |" in md
