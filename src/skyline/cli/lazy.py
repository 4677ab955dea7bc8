"""A click.Choice whose choices are computed when first needed, so `skyline --help` and every
unrelated command do not import the services and the algorithm library just to list names."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import click


class LazyChoice(click.Choice):
    def __init__(self, load: Callable[[], Sequence[str]], case_sensitive: bool = True):
        self._load = load
        self._loaded: Sequence[str] | None = None
        super().__init__([], case_sensitive=case_sensitive)

    @property  # type: ignore[override]
    def choices(self) -> Sequence[str]:
        if self._loaded is None:
            self._loaded = tuple(self._load())
        return self._loaded

    @choices.setter
    def choices(self, value: Any) -> None:  # click.Choice.__init__ assigns []; ignore it
        pass
