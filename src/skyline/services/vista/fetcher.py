"""One pull of one configured query: the window to fetch, the names to store the series as,
what is new since the last pull, and the bookkeeping that survives a restart.

The window runs from where the last pull of this query ended (a little before, since a
remote may fill its last bucket late) to now, at most `backfill` seconds long: a Vista that
was stopped or behind fetches everything it missed within that, in one go. Points at or
before a series' newest stored point are dropped, and so are points of the current,
incomplete minute (VISTA_DO_NOT_SUBMIT_CURRENT_MINUTE): they are fetched again, complete, by a
later pull. The bookkeeping is written only after the points are in the hot store, so a
crash in between refetches rather than loses.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from skyline.ingest.names import labelled_name
from skyline.remote import Remote, RemoteClient, RemoteSeries
from skyline.runtime.context import Context
from skyline.settings.vista import VistaFetch
from skyline.store import keys

log = logging.getLogger(__name__)

PROTOCOL = "vista"
#: how far before the end of the last window a pull starts again: remotes fill their newest
#: bucket late (Graphite's carbon cache, Prometheus' scrape lag)
OVERLAP_STEPS = 2


def remote_of(fetch: VistaFetch, default_timeout: float, max_body_bytes: int) -> Remote:
    return Remote(
        kind=fetch.source, url=fetch.url, user=fetch.user,
        password=fetch.password.get_secret_value() if fetch.password else "",
        token=fetch.token.get_secret_value() if fetch.token else "",
        timeout=fetch.timeout or default_timeout, max_body_bytes=max_body_bytes)


def is_plain_path(target: str) -> bool:
    """A Graphite target that names one series (no glob, no function): these can share one
    render request, since each answer's target is the path asked for."""
    return not any(c in target for c in "*?[]{}(),")


def step_of(fetch: VistaFetch) -> float:
    return fetch.step or fetch.frequency


def local_name(fetch: VistaFetch, series: RemoteSeries, single: bool) -> str | None:
    """The name a remote series is stored as (None: no name can be given to it)."""
    prefix = f"{fetch.namespace_prefix}." if fetch.namespace_prefix else ""
    if fetch.source == "graphite":
        name = fetch.metric if (fetch.metric and single) else series.name
        return prefix + name if name else None
    labels = dict(series.labels)
    name = labels.pop("__name__", "") or fetch.metric
    if not name:
        return None
    return prefix + labelled_name(name, labels)


@dataclass
class Window:
    start: float
    end: float
    cutoff: float  # points at or after this are not stored yet


def window(fetch: VistaFetch, last_end: float | None, now: float, backfill: float,
           skip_current_minute: bool) -> Window:
    earliest = now - backfill
    step = step_of(fetch)
    start = earliest if last_end is None else max(earliest, last_end - OVERLAP_STEPS * step)
    if fetch.source == "prometheus":
        # Prometheus evaluates at start + k * step: aligned starts give every pull the same
        # timestamps, so one series keeps a regular spacing across pulls
        start = math.floor(start / step) * step
    cutoff = math.floor(now / 60) * 60 if skip_current_minute else now + 1
    return Window(start, now, cutoff)


@dataclass
class PullResult:
    series: int = 0
    fetched: int = 0
    new: int = 0
    accepted: int = 0
    unnamed: int = 0


