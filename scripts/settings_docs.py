"""Regenerate the settings reference tables in docs/settings.md from the Settings model.

Run after adding or changing a setting: `python scripts/settings_docs.py` (or `make docs`).
The rest of the page is hand-written and left alone.
"""

from __future__ import annotations

import sys
from pathlib import Path

from skyline.settings.reference import render_markdown, settings_reference

START = "<!-- settings-reference:start -->"
END = "<!-- settings-reference:end -->"


def main() -> int:
    path = Path(__file__).resolve().parent.parent / "docs" / "settings.md"
    text = path.read_text()
    if START not in text or END not in text:
        print(f"{path}: markers {START} / {END} not found", file=sys.stderr)
        return 1
    head, rest = text.split(START, 1)
    _old, tail = rest.split(END, 1)
    new = f"{head}{START}\n{render_markdown(settings_reference()).strip()}\n{END}{tail}"
    if new != text:
        path.write_text(new)
        print(f"updated {path}")
    else:
        print(f"{path} already up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
