"""README's command list names every `skyline` command (issue 17: `skyline user` was missing)."""

from __future__ import annotations

import re
from pathlib import Path

import click

from skyline.cli.main import cli

README = Path(__file__).resolve().parents[2] / "README.md"


def _leaves(group: click.Group, prefix: str) -> list[str]:
    out = []
    for name, cmd in group.commands.items():
        path = f"{prefix} {name}"
        out += _leaves(cmd, path) if isinstance(cmd, click.Group) else [path]
    return out


def test_readme_lists_every_command() -> None:
    text = README.read_text()
    block = text[text.index("## Command line"):]
    block = block[block.index("```") + 3:]
    block = block[:block.index("```")]
    listed = set()
    for line in block.splitlines():
        words = line.split()
        if len(words) < 2 or words[0] != "skyline":
            continue
        # "skyline silence add ... | list | remove ID": the group's alternatives after '|'
        listed.add(" ".join(words[:3]) if len(words) > 2 else " ".join(words[:2]))
        listed.add(" ".join(words[:2]))
        group = " ".join(words[:2])
        for alt in re.findall(r"\|\s*([a-z][a-z-]*)\b", line):
            listed.add(f"{group} {alt}")
    missing = [c for c in _leaves(cli, "skyline") if c not in listed]
    assert missing == [], f"README.md's command list lacks {missing}"
