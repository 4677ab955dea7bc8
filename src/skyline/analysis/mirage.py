"""The Mirage stage: a second opinion on a candidate from a week (or up to 30 days) of history.

The analyzer sees FULL_DURATION (a day). A nightly job or a Monday peak looks anomalous in a
day and normal in a week. For a metric with a second-order resolution (`[[mirage.namespaces]]`
or the `second_order_resolution_hours` of an ALERTS rule, upstream's fourth element), Mirage
takes its merged history (the long history's MIRAGE_ANALYSIS_RESOLUTION buckets plus the recent
raw points bucketed alike) over those hours and:

1. judges the candidate with the analyzer's own judgement (analysis.judge.Judge with the
   analyzer's detector and algorithms; a learning detector is judged by the score detector):
   the series judged is each earlier bucket's max (a candidate above its band) or min (below),
   then the candidate's own value. Extremes, not means: a one-minute spike is compared with
   the week's one-minute spikes, not diluted in a ten-minute mean. Not anomalous there -> veto;
2. upstream's MIRAGE_CHECK_REPETITIVE_DAILY_PEAKS: when the history spans more than 5.25 days
   and at least N earlier days had a similar peak (the extreme within mirage.peak_window of
   the same time of day went at least half as far from the week's median) and this one is
   within their range (at most 10 % further than the largest) -> veto;
3. else confirm.

It abstains (fail open) for metrics without a second-order resolution, with less than
mirage.min_history_hours of history, for counters (the analyzer judged their rate, the
history holds the raw counter), and when the deadline has passed. Live, it reads the hot store
(two GETs, one round trip); in replay, the candidate's history is the replayed series itself,
bucketed the same way, so replay gives the verdict live would have given.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import math
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from skyline.algorithms import AnalysisParams, Status
from skyline.analysis.judge import Judge
from skyline.analysis.stages import Candidate, StageContext
from skyline.core.errors import InvalidInput, PatternError, RemoteError
from skyline.core.events import StageVerdict
from skyline.core.patterns import PatternSet
from skyline.core.timeutil import iso
from skyline.core.types import FloatArray
from skyline.remote import Remote, RemoteClient, one_series
from skyline.store import history as hist
from skyline.store import keys
from skyline.store.series import decode, normalise
from skyline.telemetry import Telemetry

log = logging.getLogger(__name__)

NAME = "mirage"
DAY = 86400.0
PEAK_DAYS_NEEDED = 5.25  # upstream: the daily-peaks rule needs more than this much history
RANGE_MARGIN = 1.1  # "within their range": at most this much further than the largest peak
SIMILAR = 0.5  # a peak is similar when it went at least this fraction as far
READ_CHUNK = 500  # metrics read from the hot store in one round trip
REMOTE_STEP = 60.0  # Prometheus query_range step: fine enough for the buckets' min and max
CACHE_MAX = 10_000  # remote histories kept per process

# write a back-filled history only if it is still the one read (the roomba may have moved
# buckets into it meanwhile): KEYS[1] history; ARGV[1] SHA1 of what was read ("" = none)
_AUTOFILL = """
local cur = redis.call('GET', KEYS[1])
local sha = ''
if cur then sha = redis.sha1hex(cur) end
if sha ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2])
return 1
"""


@dataclass(frozen=True)
class RemoteScope:
    """A remote Graphite or Prometheus holding the long history of a namespace's metrics."""

    remote: Remote
    query: str = "{metric}"
    strip_prefix: str = ""

    def query_for(self, metric: str) -> str:
        name = metric[len(self.strip_prefix):] \
            if self.strip_prefix and metric.startswith(self.strip_prefix) else metric
        return self.query.replace("{metric}", name)


@dataclass(frozen=True)
class MirageRules:
    """Which metrics Mirage judges, on how many hours: (pattern, hours), first match wins;
    remotes[i], when given, is where scope i's long history comes from."""

    scopes: tuple[tuple[str, float], ...] = ()
    remotes: tuple[RemoteScope | None, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "_sets", tuple((PatternSet((p,)), h) for p, h in self.scopes))

    def match(self, metric: str) -> tuple[float, RemoteScope | None] | None:
        for i, (ps, h) in enumerate(self._sets):  # type: ignore[attr-defined]
            if ps.any(metric):
                return h, (self.remotes[i] if i < len(self.remotes) else None)
        return None

    def hours(self, metric: str) -> float | None:
        m = self.match(metric)
        return None if m is None else m[0]


