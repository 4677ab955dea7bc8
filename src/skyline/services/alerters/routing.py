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

from skyline.analysis.boundary import BoundaryRules
from skyline.core.events import AnomalyEvent
from skyline.core.patterns import PatternSet
from skyline.settings.alerts import AlertRule
from skyline.settings.boundary import BoundaryAlerterOpts, BoundaryRule


@dataclass(frozen=True)
class Route:
    channel: str
    rule: int  # index in ALERTS
    expiration: int
    options: dict[str, Any] = field(default_factory=dict)
    # keeps this source's alert state on the metric apart (de-duplication, open alerts)
    scope: str = ""
    # (limit, window seconds) of this source's share of the channel (BOUNDARY_ALERTER_OPTS)
    share: tuple[int, int] | None = None
    group: str = "metric"  # metric | incident (AlertRule.group)


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
            out.append(Route(r.channel, i, r.expiration, dict(r.options), group=r.group))
        return out


class BoundaryRouter:
    """Boundary's events alert on the channels of the rule that fired (upstream's
    'smtp|slack' of a BOUNDARY_METRICS tuple), not through ALERTS: the rule is the last one
    matching the metric for the event's algorithm, as when it was judged. Each channel's
    share of Boundary alerts is limited by BOUNDARY_ALERTER_OPTS."""

    def __init__(self, rules: Sequence[BoundaryRule], opts: BoundaryAlerterOpts,
                 enabled: Iterable[str]):
        self._rules = BoundaryRules(rules)
        self._opts = opts
        self._on = set(enabled)

    def routes(self, event: AnomalyEvent) -> list[Route]:
        algorithm = event.results[0].algorithm if event.results else (
            event.triggered[0] if event.triggered else "")
        i = self._rules.for_metric(event.metric).get(algorithm)
        if i is None:
            return []  # the rule is gone (settings changed since)
        r = self._rules.rules[i]
        return [Route(c, i, r.expiration, {}, scope=f"boundary.{algorithm}",
                      share=self._opts.limit(c))
                for c in r.channels if c in self._on]
