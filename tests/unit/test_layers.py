"""The layers of design.md: imports flow downward only, and services do not import each other
(the web app mounting the flux router is the one allowed exception)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import skyline

ROOT = Path(skyline.__file__).parent

# lowest first; a module may import its own layer and any layer below it
LAYERS: list[set[str]] = [
    {"skyline", "skyline.core"},
    {"skyline.store", "skyline.settings"},
    {"skyline.events", "skyline.telemetry", "skyline.runtime", "skyline.ingest",
     "skyline.algorithms", "skyline.plots", "skyline.snab", "skyline.analysis",
     "skyline.remote", "skyline.alerting"},
    {"skyline.services"},
    {"skyline.cli"},
]
# within the store|settings layer, settings is the lower: the store reads settings
SAME_LAYER_FORBIDDEN = {("skyline.settings", "skyline.store")}
ALLOWED_SERVICE_IMPORTS = {("webapp", "flux")}


def _package(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else parts[0]


def _layer(module: str) -> int:
    pkg = _package(module)
    for i, layer in enumerate(LAYERS):
        if pkg in layer:
            return i
    raise AssertionError(f"{module} is in no layer: add its package to LAYERS (design.md)")


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append(node.module)
    return [m for m in out if m == "skyline" or m.startswith("skyline.")]


def _modules():
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts.pop()
        yield ".".join(parts), path


def test_every_package_is_in_a_layer():
    for module, _ in _modules():
        _layer(module)


def test_imports_flow_downward():
    problems = []
    for module, path in _modules():
        mine = _layer(module)
        for imported in _imports(path):
            theirs = _layer(imported)
            if theirs > mine:
                problems.append(f"{module} imports {imported} from a higher layer")
            if (_package(module), _package(imported)) in SAME_LAYER_FORBIDDEN:
                problems.append(f"{module} imports {imported}")
    assert not problems, "\n".join(problems)


def test_services_do_not_import_each_other():
    problems = []
    for module, path in _modules():
        parts = module.split(".")
        if len(parts) < 3 or parts[1] != "services":
            continue
        for imported in _imports(path):
            iparts = imported.split(".")
            if len(iparts) >= 3 and iparts[1] == "services" and iparts[2] != parts[2]:
                if (parts[2], iparts[2]) not in ALLOWED_SERVICE_IMPORTS:
                    problems.append(f"{module} imports {imported}")
    assert not problems, "\n".join(problems)


def test_the_check_catches_an_upward_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from skyline.cli.main import cli\n")
    assert _layer("skyline.core.bad") < _layer(_imports(bad)[0])



# independence rules within the shared-logic layer (design.md, "Algorithms": pure)
ONLY = {"skyline.algorithms": {"skyline.algorithms", "skyline.core"}}


def test_algorithms_are_pure_and_import_only_core():
    problems = []
    for module, path in _modules():
        allowed = ONLY.get(_package(module))
        if allowed is None:
            continue
        for imported in _imports(path):
            if _package(imported) not in allowed:
                problems.append(f"{module} imports {imported}")
    assert not problems, "\n".join(problems)


def test_the_analysis_package_never_imports_a_service():
    problems = [f"{module} imports {imported}" for module, path in _modules()
                if _package(module) == "skyline.analysis"
                for imported in _imports(path) if _package(imported) == "skyline.services"]
    assert not problems, "\n".join(problems)


def test_docs_design_lists_the_layers_enforced_here():
    """docs/design.md's layer table names exactly the packages of each layer above."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "design.md").read_text()
    rows = {"core": 0, "store, settings": 1, "shared logic": 2, "services": 3, "cli": 4}
    for label, index in rows.items():
        [line] = [ln for ln in doc.splitlines() if ln.startswith(f"| {label} |")]
        named = set(re.findall(r"`(skyline(?:\.[a-z_]+)?)", line.split("|")[2]))
        expected = LAYERS[index] - {"skyline"}
        if label == "services":
            expected = {"skyline.services"}
        assert named == expected, f"docs/design.md layer {label!r}: {sorted(named)} != {sorted(expected)}"