@dataclass
class MirageStage:
    rules: MirageRules
    params: AnalysisParams
    resolution: int = 600
    daily_peaks: int = 3
    peak_window: float = 3600.0
    min_history: float = 48 * 3600.0
    client: Any = None
    remote_max_concurrent: int = 4
    remote_cache: float = 3600.0
    autofill: bool = False
    fetch_budget: float = 1.0  # seconds the remote fetches of one call may take (stage_budget)
    periodic: tuple[str, ...] = ()  # MIRAGE_PERIODIC_CHECK_NAMESPACES (when the check is on)
    periodic_interval: float = 3600.0
    always: tuple[str, ...] = ()  # MIRAGE_ALWAYS_METRICS
    name: str = NAME

    def __post_init__(self) -> None:
        if self.resolution <= 0:
            raise InvalidInput("mirage resolution must be positive")
        self._judges: dict[float, Judge] = {}
        self._cache: dict[str, tuple[float, hist.Buckets]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._remote: RemoteClient | None = None
        self.telemetry = Telemetry("mirage", "local")  # remote_requests, remote_errors_*
        self.autofilled = 0
        self._drained: dict[str, float] = {}
        self._periodic_last: dict[str, float] = {}
        self._periodic_set = PatternSet(self.periodic) if self.periodic else None
        self._always_set = PatternSet(self.always) if self.always else None

    @property
    def looks_unflagged(self) -> bool:
        """Whether wants() can ask for points the analyzer did not flag."""
        return self._periodic_set is not None or self._always_set is not None

    def wants(self, metrics: Sequence[str], timestamps: FloatArray) -> list[bool]:
        """Which newest points the analyzer did not flag Mirage judges all the same:
        MIRAGE_ALWAYS_METRICS every time, MIRAGE_PERIODIC_CHECK_NAMESPACES once every
        periodic_interval seconds of the metric's time (remembered per analyzer process);
        only metrics with a second-order resolution."""
        out = [False] * len(metrics)
        if not self.looks_unflagged or not len(metrics):
            return out
        always = set(self._always_set.filter(metrics)) if self._always_set else set()
        periodic = set(self._periodic_set.filter(metrics)) if self._periodic_set else set()
        for i, m in enumerate(metrics):
            if (m not in always and m not in periodic) or self.rules.match(m) is None:
                continue
            t = float(timestamps[i])
            if m in always:
                out[i] = True
                continue
            last = self._periodic_last.get(m)
            if last is None or t - last >= self.periodic_interval or t < last:
                self._periodic_last[m] = t
                out[i] = True
        return out

    # -- history -------------------------------------------------------------------------

    def _window(self, candidate: Candidate, span: float) -> tuple[float, float]:
        end = math.floor(candidate.timestamp / self.resolution) * self.resolution
        return end - span, end

    def _read(self, metrics: Sequence[str]) -> dict[str, tuple[bytes | None, bytes | None]]:
        """The history and raw series of each metric, in one round trip per READ_CHUNK."""
        out: dict[str, tuple[bytes | None, bytes | None]] = {}
        names = list(dict.fromkeys(metrics))
        for lo in range(0, len(names), READ_CHUNK):
            part = names[lo:lo + READ_CHUNK]
            pipe = self.client.pipeline(transaction=False)
            for m in part:
                pipe.get(keys.history(m))
                pipe.get(keys.series(m))
            got = pipe.execute()
            for i, m in enumerate(part):
                out[m] = (got[2 * i], got[2 * i + 1])
        return out

    def _from_raw(self, raw_hist: bytes | None, raw_series: bytes | None, start: float,
                  end: float) -> hist.Buckets:
        old, recent = self._parts(raw_hist, raw_series)
        return hist.merge(old, recent).window(start, end)

    def _parts(self, raw_hist: bytes | None, raw_series: bytes | None
               ) -> tuple[hist.Buckets | None, hist.Buckets]:
        """(the stored long history or None, the raw series' buckets)."""
        old: hist.Buckets | None = None
        if raw_hist is not None:
            try:
                old = hist.decode(raw_hist)
            except hist.CorruptHistory:
                old = None  # the roomba replaces it; judge on the raw points alone
        t, v, _ = decode(raw_series)
        t, v = normalise(t, v)
        # float sums: judged, never stored (a back-fill stores only the remote's buckets)
        return old, hist.bucketise(t, v, self.resolution, exact=False)

    def merged(self, candidate: Candidate, span: float) -> hist.Buckets:
        """The metric's buckets over `span` seconds before the candidate, its own bucket
        excluded (it is judged by the candidate's value)."""
        start, end = self._window(candidate, span)
        if candidate.history is not None:
            t, v = candidate.history(start, candidate.timestamp)
            return hist.bucketise(t, v, self.resolution, exact=False).window(start, end)
        if self.client is None:
            return hist.Buckets.empty(self.resolution)
        raw_hist, raw_series = self._read([candidate.metric])[candidate.metric]
        return self._from_raw(raw_hist, raw_series, start, end)

    # -- the check -----------------------------------------------------------------------

    def check(self, candidate: Candidate, deadline: float) -> StageVerdict:
        return self.check_many([candidate], deadline)[0]

    def check_many(self, candidates: Sequence[Candidate], deadline: float
                   ) -> list[StageVerdict]:
        """The verdict on each candidate: the hot store read in one round trip (per
        READ_CHUNK metrics), the histories judged together (one Judge call per span)."""
        out: list[StageVerdict | None] = [None] * len(candidates)
        spans: list[float] = [0.0] * len(candidates)
        remotes: list[RemoteScope | None] = [None] * len(candidates)
        live: list[int] = []
        for i, c in enumerate(candidates):
            m = self.rules.match(c.metric)
            if m is None:
                out[i] = StageVerdict(self.name, "abstain",
                                      "no second-order resolution for this metric")
                continue
            spans[i] = m[0] * 3600.0
            if c.history is None:
                live.append(i)
                remotes[i] = m[1]
        raws = self._read([candidates[i].metric for i in live]) \
            if live and self.client is not None else {}
        # what Skyline holds itself; a remote is asked only for what that does not cover
        parts: dict[int, tuple[bytes | None, hist.Buckets | None, hist.Buckets]] = {}
        jobs: list[tuple[str, RemoteScope, float, float]] = []
        for i in live:
            if out[i] is not None or self.client is None:
                continue
            c = candidates[i]
            raw_hist, raw_series = raws[c.metric]
            old, recent = self._parts(raw_hist, raw_series)
            local = hist.merge(old, recent)
            parts[i] = (raw_hist, old, local)
            start, end = self._window(c, spans[i])
            scope = remotes[i]
            if scope is not None and (not len(local) or
                                      local.timestamps[0] > start + self.resolution):
                jobs.append((c.metric, scope, start, end))
            else:
                remotes[i] = None
        fetched = self._fetch_remotes(jobs, deadline)
        todo: list[tuple[int, hist.Buckets, bool, float]] = []
        for i, c in enumerate(candidates):
            if out[i] is not None:
                continue
            start, end = self._window(c, spans[i])
            if i not in parts:
                b = self.merged(c, spans[i])
            else:
                raw_hist, old, local = parts[i]
                scope = remotes[i]
                if scope is not None:
                    got = fetched.get(c.metric)
                    if not isinstance(got, hist.Buckets):
                        err = got if isinstance(got, RemoteError) else RemoteError(
                            "error", scope.remote.shown_url, f"{got!r}")
                        out[i] = StageVerdict(
                            self.name, "abstain",
                            f"remote history from {scope.remote.kind} {err.url} unavailable "
                            f"({err.reason}: {err.detail})"[:300])
                        continue
                    older = _before(got, local)
                    if self.autofill and len(older):
                        self._autofill(c.metric, raw_hist, old, older)
                    local = hist.merge(older, local)
                b = local.window(start, end)
            early = self._early(c, b)
            if early is not None:
                out[i] = early
                continue
            todo.append((i, b, _direction(c, b), float(c.timestamp - b.timestamps[0])))
        if todo and time.monotonic() > deadline:
            for i, *_ in todo:
                out[i] = StageVerdict(self.name, "abstain", "abstained: no budget left")
            todo = []
        for span in sorted({spans[i] for i, *_ in todo}):
            group = [x for x in todo if spans[x[0]] == span]
            series = []
            for i, b, up, _ in group:
                c = candidates[i]
                series.append((np.append(b.timestamps, c.timestamp),
                               np.append(b.max if up else b.min, c.value)))
            verdicts = self._judge(span).judge_series(
                [candidates[i].metric for i, *_ in group], series, now=None)
            for k, (i, b, up, covered) in enumerate(group):
                out[i] = self._decide(candidates[i], b, up, covered, span,
                                      verdicts.judgement(k))
        return [v if v is not None else StageVerdict(self.name, "abstain", "not judged")
                for v in out]

    def drain_counts(self) -> dict[str, int]:
        """Counts since the last call (Stages publishes them as stage_mirage_<what>):
        remote_requests, remote_errors_<reason>, autofilled."""
        now, _ = self.telemetry.snapshot()
        out = {k: int(v - self._drained.get(k, 0.0)) for k, v in now.items()}
        self._drained = now
        return {k: n for k, n in out.items() if n}

    # -- remote history ------------------------------------------------------------------

    def _client(self) -> tuple[asyncio.AbstractEventLoop, RemoteClient]:
        """The remote client, on an event loop of its own in a daemon thread (the stage is
        called from plain code, sometimes from a thread whose loop is running)."""
        if self._loop is None or self._remote is None:
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="mirage-remote",
                                      daemon=True)
            thread.start()
            client = RemoteClient(self.telemetry, max_concurrent=self.remote_max_concurrent,
                                  max_per_remote=self.remote_max_concurrent)
            asyncio.run_coroutine_threadsafe(client.__aenter__(), loop).result(10)
            self._loop, self._remote, self._thread = loop, client, thread
        return self._loop, self._remote

    def close(self) -> None:
        """Close the remote client and stop its thread (the analyzer's worker calls this as
        it stops; a stage that never fetched from a remote has nothing to close)."""
        loop, client, thread = self._loop, self._remote, self._thread
        self._loop = self._remote = self._thread = None
        if loop is None:
            return
        try:
            if client is not None:
                asyncio.run_coroutine_threadsafe(client.__aexit__(None, None, None),
                                                 loop).result(10)
        except Exception as e:  # noqa: BLE001 - closing is best effort
            log.warning("mirage: closing the remote client failed: %s", e)
        loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(10)
        if not loop.is_running():
            loop.close()

    def _fetch_remotes(self, jobs: Sequence[tuple[str, RemoteScope, float, float]],
                       deadline: float) -> dict[str, hist.Buckets | BaseException]:
        """Each metric's remote history in [start, end) as buckets, or why not; fetched at
        once (remote_max_concurrent at a time), never past the deadline, reused for
        remote_cache seconds."""
        out: dict[str, hist.Buckets | BaseException] = {}
        now = time.monotonic()
        todo = []
        for metric, scope, start, end in jobs:
            hit = self._cache.get(metric)
            if hit is not None and now - hit[0] < self.remote_cache and \
                    (not len(hit[1]) or hit[1].timestamps[0] <= start + self.resolution):
                out[metric] = hit[1].window(start, end)
            else:
                todo.append((metric, scope, start, end))
        if not todo:
            return out
        loop, client = self._client()
        # a step's candidates share n x the stage budget, but a slow remote must not hold
        # the analyzer that long: the fetches of one call get at most one candidate's budget
        deadline = min(deadline, time.monotonic() + self.fetch_budget)

        async def one(metric: str, scope: RemoteScope, start: float, end: float
                      ) -> hist.Buckets:
            remote = scope.remote
            left = deadline - time.monotonic()
            if left <= 0.05:
                raise RemoteError("budget", remote.shown_url, "no stage budget left to fetch")
            if not client.available(remote):
                raise RemoteError("backoff", remote.shown_url,
                                  f"failed lately; tried again in {client.retry_in(remote):.0f}"
                                  " s")
            remote = dataclasses.replace(remote, timeout=min(remote.timeout, left))
            query = scope.query_for(metric)
            series = one_series(await client.fetch(remote, query, start, end,
                                                   min(REMOTE_STEP, self.resolution)),
                                remote, query)
            return hist.bucketise(series.timestamps, series.values, self.resolution)

        async def every() -> list[hist.Buckets | BaseException]:
            return await asyncio.gather(*(one(*j) for j in todo), return_exceptions=True)

        left = max(0.0, deadline - time.monotonic())
        future = asyncio.run_coroutine_threadsafe(every(), loop)
        try:
            got = future.result(left + 1.0)  # each fetch keeps to `left` itself
        except TimeoutError:
            future.cancel()
            got = [RemoteError("timeout", j[1].remote.shown_url, "no answer within the stage "
                               "budget") for j in todo]
        when = time.monotonic()
        for (metric, _, start, end), g in zip(todo, got, strict=True):
            if isinstance(g, hist.Buckets):
                if self.remote_cache > 0:
                    if len(self._cache) >= CACHE_MAX:
                        self._cache.pop(next(iter(self._cache)))
                    self._cache[metric] = (when, g)
                out[metric] = g.window(start, end)
            else:
                out[metric] = g
        return out

    def _autofill(self, metric: str, raw_hist: bytes | None, old: hist.Buckets | None,
                  older: hist.Buckets) -> None:
        """MIRAGE_AUTOFILL_TOOSHORT: a metric with less than min_history of long history of
        its own gets the remote's older buckets written into it, once (the write is skipped
        when the roomba changed the history meanwhile; a later candidate tries again)."""
        if self.client is None:
            return
        have = 0.0 if old is None or not len(old) else \
            float(old.timestamps[-1] + self.resolution - old.timestamps[0])
        if have >= self.min_history:
            return
        sha = hashlib.sha1(raw_hist).hexdigest() if raw_hist is not None else ""
        try:
            done = self.client.eval(_AUTOFILL, 1, keys.history(metric), sha,
                                    hist.encode(hist.merge(old, older)))
        except Exception as e:  # noqa: BLE001 - back-filling is best effort
            log.warning("mirage: back-filling the history of %s failed: %s", metric, e)
            return
        if done:
            self.autofilled += 1
            self.telemetry.incr("autofilled")

    def _early(self, c: Candidate, b: hist.Buckets) -> StageVerdict | None:
        """An abstention decided before judging, or None."""
        if len(b) < 2:
            return StageVerdict(self.name, "abstain", "no history beyond the candidate")
        covered = float(c.timestamp - b.timestamps[0])
        if covered < self.min_history:
            return StageVerdict(self.name, "abstain",
                                f"only {covered / 3600:.1f} h of history "
                                f"(needs {self.min_history / 3600:g} h)",
                                {"history_hours": round(covered / 3600, 2)})
        if _looks_like_counter(b, c.value):
            return StageVerdict(self.name, "abstain",
                                "a counter: the analyzer judged its rate, the history holds "
                                "the counter itself")
        return None

    def _decide(self, candidate: Candidate, b: hist.Buckets, up: bool, covered: float,
                span: float, j: Any) -> StageVerdict:
        figures: dict[str, float] = {
            "hours": span / 3600.0, "history_hours": round(covered / 3600, 2),
            "buckets": float(len(b)), "resolution": float(self.resolution),
            "score": round(float(j.score), 6)}
        what = f"{covered / 3600:.0f} h at {self.resolution} s"
        if j.status != Status.OK.label:
            return StageVerdict(self.name, "abstain",
                                f"the history cannot be judged ({j.status})", figures)
        text = next((r.text for r in j.results if r.text), "")
        if candidate.detector == "learning" and candidate.time_of_day:
            # its daily profile fired: the value is unlike this hour on its earlier days,
            # which is the daily-peaks rule's own question, asked on more days
            return StageVerdict(self.name, "confirm", "the learning detector found it unlike "
                                "the same hour on earlier days", figures)
        if candidate.detector == "learning":
            # the learning detector judged it against its own 30-day memory (range, level,
            # transitions), which a re-judgement by range_excess on a week would only
            # overrule with less: only the daily-peaks rule, which looks at repeating peaks
            # the range and likelihood do not, may still veto
            return self._peaks_or(candidate, b, up, covered, figures, StageVerdict(
                self.name, "confirm", "judged on the learning detector's 30-day memory; "
                "no repeating daily peak", figures))
        if not j.anomalous:
            return StageVerdict(self.name, "veto",
                                f"not anomalous on {what}: {text}".rstrip(": "), figures)
        return self._peaks_or(candidate, b, up, covered, figures, StageVerdict(
            self.name, "confirm", f"anomalous on {what} too: {text}".rstrip(": "), figures))

    def _peaks_or(self, candidate: Candidate, b: hist.Buckets, up: bool, covered: float,
                  figures: dict[str, float], otherwise: StageVerdict) -> StageVerdict:
        """The repetitive daily peaks rule's veto, or `otherwise`."""
        if self.daily_peaks > 0 and covered > PEAK_DAYS_NEEDED * DAY:
            peaks, largest, dev = self._daily_peaks(b, candidate, up)
            figures["similar_peaks"] = float(peaks)
            if peaks >= self.daily_peaks and dev <= RANGE_MARGIN * largest:
                when = iso(candidate.timestamp)[11:16]
                return StageVerdict(
                    self.name, "veto",
                    f"{peaks} similar peaks near {when} on earlier days; this one "
                    f"({candidate.value:.6g}) is within their range", figures)
        return otherwise

    def _judge(self, span: float) -> Judge:
        judge = self._judges.get(span)
        if judge is None:
            params = dataclasses.replace(
                self.params, full_duration=span + self.resolution, resolution=None,
                detect_counters=False, max_points=max(self.params.max_points,
                                                      int(span // self.resolution) + 2),
                detector=self.params.detector if self.params.detector in ("score", "consensus")
                else "score", incomplete_fraction=0.0)
            judge = self._judges[span] = Judge(params)
        return judge

    def _daily_peaks(self, b: hist.Buckets, c: Candidate, up: bool) -> tuple[int, float, float]:
        """(earlier days with a similar peak near this time of day, the largest such
        departure from the median, this candidate's departure). Day k (1, 2, ...) looks at
        the buckets whose middle is within peak_window + resolution / 2 of the candidate's
        time k days before; a bucket can serve two days when the window is that wide."""
        ext = b.max if up else b.min
        sign = 1.0 if up else -1.0
        median = float(np.median(b.mean))
        dev = sign * (c.value - median)
        if not dev > 0:
            return 0, 0.0, dev
        days = int((c.timestamp - b.timestamps[0]) // DAY)
        if days < 1:
            return 0, 0.0, dev
        ago = c.timestamp - (b.timestamps + self.resolution / 2)  # before the candidate
        reach = self.peak_window + self.resolution / 2
        went = sign * (ext - median)
        best = np.full(days + 2, -np.inf)
        below = np.floor(ago / DAY).astype(np.int64)
        for k in (below, below + 1):
            ok = (k >= 1) & (k <= days) & (np.abs(ago - k * DAY) <= reach)
            np.maximum.at(best, k[ok], went[ok])
        best = best[1:days + 1]
        similar = best >= SIMILAR * dev
        peaks = int(similar.sum())
        largest = float(best[similar].max()) if peaks else 0.0
        return peaks, max(largest, 0.0), dev


def _before(remote: hist.Buckets, local: hist.Buckets) -> hist.Buckets:
    """The remote's buckets older than every bucket Skyline holds itself (ours win where both
    have a bucket: they are the points the analyzer judged)."""
    if not len(local):
        return remote
    keep = remote.index < local.index[0]
    return hist.Buckets(remote.resolution, remote.index[keep], remote.count[keep],
                        remote.sum[keep], remote.min[keep], remote.max[keep], remote.scale)


def _direction(c: Candidate, b: hist.Buckets) -> bool:
    """True when the candidate is a high, False a low."""
    if math.isfinite(c.band_high) and c.value > c.band_high:
        return True
    if math.isfinite(c.band_low) and c.value < c.band_low:
        return False
    return bool(c.value >= float(np.median(b.mean)))


def _looks_like_counter(b: hist.Buckets, value: float) -> bool:
    """Never decreasing over the history and the candidate far below it: the analyzer judged
    a rate of a counter whose raw values the history holds."""
    m = b.mean
    if len(m) < 3 or not np.all(np.diff(m) >= 0) or m[-1] <= m[0]:
        return False
    return bool(value < m[0] or value < 0.5 * m[-1] and m[-1] > 0)


def rules_from(settings: Any) -> MirageRules:
    """[[mirage.namespaces]] first, then ALERTS rules with second_order_resolution_hours."""
    scopes: list[tuple[str, float]] = []
    remotes: list[RemoteScope | None] = []
    if settings is None:
        return MirageRules()
    m = settings.mirage
    for ns in m.namespaces:
        scopes.append((ns.pattern, float(ns.hours)))
        remotes.append(None if not ns.source else RemoteScope(
            Remote(kind=ns.source, url=ns.url, user=ns.user,
                   password=ns.password.get_secret_value() if ns.password else "",
                   token=ns.token.get_secret_value() if ns.token else "",
                   timeout=ns.timeout or m.remote_timeout,
                   max_body_bytes=m.remote_max_body_bytes),
            query=ns.query, strip_prefix=ns.strip_prefix))
    for rule in settings.ALERTS:
        if rule.second_order_resolution_hours is not None:
            scopes.append((rule.pattern, float(rule.second_order_resolution_hours)))
            remotes.append(None)
    return MirageRules(tuple(scopes), tuple(remotes))


@dataclass(frozen=True)
class MirageConfig:
    """The stage's settings, resolved (picklable: it travels to the analyzer's workers)."""

    scopes: tuple[tuple[str, float], ...] = ()
    params: AnalysisParams = field(default_factory=AnalysisParams)
    resolution: int = 600
    daily_peaks: int = 3
    peak_window: float = 3600.0
    min_history: float = 48 * 3600.0
    remotes: tuple[RemoteScope | None, ...] = ()
    remote_max_concurrent: int = 4
    remote_cache: float = 3600.0
    autofill: bool = False
    fetch_budget: float = 1.0
    periodic: tuple[str, ...] = ()
    periodic_interval: float = 3600.0
    always: tuple[str, ...] = ()

    @staticmethod
    def from_settings(s: Any, params: AnalysisParams | None = None) -> MirageConfig:
        if params is None:
            from skyline.analysis.params import analysis_params  # one conversion

            params = analysis_params(s)
        rules = rules_from(s)
        return MirageConfig(
            scopes=rules.scopes, params=params, resolution=s.MIRAGE_ANALYSIS_RESOLUTION,
            daily_peaks=s.MIRAGE_CHECK_REPETITIVE_DAILY_PEAKS, peak_window=s.mirage.peak_window,
            min_history=s.mirage.min_history_hours * 3600.0, remotes=rules.remotes,
            remote_max_concurrent=s.mirage.remote_max_concurrent,
            remote_cache=s.mirage.remote_cache_seconds, autofill=s.MIRAGE_AUTOFILL_TOOSHORT,
            fetch_budget=s.analyzer.stage_budget,
            periodic=tuple(s.MIRAGE_PERIODIC_CHECK_NAMESPACES) if s.MIRAGE_PERIODIC_CHECK
            else (), periodic_interval=float(s.MIRAGE_PERIODIC_CHECK_INTERVAL),
            always=tuple(s.MIRAGE_ALWAYS_METRICS))


def factory(options: Mapping[str, Any], context: StageContext) -> MirageStage:
    """The stage from its resolved configuration (StageContext.configs), else from the
    Settings in the context, else the defaults. Options: `namespaces`, a table pattern ->
    hours that comes before the configured scopes."""
    extra: Sequence[tuple[str, float]] = ()
    try:
        extra = tuple((str(p), float(h)) for p, h in dict(options.get("namespaces", {})).items())
        for p, h in extra:
            PatternSet((p,))
            if not 25 <= h <= 720:
                raise ValueError(f"hours for {p!r} must be 25 to 720")
    except (TypeError, ValueError, PatternError) as e:
        raise InvalidInput(f"mirage stage options: {e}") from None
    config = context.configs.get(NAME)
    if not isinstance(config, MirageConfig):
        config = MirageConfig.from_settings(context.settings) \
            if context.settings is not None else MirageConfig()
    remotes = (None,) * len(extra) + tuple(config.remotes) + \
        (None,) * (len(config.scopes) - len(config.remotes))
    return MirageStage(
        rules=MirageRules(tuple(extra) + config.scopes, remotes), params=config.params,
        resolution=config.resolution, daily_peaks=config.daily_peaks,
        peak_window=config.peak_window, min_history=config.min_history, client=context.client,
        remote_max_concurrent=config.remote_max_concurrent, remote_cache=config.remote_cache,
        autofill=config.autofill, fetch_budget=config.fetch_budget, periodic=config.periodic,
        periodic_interval=config.periodic_interval, always=config.always)
