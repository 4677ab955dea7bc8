"""Metric names.

A name is a dotted Graphite name (`web.host1.requests`). A labelled series is written
`name{k="v",...}` with labels sorted by name and values escaped as Prometheus escapes them
(backslash, double quote, newline), so one series always has one spelling. The charset and
length rules apply to the part before `{`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

#: characters allowed in the part before `{`: upstream flux's set plus '@' and '#'-free
NAME_CHARS = r"A-Za-z0-9_\-.:+%/=@"
_NAME = re.compile(rf"^[{NAME_CHARS}]+$")
_LABEL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_LABEL_PAIR = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"')


def escape_label_value(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def unescape_label_value(v: str) -> str:
    out = []
    i = 0
    while i < len(v):
        c = v[i]
        if c == "\\" and i + 1 < len(v):
            nxt = v[i + 1]
            out.append("\n" if nxt == "n" else nxt)
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)


def labelled_name(name: str, labels: Mapping[str, str]) -> str:
    """The one spelling of a labelled series; no labels gives the bare name."""
    if not labels:
        return name
    body = ",".join(f'{k}="{escape_label_value(str(labels[k]))}"' for k in sorted(labels))
    return f"{name}{{{body}}}"


def split_labelled(full: str) -> tuple[str, dict[str, str] | None]:
    """(base name, labels) of a name; labels None when the `{...}` part is malformed."""
    brace = full.find("{")
    if brace < 0:
        return full, {}
    base, rest = full[:brace], full[brace:]
    if not rest.endswith("}"):
        return base, None
    body = rest[1:-1]
    labels: dict[str, str] = {}
    pos = 0
    while pos < len(body):
        m = _LABEL_PAIR.match(body, pos)
        if not m:
            return base, None
        labels[m.group(1)] = unescape_label_value(m.group(2))
        pos = m.end()
        if pos < len(body):
            if body[pos] != ",":
                return base, None
            pos += 1
            if pos == len(body):
                return base, None
    return base, labels


def name_problem(name: str, max_length: int = 1024, max_labels_length: int = 4096) -> str | None:
    """Why a name is refused (a short reason used as a counter name), or None when valid."""
    if not name:
        return "empty_name"
    base, labels = split_labelled(name)
    if len(base) > max_length:
        return "name_too_long"
    if not _NAME.match(base):
        return "bad_name_chars"
    if base[0] == "." or base[-1] == "." or ".." in base:
        return "empty_name_element"
    if labels is None:
        return "bad_labels"
    if labels:
        if len(name) - len(base) > max_labels_length:
            return "labels_too_long"
        if labelled_name(base, labels) != name:
            return "labels_not_canonical"
    return None