class Fetcher:
    """Pulls for every configured query of one Skyline process."""

    def __init__(self, ctx: Context, client: RemoteClient):
        self.ctx = ctx
        self.client = client
        s = ctx.settings
        self.backfill = float(s.vista.backfill or s.FULL_DURATION)
        self.skip_current_minute = s.VISTA_DO_NOT_SUBMIT_CURRENT_MINUTE
        self.tel = ctx.telemetry("vista")

    def remote(self, fetch: VistaFetch) -> Remote:
        s = self.ctx.settings.vista
        return remote_of(fetch, s.timeout, s.max_body_bytes)

    # bookkeeping ------------------------------------------------------------------------------
    def _last(self, fields: Sequence[str]) -> list[float | None]:
        if not fields:
            return []
        raw = self.ctx.client.hmget(keys.VISTA_LAST, list(fields))
        return [None if r is None else float(r) for r in raw]

    def _remember(self, values: dict[str, float]) -> None:
        if values:
            self.ctx.client.hset(keys.VISTA_LAST, mapping={k: repr(v) for k, v in values.items()})

    # one pull ---------------------------------------------------------------------------------
    async def pull(self, fetches: Sequence[VistaFetch], now: float) -> PullResult:
        """Fetch, filter and store one query, or several plain Graphite paths of one remote
        (one render request); RemoteError when the remote fails."""
        remote = self.remote(fetches[0])
        fetch_fields = [f"fetch {f.key}" for f in fetches]
        lasts = await asyncio.to_thread(self._last, fetch_fields)
        windows = [window(f, last, now, self.backfill, self.skip_current_minute)
                   for f, last in zip(fetches, lasts, strict=True)]
        start = min(w.start for w in windows)
        first = fetches[0]
        if first.source == "graphite":
            got = await self.client.graphite(remote, [f.query for f in fetches], start, now)
            by_fetch = self._match_graphite(fetches, got)
        else:
            got = await self.client.prometheus(remote, first.query, start, now, step_of(first))
            by_fetch = [(first, got)]
        result = PullResult(series=len(got))
        names: list[str] = []
        parts: list[tuple[np.ndarray, np.ndarray]] = []
        for fetch, series_list in by_fetch:
            for series in series_list:
                name = local_name(fetch, series, single=len(series_list) == 1)
                if name is None:
                    result.unnamed += 1
                    continue
                names.append(name)
                parts.append((series.timestamps, series.values))
        if result.unnamed:
            self.tel.incr("unnamed_series", result.unnamed)
            log.warning("vista: %d series of %s %s have no __name__ and the fetch sets no "
                        "metric: not stored", result.unnamed, remote.shown_url, first.query)
        cutoff = windows[0].cutoff
        series_last = await asyncio.to_thread(self._last, [f"series {n}" for n in names])
        all_names: list[str] = []
        ts_parts, vs_parts = [], []
        newest: dict[str, float] = {}
        for name, (ts, vs), last in zip(names, parts, series_last, strict=True):
            result.fetched += int(ts.size)
            keep = ts < cutoff
            if last is not None:
                keep &= ts > last
            if not keep.any():
                continue
            t, v = ts[keep], vs[keep]
            all_names += [name] * int(t.size)
            ts_parts.append(t)
            vs_parts.append(v)
            newest[name] = float(t[-1])
        result.new = len(all_names)
        stored_ok = True
        if all_names:
            await self.ctx.ingest.wait_writable()  # backpressure: wait while the store is behind
            sub = self.ctx.ingest.submit(PROTOCOL, all_names, np.concatenate(ts_parts),
                                         np.concatenate(vs_parts), with_reasons=True)
            result.accepted = sub.accepted
            if sub.rejected.get("buffer_full"):
                # not stored: leave the bookkeeping, so the next pull fetches them again
                stored_ok = False
                full = {n for n, r in zip(all_names, sub.reasons or [], strict=True)
                        if r == "buffer_full"}
                newest = {n: t for n, t in newest.items() if n not in full}
            # the bookkeeping is written once the points are in Redis (see the module's doc)
            await asyncio.to_thread(self.ctx.points.flush)
        done = {f"series {n}": t for n, t in newest.items()}
        if stored_ok:
            done.update({field: min(w.cutoff, now) for field, w in
                         zip(fetch_fields, windows, strict=True)})
        await asyncio.to_thread(self._remember, done)
        self.tel.incr("pulls")
        self.tel.incr("points_fetched", result.fetched)
        self.tel.incr("points_new", result.new)
        return result

    @staticmethod
    def _match_graphite(fetches: Sequence[VistaFetch], got: list[RemoteSeries]
                        ) -> list[tuple[VistaFetch, list[RemoteSeries]]]:
        if len(fetches) == 1:
            return [(fetches[0], got)]
        # plain paths only (is_plain_path): each answer's target is the path asked for
        by_target: dict[str, list[RemoteSeries]] = {}
        for s in got:
            by_target.setdefault(s.name, []).append(s)
        return [(f, by_target.get(f.query, [])) for f in fetches]
