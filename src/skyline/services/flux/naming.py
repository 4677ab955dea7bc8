"""Names of labelled series coming from protocols whose label keys are free text (Influx tag
keys, OpenTelemetry attribute keys): keys are made valid Prometheus label names the way
Prometheus' own OTLP translation does (every other character becomes '_', a leading digit gets
a '_' in front), and the suffix is the one spelling `skyline.ingest.labelled_name` gives."""

from __future__ import annotations

import re
from collections.abc import Mapping

from skyline.ingest.names import escape_label_value

_LABEL_OK = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_LABEL_BAD_CHAR = re.compile(r"[^A-Za-z0-9_]")


def label_name(key: str) -> str:
    if _LABEL_OK.match(key):
        return key
    fixed = _LABEL_BAD_CHAR.sub("_", key)
    return "_" + fixed if not fixed or fixed[0].isdigit() else fixed


def label_suffix(labels: Mapping[str, str]) -> str:
    """`{k="v",...}` with keys sorted (keys must already be valid label names); "" for none.

    Computed once per line or data point and shared by its fields, instead of calling
    labelled_name for each; tests check the two agree."""
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{escape_label_value(labels[k])}"' for k in sorted(labels)) + "}"
