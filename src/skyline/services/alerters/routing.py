"""Which channels an anomaly alerts on: the ALERTS rules, matched with the one pattern
matcher (skyline.core.patterns).

Every channel with a matching rule fires, once; per channel the first matching rule in
file order decides the expiration and options. So a specific rule written before a general
one for the same channel overrides it (upstream earthgecko's first-match-wins, per channel),
while rules for different channels add up (as Etsy's loop over every rule did).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from skyline.core.patterns import PatternSet
from skyline.settings.alerts import AlertRule


@dataclass(frozen=True)
class Route:
    channel: str
    rule: int  # index in ALERTS
    expiration: int
    options: dict[str, Any] = field(default_factory=dict)


class Router:
    def __init__(self, rules: Sequence[AlertRule], enabled: Iterable[str]):
        on = set(enabled)
        # a rule for a disabled channel is refused by the settings; kept out here anyway so
        # a channel turned off at run time (alert test, tests) is never routed to
        self._rules = [(i, r) for i, r in enumerate(rules) if r.channel in on]
        self._patterns = PatternSet(r.pattern for _, r in self._rules)

    def routes(self, metric: str) -> list[Route]:
        seen: set[str] = set()
        out: list[Route] = []
        for j in self._patterns.all(metric):
            i, r = self._rules[j]
            if r.channel in seen:
                continue
            seen.add(r.channel)
            out.append(Route(r.channel, i, r.expiration, dict(r.options)))
        return out
